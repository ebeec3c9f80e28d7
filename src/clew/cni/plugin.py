"""``clew-cni``: the CNI plugin entry point, ``run(env, stdin, stdout) -> int``.

The container runtime execs the plugin in the node's network namespace with ``CNI_COMMAND``
and friends in the environment and the network config on stdin; the plugin prints a result (ADD,
VERSION) or nothing (DEL, CHECK, STATUS, GC) and exits 0, or prints a CNI error object and exits
1. ``run`` takes those three things as arguments, so tests call it like a runtime would without a
process; ``main`` wires it to the real ones.

Mapping of failures to spec codes: bad environment 4, bad JSON 6, bad config 7, unsupported
version 1, missing pod namespace 8, store I/O 5, store locked too long or ``subnet.env`` not yet
written 11, no attachment to CHECK 3, STATUS not ready 50, a ``CNI_NETNS`` that is the node's own
namespace 4 (`clew.cni.netns_guard`), a pod subnet overlapping the node's addresses or routes 7
(`clew.cni.overlap`); anything else (kernel, IPAM exhaustion) 999 with a one-line message, never
a traceback. GC also removes the result cache's leftover temp files.

Keep this import path light (stdlib only, no pyroute2, typer or yaml): it runs once per pod.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from ipaddress import IPv4Address, IPv4Interface
from typing import NamedTuple, TextIO

from clew.cni import bridge, config, errors, ipam, netns_guard, result, subnet_file
from clew.cni.cache import ResultCache
from clew.cni.config import Attachment, NetConf
from clew.cni.errors import CniError
from clew.cni.netns_guard import NsId
from clew.cni.overlap import SubnetConflict
from clew.cni.store import DiskStore, StoreBusy

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
_REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
}
_MIN_VERSION = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}
_KNOWN_ARGS = {"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}


class Request(NamedTuple):
    """The runtime's environment, validated."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""

    @property
    def attachment(self) -> Attachment:
        return Attachment(self.container_id, self.ifname)


def _env_error(msg: str) -> CniError:
    return CniError(errors.INVALID_ENVIRONMENT, msg)


def _check_args(raw: str) -> None:
    """``CNI_ARGS`` is ``K=V;K=V``; unknown keys are an error unless ``IgnoreUnknown=1``."""
    if not raw:
        return
    pairs = [p.partition("=") for p in raw.split(";") if p]
    bad = [k for k, sep, _ in pairs if not sep or not k]
    if bad:
        raise _env_error(f"CNI_ARGS {raw!r} is not K=V;K=V")
    values = {k: v for k, _, v in pairs}
    unknown = sorted(set(values) - _KNOWN_ARGS)
    if unknown and values.get("IgnoreUnknown", "").lower() not in ("1", "true"):
        raise _env_error(f"CNI_ARGS has unknown keys {', '.join(unknown)} (and no IgnoreUnknown=1)")


