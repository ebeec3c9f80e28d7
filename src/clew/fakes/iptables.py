"""A stateful stand-in for one node's iptables, in memory: the `IptablesKernel` the proxy sync
writes through, so full and partial syncs are tested without root.

Built on ``clew.netfilter``: restores go through `netfilter.strict.restore` (the parser's grammar,
strict and atomic), single ``iptables`` commands are one-line restores, ``iptables-save`` and
``-S`` are printed by `netfilter.save_text`. It refuses what the kernel refuses — ``-D`` of a rule
that is not there, ``-X`` of a chain that is referenced or not empty, ``-A`` to a missing chain,
a jump to a missing chain, any bad line of a restore (and then nothing of it is applied) — with
the exit status and one-line message the tools give. `dump` is canonical text.

Not modelled: counters (read as 0), other tables' contents than what is written, ip6tables, the
nftables mode (``nft`` knows no tables here; an nftables fake is a later issue's job).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from clew.kernel.errors import CommandFailed
from clew.kernel.namespace import Namespace, Where
from clew.kernel.runner import Completed
from clew.netfilter import save_text, strict
from clew.netfilter.iptables_save import BUILTIN_CHAINS
from clew.netfilter.rule_reader import BadLine, RuleReader
from clew.netfilter.rules import Ruleset, canonical

_NO_CHAIN = "iptables: No chain/target/match by that name."
_BAD_RULE = "iptables: Bad rule (does a matching rule exist in that chain?)."
_EDITS = {"-A", "-I", "-D", "-R", "-N", "-X", "-F", "-P", "-Z"}
_ALIASES = {
    "--append": "-A", "--insert": "-I", "--delete": "-D", "--replace": "-R", "--new-chain": "-N",
    "--delete-chain": "-X", "--flush": "-F", "--policy": "-P", "--zero": "-Z", "--check": "-C",
    "--list-rules": "-S", "--table": "-t", "--wait": "-w", "--wait-interval": "-W", "--verbose": "-v",
}  # fmt: skip


@dataclass
class FakeIptables:
    """One node's filter/nat/mangle/raw tables in memory (`IptablesKernel`).

    ``log`` records every write (``restore --noflush``, ``iptables -t nat -N X``, …) so a test
    can see what a sync did; ``sysctls`` what was set; ``fail_next_restore`` makes the next
    restore fail as a kernel error would; ``before_restore`` runs just before each restore is
    applied (after the caller has read the tables): a concurrent writer's window."""

    where: Where = "fake"
    ruleset: Ruleset = field(default_factory=Ruleset)
    log: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    fail_next_restore: str | None = None
    before_restore: Callable[[FakeIptables], None] | None = None

    @classmethod
    def from_save(cls, text: str, where: Where = "fake") -> FakeIptables:
        """A fake holding ``text`` (iptables-save output or restore input), loaded strictly."""
        fake = cls(where)
        fake.restore(text, noflush=False)
        fake.log.clear()
        return fake

    @property
    def namespace(self) -> Namespace:
        return Namespace.of(self.where)

    # ---------------------------------------------------------------- IptablesKernel

    def restore(self, payload: str, *, noflush: bool = True, counters: bool = True) -> None:
        argv = ["iptables-restore", *(["--noflush"] if noflush else []), *(["--counters"] if counters else [])]
        self.log.append(" ".join(argv))
        if self.before_restore is not None:
            self.before_restore(self)
        if self.fail_next_restore is not None:
            reason, self.fail_next_restore = self.fail_next_restore, None
            raise CommandFailed(self.namespace, "iptables-restore", argv, 1, f"iptables-restore: {reason}")
        try:
            self.ruleset = strict.restore(self.ruleset, payload, noflush=noflush)
        except strict.RestoreFailed as exc:
            code = _tool_error(exc.reason.split()[0] if exc.reason.startswith("-") else "", exc.reason)[0]
            raise CommandFailed(self.namespace, "iptables-restore", argv, code, f"iptables-restore: {exc}") from None

    def save(self, table: str | None = None) -> str:
        return save_text.dump(self.ruleset, None if table is None else [table])

    def list_chains(self, tables: Sequence[str] = ("filter", "nat")) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in tables:
            table = self.ruleset.tables.get(name)
            out[name] = save_text.chain_order(table) if table is not None else []
        return out

    def iptables(self, args: Sequence[str]) -> Completed:
        argv = ["iptables", *args]
        table, verbose, words = _options(list(args))
        if table not in BUILTIN_CHAINS:
            return Completed(argv, 3, "", f"iptables v1.8.9 (nf_tables): table '{table}' does not exist\n")
        if not words or _ALIASES.get(words[0], words[0]) not in (*_EDITS, "-C", "-S"):
            return Completed(argv, 2, "", f"iptables v1.8.9 (nf_tables): unknown command {words[:1]}\n")
        cmd = _ALIASES.get(words[0], words[0])
        if cmd == "-S":
            return self._list_rules(argv, table, words[1:], verbose)
        if cmd == "-C":
            return self._check(argv, table, words[1:])
        self.log.append(" ".join(["iptables", "-t", table, cmd, *words[1:]]))
        line = " ".join([cmd, *(save_text.quote(w) for w in words[1:])])
        try:
            self.ruleset = strict.restore(self.ruleset, f"*{table}\n{line}\nCOMMIT\n", noflush=True)
        except strict.RestoreFailed as exc:
            code, message = _tool_error(cmd, exc.reason)
            return Completed(argv, code, "", message + "\n")
        return Completed(argv, 0, "", "")

    def nft(self, args: Sequence[str]) -> Completed:
        argv = ["nft", *args]
        if list(args[:2]) == ["list", "tables"]:
            return Completed(argv, 0, "", "")
        return Completed(argv, 1, "", "Error: No such file or directory\n")

    def set_sysctl(self, key: str, value: str | int) -> None:
        self.sysctls[key] = str(value)

    def delete_udp_flows(self, *, dst_nat: str, orig_dst: str | None = None, orig_port: int | None = None) -> int:
        return 0

    # ---------------------------------------------------------------- for tests

    def dump(self) -> str:
        """Canonical ``iptables-save`` text of every table (see `netfilter.save_text.dump`)."""
        return save_text.dump(self.ruleset)

    def rules(self, table: str, chain: str) -> list[str]:
        """The ``-A`` lines of one chain, in order ([] if it does not exist)."""
        found = self.ruleset.chain(table, chain)
        return [save_text.rule_text(r) for r in found.rules] if found else []

    # ---------------------------------------------------------------- commands

    def _list_rules(self, argv: list[str], table_name: str, words: list[str], verbose: bool) -> Completed:
        table = self.ruleset.tables.get(table_name) or strict.empty_table(table_name)
        if not words:
            lines = [line for c in save_text.chain_order(table) for line in save_text.spec_lines(table, c)[:1]]
            lines += [line for c in save_text.chain_order(table) for line in save_text.spec_lines(table, c)[1:]]
        elif words[0] not in table.chains:
            return Completed(argv, 1, "", _NO_CHAIN + "\n")
        else:
            lines = save_text.spec_lines(table, words[0], counters=verbose)
            if len(words) > 1 and words[1].isdigit():
                n = int(words[1])
                lines = lines[n : n + 1] if n > 0 else lines[:1]
        return Completed(argv, 0, "".join(f"{line}\n" for line in lines), "")

    def _check(self, argv: list[str], table_name: str, words: list[str]) -> Completed:
        table = self.ruleset.tables.get(table_name)
        chain = table.chains.get(words[0]) if table is not None and words else None
        if chain is None:
            return Completed(argv, 1, "", _BAD_RULE + "\n")
        try:
            want = canonical(RuleReader().rule(words, 1, table_name, words[0], 1, " ".join(words)))
        except BadLine as exc:
            return Completed(argv, 2, "", f"iptables v1.8.9 (nf_tables): {exc}\n")
        found = any(canonical(r) == want for r in chain.rules)
        return Completed(argv, 0 if found else 1, "", "" if found else _BAD_RULE + "\n")


