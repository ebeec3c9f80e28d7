"""A stateful stand-in for one node's nftables, in memory: the `NftKernel` the nftables-mode
sync writes through, so full and partial syncs are tested without root.

Strict where the kernel is (each refusal checked against nft 1.0.6 on kernel 6.x; the kernel
test ``tests/kernel/test_nft_kernel.py`` runs the same scripts through both and compares):
a transaction is all or nothing; ``add element`` to a missing set, ``delete element`` of a
missing key ("No such file or directory"), ``add element`` of an existing key with another value
and ``create`` of anything existing ("File exists" — the same key and value is accepted and keeps
the first comment), deleting a chain that a rule or a verdict-map element still jumps to or a
set that a rule uses ("Device or resource busy"), a jump to a missing or base chain, an element
whose key has the wrong number of components or lacks/has a value, a prefix in a set without
``flags interval``, re-declaring a set with another type or flags.

What it keeps: tables, chains in creation order (base-chain spec: type, hook, priority,
policy), rules (bodies as text, whitespace normalised, in order, with handles), sets and maps
(declaration, elements key → value and comment). Keys and values are compared as text after
whitespace normalisation and ``/32`` dropping, so a key must be spelled the same way when it is
deleted as when it was added (``80`` is not ``http``): stricter than the kernel, on purpose.

Not modelled: packets and counters, rule semantics (a rule body is only scanned for
``jump``/``goto`` targets and ``@set`` references), interval overlaps and merging, element
timeouts, other families' specifics, the block form ``table ip t { … }`` (refused), handles as
the kernel numbers them (the fake numbers per table, in order). `list_json` answers ``ruleset``,
``tables``, ``table F T``, ``chains``, ``sets``, ``maps``, ``chain F T C``, ``set F T S`` and
``map F T M`` in ``nft -j``'s shape; rules carry ``"expr": []`` and the body as text in
``"clew_text"`` (nft's expression JSON is not reproduced); sets and maps carry their elements
(``list sets`` and ``list maps`` too, as nft does: reading them on a big table costs seconds); a
``typeof`` declaration's ``type`` is the datatypes nft names for the expressions clew uses, and the
expression text is in ``"clew_typeof"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from clew.fakes import nft_parse as P
from clew.kernel import nft_json
from clew.kernel.errors import KernelError
from clew.kernel.namespace import Where

ENOENT = "No such file or directory"
EEXIST = "File exists"
EBUSY = "Device or resource busy"
EOPNOTSUPP = "Operation not supported"
EINVAL = "Invalid argument"
_KERNEL = "Could not process rule: "  # how nft prefixes the kernel's refusals
_METAINFO = {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}


class Refused(Exception):
    """One command refused: ``message`` as nft would print it after ``Error: ``."""


@dataclass
class Elem:
    value: str | None
    comment: str = ""


@dataclass
class NSet:
    name: str
    handle: int
    is_map: bool
    spec: P.SetSpec
    elements: dict[str, Elem] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    handle: int
    body: str
    chains: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()


@dataclass
class Chain:
    name: str
    handle: int
    base: P.BaseSpec | None
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Table:
    family: str
    name: str
    handle: int
    comment: str = ""
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NSet] = field(default_factory=dict)
    next_handle: int = 1


_MISSING = object()
# the datatype nft -j names for a ``typeof`` expression (what clew's layout uses)
_TYPEOF = {
    "ip daddr": "ipv4_addr", "ip saddr": "ipv4_addr", "meta l4proto": "inet_proto", "ip protocol": "inet_proto",
    "th dport": "inet_service", "tcp dport": "inet_service", "udp dport": "inet_service",
    "sctp dport": "inet_service", "numgen random": "integer", "numgen inc": "integer",
}  # fmt: skip


@dataclass
class FakeNft:
    """One node's nftables in memory (`clew.kernel.nftables.NftKernel`).

    ``log`` records every script applied (and checked: ``check: …``); ``fail_next`` makes the
    next `run` fail with that message as a kernel refusal would (nothing applied);
    ``before_run`` runs just before each script is applied: a concurrent writer's window."""

    where: Where = "fake"
    log: list[str] = field(default_factory=list)
    fail_next: str | None = None
    before_run: Callable[[FakeNft], None] | None = None
    closed: bool = False
    _tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _touched: set[int] = field(default_factory=set)
    _next_table_handle: int = 1

    # -- the NftKernel contract -------------------------------------------------------------

    def run(self, script: str) -> None:
        """Apply ``script`` atomically; raise `KernelError` (nothing changed) if refused."""
        self._alive()
        if self.before_run is not None:
            self.before_run(self)
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            raise KernelError(self.where, "nft", message)
        self._transaction(script, commit=True)
        self.log.append(script)

    def check(self, script: str) -> None:
        """As `run`, then undo: raises what `run` would, changes nothing."""
        self._alive()
        self._transaction(script, commit=False)
        self.log.append(f"check: {script}")

    def list_json(self, what: str = "ruleset") -> dict[str, Any]:
        self._alive()
        w = what.split()
        items: list[dict[str, Any]] = [_METAINFO]
        try:
            if w == ["ruleset"]:
                for table in self._tables.values():
                    items += self._table_items(table, elements=True)
            elif w == ["tables"]:
                items += [self._table_json(t) for t in self._tables.values()]
            elif w in (["chains"], ["sets"], ["maps"]):
                for table in self._tables.values():
                    # nft -j list sets/maps carries the elements too (measured): costly on a big table
                    items += [i for i in self._table_items(table, elements=True) if f"{next(iter(i))}s" == w[0]]
            elif len(w) == 3 and w[0] == "table":
                items += self._table_items(self._table(w[1], w[2]), elements=True)
            elif len(w) == 4 and w[0] == "chain":
                table = self._table(w[1], w[2])
                if w[3] not in table.chains:
                    raise Refused(ENOENT)
                items += [i for i in self._table_items(table, elements=False) if _of_chain(i, w[3])]
            elif len(w) == 4 and w[0] in ("set", "map"):
                table = self._table(w[1], w[2])
                found = table.sets.get(w[3])
                if found is None or found.is_map != (w[0] == "map"):
                    raise Refused(ENOENT)
                items.append(self._set_json(table, found, elements=True))
            else:
                raise Refused(f"syntax error: list {what}")
        except Refused as e:
            raise KernelError(self.where, "nft", f"Error: {e} [list {what}]") from None
        return {"nftables": items}

    def has_table(self, family: str, name: str) -> bool:
        self._alive()
        return (family, name) in self._tables

    def close(self) -> None:
        self.closed = True

    # -- accessors for tests ------------------------------------------------------------------

    def tables(self) -> list[tuple[str, str]]:
        return list(self._tables)

    def chains(self, family: str = "ip", table: str = "clew") -> list[str]:
        """Chain names in creation order."""
        found = self._tables.get((family, table))
        return list(found.chains) if found is not None else []

    def base_chain(self, chain: str, family: str = "ip", table: str = "clew") -> P.BaseSpec | None:
        return self._tables[family, table].chains[chain].base

    def rules(self, chain: str, family: str = "ip", table: str = "clew") -> list[str]:
        """Rule bodies of ``chain`` in order (whitespace normalised)."""
        return [r.body for r in self._tables[family, table].chains[chain].rules]

    def rule_handles(self, chain: str, family: str = "ip", table: str = "clew") -> list[int]:
        return [r.handle for r in self._tables[family, table].chains[chain].rules]

    def sets(self, family: str = "ip", table: str = "clew") -> dict[str, P.SetSpec]:
        """Set and map declarations by name."""
        if (family, table) not in self._tables:
            return {}
        return {n: s.spec for n, s in self._tables[family, table].sets.items()}

    def elements(self, name: str, family: str = "ip", table: str = "clew") -> dict[str, str | None]:
        """Elements of set/map ``name``: key → value (None in a set)."""
        return {k: e.value for k, e in self._tables[family, table].sets[name].elements.items()}

    def comments(self, name: str, family: str = "ip", table: str = "clew") -> dict[str, str]:
        """Element comments of set/map ``name`` (key → comment; keys without one left out)."""
        return {k: e.comment for k, e in self._tables[family, table].sets[name].elements.items() if e.comment}

    def state(self, family: str = "ip", table: str = "clew") -> nft_json.State | None:
        """The comparable state of one table, as `nft_json.state_of` reads it from a kernel."""
        return nft_json.state_of(self.list_json("ruleset"), family, table)

    # -- transactions -------------------------------------------------------------------------

    def _alive(self) -> None:
        if self.closed:
            raise KernelError(self.where, "nft", "the nftables context is closed")

    def _transaction(self, script: str, *, commit: bool) -> None:
        self._undo, self._touched = [], set()
        try:
            try:
                found = P.statements(script)
            except P.NftSyntax as e:
                raise KernelError(self.where, "nft", f"Error: {e}") from None
            commands: list[tuple[int, P.Command]] = []
            for line, text in found:  # nft reads the whole script before it sends any of it
                try:
                    commands.append((line, P.command(text)))
                except P.NftSyntax as e:
                    raise KernelError(self.where, "nft", f"Error: {e} [line {line}: {_shown(text)}]") from None
            for line, cmd in commands:
                try:
                    self._apply(cmd)
                except (Refused, P.NftSyntax) as e:
                    raise KernelError(self.where, "nft", f"Error: {e} [line {line}: {_shown(cmd.text)}]") from None
        except BaseException:
            self._rollback()
            raise
        if not commit:
            self._rollback()
        self._undo, self._touched = [], set()

    def _rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    def _put(self, d: dict[Any, Any], key: Any, value: Any) -> None:
        old = d.get(key, _MISSING)
        d[key] = value
        self._undo.append(lambda: d.__setitem__(key, old) if old is not _MISSING else d.pop(key, None))

    def _pop(self, d: dict[Any, Any], key: Any) -> None:
        old = d.pop(key)
        self._undo.append(lambda: d.__setitem__(key, old))

    def _attr(self, obj: object, name: str, value: Any) -> None:
        old = getattr(obj, name)
        setattr(obj, name, value)
        self._undo.append(lambda: setattr(obj, name, old))

    def _rules_of(self, chain: Chain) -> list[Rule]:
        """``chain.rules``, copied once per transaction before it is changed (undo restores it)."""
        if id(chain) not in self._touched:
            self._touched.add(id(chain))
            self._attr(chain, "rules", list(chain.rules))
        return chain.rules

    def _handle(self, table: Table) -> int:
        h = table.next_handle
        self._attr(table, "next_handle", h + 1)
        return h

    # -- commands -----------------------------------------------------------------------------

    def _apply(self, cmd: P.Command) -> None:
        if cmd.obj == "ruleset":
            for key in [k for k in self._tables if not cmd.family or k[0] == cmd.family]:
                self._pop(self._tables, key)
            return
        if cmd.obj == "table":
            self._table_cmd(cmd)
            return
        table = self._table(cmd.family, cmd.table)
        getattr(self, f"_{cmd.obj}_cmd")(cmd, table)

    def _table(self, family: str, name: str) -> Table:
        found = self._tables.get((family, name))
        if found is None:
            raise Refused(ENOENT)
        return found

    def _table_cmd(self, cmd: P.Command) -> None:
        key = (cmd.family, cmd.table)
        if cmd.verb in ("add", "create"):
            comment = P.table_comment(cmd.rest)
            if key in self._tables:
                if cmd.verb == "create":
                    raise Refused(_KERNEL + EEXIST)
                return
            self._put(self._tables, key, Table(cmd.family, cmd.table, self._next_table_handle, comment))
            self._next_table_handle += 1
            return
        table = self._tables.get(key)
        if table is None:
            raise Refused(_KERNEL + ENOENT)
        if cmd.verb == "delete":
            self._pop(self._tables, key)
        else:  # flush: every chain's rules (sets keep their elements)
            for chain in table.chains.values():
                self._rules_of(chain).clear()

    def _chain_cmd(self, cmd: P.Command, table: Table) -> None:
        chain = table.chains.get(cmd.name)
        if cmd.verb in ("add", "create"):
            base = P.base_spec(cmd.rest)
            if chain is None:
                self._put(table.chains, cmd.name, Chain(cmd.name, self._handle(table), base))
                return
            if cmd.verb == "create":
                raise Refused(_KERNEL + EEXIST)
            if base is None:
                return
            if chain.base is None or chain.base.type != base.type:
                raise Refused(_KERNEL + EEXIST)
            if (chain.base.hook, chain.base.priority, chain.base.device) != (base.hook, base.priority, base.device):
                raise Refused(_KERNEL + EOPNOTSUPP)
            if chain.base.policy != base.policy:
                self._attr(chain, "base", base)
            return
        if chain is None:
            raise Refused(_KERNEL + ENOENT)
        if cmd.verb == "flush":
            self._rules_of(chain).clear()
            return
        self._rules_of(chain).clear()  # delete: its rules go with it, then nothing may reference it
        if self._chain_referenced(table, cmd.name):
            raise Refused(_KERNEL + EBUSY)
        self._pop(table.chains, cmd.name)

    def _chain_referenced(self, table: Table, name: str) -> bool:
        for chain in table.chains.values():
            if any(name in r.chains for r in chain.rules):
                return True
        for nset in table.sets.values():
            if nset.spec.verdict and any(_target(e.value) == name for e in nset.elements.values()):
                return True
        return False

    def _set_cmd(self, cmd: P.Command, table: Table) -> None:
        self._set_or_map(cmd, table, is_map=False)

    def _map_cmd(self, cmd: P.Command, table: Table) -> None:
        self._set_or_map(cmd, table, is_map=True)

    def _set_or_map(self, cmd: P.Command, table: Table, *, is_map: bool) -> None:
        found = table.sets.get(cmd.name)
        if cmd.verb in ("add", "create"):
            spec = P.set_spec(cmd.rest, is_map)
            if found is None:
                new = NSet(cmd.name, self._handle(table), is_map, spec)
                self._put(table.sets, cmd.name, new)
            elif cmd.verb == "create" or found.is_map != is_map or not found.spec.same_shape(spec):
                raise Refused(_KERNEL + EEXIST)
            elif (spec.timeout and spec.timeout != found.spec.timeout) or (
                spec.other and spec.other != found.spec.other
            ):
                # re-declared with another timeout or size: the kernel takes them (not the comment)
                updated = replace(
                    found.spec, timeout=spec.timeout or found.spec.timeout, other=spec.other or found.spec.other
                )
                self._attr(found, "spec", updated)
            if spec.elements:
                self._add_elements(table, table.sets[cmd.name], spec.elements, create=False)
            return
        if cmd.verb == "flush":
            if found is None or found.is_map != is_map:
                raise Refused(ENOENT)  # nft itself refuses: it looks the set up by kind
            self._attr(found, "elements", {})
            return
        if found is None:  # delete: the kernel does not tell sets from maps
            raise Refused(_KERNEL + ENOENT)
        if any(cmd.name in r.sets for c in table.chains.values() for r in c.rules):
            raise Refused(_KERNEL + EBUSY)
        self._pop(table.sets, cmd.name)

    def _element_cmd(self, cmd: P.Command, table: Table) -> None:
        nset = table.sets.get(cmd.name)
        if nset is None:
            raise Refused(ENOENT)
        if cmd.verb == "delete":
            for e in P.elements(cmd.rest):
                self._check_key(nset, e.key)
                if e.key not in nset.elements:
                    raise Refused(_KERNEL + ENOENT)
                self._pop(nset.elements, e.key)
        elif cmd.verb in ("add", "create"):
            self._add_elements(table, nset, cmd.rest, create=cmd.verb == "create")
        else:
            raise P.NftSyntax(f"syntax error: {cmd.verb} element")

    def _add_elements(self, table: Table, nset: NSet, rest: str, *, create: bool) -> None:
        for e in P.elements(rest):
            self._check_key(nset, e.key)
            if nset.is_map:
                if e.value is None:
                    raise Refused(_KERNEL + EINVAL)
                self._check_value(table, nset, e.value)
            elif e.value is not None:
                raise Refused("set is not a map")
            old = nset.elements.get(e.key)
            if old is not None:
                if create or old.value != e.value:
                    raise Refused(_KERNEL + EEXIST)
                continue  # the same element again: accepted, the first comment stays
            self._put(nset.elements, e.key, Elem(e.value, e.comment))

    def _check_key(self, nset: NSet, key: str) -> None:
        parts = P.split_dots(key)
        if len(parts) != nset.spec.key_arity:
            raise Refused(
                f"datatype mismatch, expected {nset.spec.key_arity} components ({nset.spec.key}), "
                f"element {key!r} has {len(parts)}"
            )
        if not nset.spec.interval and any(_is_interval(p) for p in parts):
            raise Refused(f"You must add 'flags interval' to your set declaration if you want to add {key!r}")

    def _check_value(self, table: Table, nset: NSet, value: str) -> None:
        if nset.spec.verdict:
            target = P.verdict_target(value)
            if target is not None:
                self._check_jump(table, target)
        elif len(P.split_dots(value)) != nset.spec.data_arity:
            raise Refused(f"datatype mismatch, expected {nset.spec.data_arity} components ({nset.spec.data}), "
                          f"value {value!r} has {len(P.split_dots(value))}")  # fmt: skip

    def _check_jump(self, table: Table, target: str) -> None:
        chain = table.chains.get(target)
        if chain is None:
            raise Refused(_KERNEL + ENOENT)
        if chain.base is not None:
            raise Refused(_KERNEL + EOPNOTSUPP)

    def _rule_cmd(self, cmd: P.Command, table: Table) -> None:
        chain = table.chains.get(cmd.name)
        if chain is None:
            raise Refused(_KERNEL + ENOENT)
        r = P.rule(cmd.rest, cmd.verb)
        index = 0
        if cmd.verb in ("delete", "replace"):
            found = next((i for i, old in enumerate(chain.rules) if old.handle == r.handle), None)
            if found is None:
                raise Refused(_KERNEL + ENOENT)
            index = found
            if cmd.verb == "delete":
                del self._rules_of(chain)[index]
                return
        if cmd.verb not in ("add", "insert", "replace"):
            raise P.NftSyntax(f"syntax error: {cmd.verb} rule")
        for name in r.sets:
            if name not in table.sets:
                raise Refused(ENOENT)
        for target in r.chains:
            self._check_jump(table, target)
        rules = self._rules_of(chain)
        if cmd.verb == "replace":
            assert r.handle is not None
            rules[index] = Rule(r.handle, r.body, r.chains, r.sets)
            return
        new = Rule(self._handle(table), r.body, r.chains, r.sets)
        if r.position is None:
            rules.insert(len(rules) if cmd.verb != "insert" else 0, new)
            return
        at = next((i for i, old in enumerate(rules) if old.handle == r.position), None)
        if at is None:
            raise Refused(_KERNEL + ENOENT)
        rules.insert(at + 1 if cmd.verb != "insert" else at, new)

    # -- listing ------------------------------------------------------------------------------

    def _table_json(self, table: Table) -> dict[str, Any]:
        obj: dict[str, Any] = {"family": table.family, "name": table.name, "handle": table.handle}
        if table.comment:
            obj["comment"] = table.comment
        return {"table": obj}

    def _table_items(self, table: Table, *, elements: bool) -> Iterator[dict[str, Any]]:
        yield self._table_json(table)
        for nset in table.sets.values():
            yield self._set_json(table, nset, elements=elements)
        for chain in table.chains.values():
            obj: dict[str, Any] = {"family": table.family, "table": table.name, "name": chain.name,
                                   "handle": chain.handle}  # fmt: skip
            if chain.base is not None:
                obj.update(type=chain.base.type, hook=chain.base.hook, prio=chain.base.priority,
                           policy=chain.base.policy)  # fmt: skip
            yield {"chain": obj}
        for chain in table.chains.values():
            for r in chain.rules:
                yield {"rule": {"family": table.family, "table": table.name, "chain": chain.name,
                                "handle": r.handle, "expr": [], "clew_text": r.body}}  # fmt: skip

    def _set_json(self, table: Table, nset: NSet, *, elements: bool) -> dict[str, Any]:
        spec = nset.spec
        keys = [_TYPEOF.get(k.split(" mod ")[0], k) for k in P.split_dots(spec.key)]
        obj: dict[str, Any] = {"family": table.family, "name": nset.name, "table": table.name,
                               "type": keys[0] if len(keys) == 1 else keys, "handle": nset.handle}  # fmt: skip
        if spec.kind == "typeof":
            obj["clew_typeof"] = spec.key
        if spec.data is not None:
            obj["map"] = " . ".join(_TYPEOF.get(d, d) for d in P.split_dots(spec.data))
        if spec.flags:
            obj["flags"] = list(spec.flags)
        if spec.comment:
            obj["comment"] = spec.comment
        if elements and nset.elements:
            obj["elem"] = [nft_json.element_json(k, e.value, e.comment) for k, e in nset.elements.items()]
        return {"map" if nset.is_map else "set": obj}


def _of_chain(item: dict[str, Any], chain: str) -> bool:
    """Whether a listing item is ``chain`` itself or one of its rules."""
    if "chain" in item:
        return bool(item["chain"]["name"] == chain)
    return "rule" in item and item["rule"]["chain"] == chain


def _target(value: str | None) -> str | None:
    w = (value or "").split()
    return P.unquote(w[1]) if len(w) == 2 and w[0] in nft_json.CHAIN_VERDICTS else None


def _is_interval(component: str) -> bool:
    return "/" in component or ("-" in component and any(ch.isdigit() for ch in component.split("-")[0]))


def _shown(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + " …"