def request_from_env(env: Mapping[str, str]) -> Request:
    """Validate the environment for its command; :class:`CniError` 4 names what is wrong."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise _env_error("missing environment variable CNI_COMMAND")
    if command not in COMMANDS:
        raise _env_error(f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    required = _REQUIRED_ENV.get(command, ())
    missing = [name for name in required if not env.get(name)]
    if missing:
        raise _env_error(f"missing environment variables for {command}: {', '.join(missing)}")
    if not required:
        return Request(command)
    container_id, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    if not config.valid_id(container_id):
        raise _env_error(f"CNI_CONTAINERID {container_id!r} must match {config.ID_PATTERN}")
    if not config.valid_ifname(ifname):
        raise _env_error(
            f"CNI_IFNAME {ifname!r} is not an interface name (1-15 bytes, not . or .., no whitespace or / : # quote \\)"
        )
    netns = env.get("CNI_NETNS", "")
    if netns and (not netns.startswith("/") or any(c.isspace() or c in "\"'#\\" for c in netns)):
        # it becomes a word in an ``ip -batch`` line: an absolute path, nothing ip would split or quote
        raise _env_error(f"CNI_NETNS {netns!r} must be an absolute path without spaces, quotes or #")
    _check_args(env.get("CNI_ARGS", ""))
    return Request(command, container_id, netns, ifname)


def _subnet(conf: NetConf, *, code: int | None = None) -> subnet_file.SubnetFile:
    try:
        return subnet_file.read(conf.subnet_file)
    except subnet_file.SubnetFileError as exc:
        if code is None:
            code = errors.TRY_AGAIN_LATER if exc.missing else errors.INVALID_CONFIG
        raise CniError(code, "subnet file not usable", str(exc)) from None


def _store(conf: NetConf) -> DiskStore:
    return DiskStore(os.path.join(conf.data_dir, conf.name))


def _cache(conf: NetConf) -> ResultCache:
    return ResultCache(os.path.join(conf.data_dir, conf.name, "results"))


def cmd_add(conf: NetConf, req: Request) -> dict[str, object]:
    """Allocate an address, attach the pod, cache the result; give the address back on failure."""
    subnet = _subnet(conf)
    if not os.path.exists(req.netns):
        raise CniError(errors.INVALID_NETNS, "invalid netns", f"CNI_NETNS {req.netns} does not exist")
    att, store = req.attachment, _store(conf)
    with store.locked() as s:
        ip = ipam.allocate(s, ipam.Pool(subnet.subnet, subnet.gateway), att)
    try:
        res = _attach_and_cache(conf, req, subnet, ip)
    except BaseException:
        with store.locked() as s:
            if s.allocations().get(ip) == att:
                s.release(ip)
        raise
    return res.to_json(conf.cni_version)


def _attach_and_cache(conf: NetConf, req: Request, subnet: subnet_file.SubnetFile, ip: IPv4Address) -> result.Result:
    prefix = subnet.subnet.prefixlen
    spec = bridge.AttachSpec(
        bridge=conf.bridge,
        gateway=IPv4Interface(f"{subnet.gateway}/{prefix}"),
        address=IPv4Interface(f"{ip}/{prefix}"),
        mtu=conf.mtu or subnet.mtu,
        hairpin=conf.hairpin_mode,
        netns=req.netns,
        ifname=req.ifname,
    )
    res = bridge.attach(spec)
    host = bridge.host_interface(res, conf.bridge)
    entry: dict[str, object] = {"networkName": conf.name, "netns": req.netns, "hostInterface": host}
    try:
        _cache(conf).save(req.attachment, {**entry, "result": res.to_json(config.LATEST)})
    except BaseException:
        bridge.detach(req.netns, req.ifname, host)
        raise
    return res


def _host_veth(conf: NetConf, cached: Mapping[str, object] | None) -> str | None:
    if conf.prev_result is not None:
        name = bridge.host_interface(result.parse(conf.prev_result), conf.bridge)
        if name:
            return name
    cached_name = cached.get("hostInterface") if cached else None
    return cached_name if isinstance(cached_name, str) and cached_name else None


def cmd_del(conf: NetConf, req: Request) -> None:
    att, cache = req.attachment, _cache(conf)
    cached = cache.load(att)
    bridge.detach(req.netns or None, req.ifname, _host_veth(conf, cached))
    store = _store(conf)
    if store.exists():
        with store.locked() as s:
            ipam.release(s, att)
    cache.remove(att)


def cmd_check(conf: NetConf, req: Request) -> None:
    if conf.prev_result is None:
        raise CniError(errors.INVALID_CONFIG, "invalid network config", "CHECK needs prevResult")
    prev = result.parse(conf.prev_result)
    store = _store(conf)
    owned: list[str] = []
    if store.exists():
        with store.locked() as s:
            owned = [str(ip) for ip in ipam.owned_by(s, req.attachment)]
    if not owned:
        raise CniError(
            errors.UNKNOWN_CONTAINER,
            "container unknown",
            f"no address is allocated to container {req.container_id} interface {req.ifname}",
        )
    found = prev.sandbox_interface(req.ifname)
    for ip in prev.ips:
        if found is not None and ip.interface == found[0] and ip.address.split("/")[0] not in owned:
            raise bridge.CheckFailed(f"prevResult address {ip.address} is not allocated to {req.container_id}")
    bridge.check(req.netns, req.ifname, conf.bridge, prev)


def cmd_status(conf: NetConf, req: Request) -> None:
    _subnet(conf, code=errors.NOT_AVAILABLE)


def cmd_gc(conf: NetConf, req: Request) -> None:
    if conf.valid_attachments is None:
        raise CniError(errors.INVALID_CONFIG, "invalid network config", f"GC needs {config.VALID_ATTACHMENTS}")
    valid = set(conf.valid_attachments)
    cache, failures = _cache(conf), []
    for att, entry in cache.entries():
        if att in valid:
            continue
        host = entry.get("hostInterface")
        try:
            bridge.detach(None, att.ifname, host if isinstance(host, str) else None)
            cache.remove(att)
        except (bridge.BridgeError, OSError) as exc:
            failures.append(f"{att.container_id}/{att.ifname}: {exc}")
    try:
        cache.remove_stale_temp()
    except OSError as exc:
        failures.append(f"leftover temp files in {cache.directory}: {exc}")
    store = _store(conf)
    if store.exists():
        with store.locked() as s:
            ipam.collect_garbage(s, valid)
    if failures:
        raise CniError(errors.INTERNAL, "GC left attachments behind", "; ".join(failures))


def version_info() -> dict[str, object]:
    return {"cniVersion": config.LATEST, "supportedVersions": list(config.SUPPORTED_VERSIONS)}


Handler = Callable[[NetConf, Request], "dict[str, object] | None"]
HANDLERS: dict[str, Handler] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "STATUS": cmd_status,
    "GC": cmd_gc,
}


def _dispatch(env: Mapping[str, str], stdin: bytes | str, node_netns: Iterable[NsId]) -> dict[str, object] | None:
    if env.get("CNI_COMMAND") == "VERSION":
        return version_info()
    req = request_from_env(env)
    conf = config.parse(stdin)
    minimum = _MIN_VERSION.get(req.command)
    if minimum and not config.at_least(conf.cni_version, minimum):
        raise CniError(
            errors.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config version {conf.cni_version} does not allow {req.command} (needs {minimum})",
        )
    netns_guard.refuse_node_netns(req.netns, req.command, node_netns)
    return HANDLERS[req.command](conf, req)


def _as_cni_error(exc: Exception) -> CniError:
    if isinstance(exc, CniError):
        return exc
    if isinstance(exc, StoreBusy):
        return CniError(errors.TRY_AGAIN_LATER, "try again later", str(exc))
    if isinstance(exc, SubnetConflict):
        return CniError(errors.INVALID_CONFIG, "pod subnet overlaps the node's network", str(exc))
    if isinstance(exc, (ipam.IpamError, bridge.BridgeError)):
        return CniError(errors.INTERNAL, str(exc))
    if isinstance(exc, OSError):
        return CniError(errors.IO_FAILURE, "I/O failure", str(exc))
    return CniError(errors.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def run(env: Mapping[str, str], stdin: bytes | str, stdout: TextIO, *, node_netns: Iterable[NsId] = ()) -> int:
    """Do one CNI operation; print its result or error on ``stdout``; return the exit status.

    ``node_netns``: namespaces besides this thread's own that are the node's (the agent passes
    its client's), where no pod interface may be made or deleted (`clew.cni.netns_guard`).
    """
    try:
        out = _dispatch(env, stdin, node_netns)
    except Exception as exc:
        err = _as_cni_error(exc)
        json.dump(err.to_json(config.version_hint(stdin)), stdout)
        stdout.write("\n")
        return 1
    if out is not None:
        json.dump(out, stdout)
        stdout.write("\n")
    return 0


def main() -> None:
    """The ``clew-cni`` executable."""
    stdin = sys.stdin.buffer.read()
    raise SystemExit(run(os.environ, stdin, sys.stdout))