def _options(args: list[str]) -> tuple[str, bool, list[str]]:
    """(table, verbose, the command and its words) of an ``iptables`` argv."""
    table, verbose = "filter", False
    words: list[str] = []
    i = 0
    while i < len(args):
        w = _ALIASES.get(args[i], args[i]) if args[i].startswith("--") and args[i] in _ALIASES else args[i]
        if w == "-t" and i + 1 < len(args):
            table, i = args[i + 1], i + 2
        elif w in ("-w", "-W"):
            i += 2 if i + 1 < len(args) and args[i + 1].isdigit() else 1
        elif w == "-v" and not words:
            verbose, i = True, i + 1
        else:
            words.append(args[i])
            i += 1
    return table, verbose, words


def _tool_error(cmd: str, reason: str) -> tuple[int, str]:
    """The exit status and message of ``iptables`` (1.8.9, nf_tables) where the strict restore
    names a reason (checked against the real tool by tests/kernel/test_fake_kernel.py)."""
    if cmd == "-X" and ("referenced" in reason or "cannot delete" in reason):
        chain = reason.split()[1] if reason.startswith("-X ") else "?"
        return 4, f"iptables v1.8.9 (nf_tables):  CHAIN_DEL failed (Device or resource busy): chain {chain}"
    if "Couldn't load target" in reason:
        name = reason.split("`")[1].split("'")[0]
        return 2, f"iptables v1.8.9 (nf_tables): Chain '{name}' does not exist"
    if cmd in ("-D", "-C"):
        return 1, _BAD_RULE
    if cmd == "-N" and "already exists" in reason:
        return 1, "iptables: Chain already exists."
    if "does not exist" in reason or "never declared" in reason:
        return 1, _NO_CHAIN
    return 2, f"iptables v1.8.9 (nf_tables): {reason}"
