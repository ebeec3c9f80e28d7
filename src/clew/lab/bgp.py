"""The lab's bgp backend: what the nodes' net-conf.json says and the router's own BIRD.

With ``--backend bgp --underlay routed`` the router namespace is the top-of-rack router of
every segment (two nodes each by default) and runs BIRD. Each node peers only with the router's
address on its own segment (net-conf ``Peering.Peers`` with ``Nodes``) and announces its pod
subnet. The router is, by ``LabConfig.bgp_router``:

* ``reflector`` — the nodes' route reflector in their AS (64512): the others' subnets come back
  with the owning node as next hop, reached directly on a shared segment and through the
  router (recursively) across segments;
* ``ebgp`` — an external peer in AS 64513: it puts itself as next hop across segments and keeps
  the owner on a shared segment (a third-party next hop, as BIRD does on a common subnet).

The router writes the pod subnets into its own kernel, so pod packets cross it natively — no
encapsulation, MTU 1500. ``LabConfig.bfd`` turns BFD on for every session, the router's too.
On the ``l2`` underlay the nodes form a full mesh and the router is not needed.

The router trusts each node for exactly the subnet the plan gives it (pure config, `router_config`);
`extra` sessions (the rogue test's) are imported without a filter, as a misconfigured router
would, so that only the nodes' own import filters stand between a rogue and their kernels;
`withhold` keeps prefixes from one node (a router's broken export filter: the doctor's fault).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clew.kernel import bird, netns
from clew.lab.plan import LabPlan
from clew.podnet.bgpconf import DEFAULT_ASN, DEFAULT_HOLD_TIME

ROUTER_ID = "192.168.100.1"
ROUTER_EBGP_ASN = 64513  # the router's AS as an external peer


@dataclass(frozen=True)
class ExtraPeer:
    """A session the router opens beyond the nodes' (name, address, its local address)."""

    name: str
    address: str
    local: str
    local_pref: int = 100


def router_asn(plan: LabPlan) -> int:
    return ROUTER_EBGP_ASN if plan.config.bgp_router == "ebgp" else DEFAULT_ASN


def node_backend(plan: LabPlan) -> dict[str, Any]:
    """net-conf.json's ``Backend`` for a bgp lab: one peer per segment, its router address."""
    bfd = {"BFD": True} if plan.config.bfd else {}
    if plan.router_netns is None:
        return {"Type": "bgp", "ASN": DEFAULT_ASN, "Peering": "mesh", **bfd}
    by_gateway: dict[str, list[str]] = {}
    for n in plan.nodes:
        by_gateway.setdefault(n.gateway, []).append(n.name)
    peers = [{"Address": gw, "ASN": router_asn(plan), "Nodes": names} for gw, names in by_gateway.items()]
    return {"Type": "bgp", "ASN": DEFAULT_ASN, "Peering": {"Peers": peers}, **bfd}


def router_config(
    plan: LabPlan,
    log_file: str | None = None,
    extra: tuple[ExtraPeer, ...] = (),
    withhold: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The router's bird.conf (pure); ``withhold``: node name → prefixes not sent to it."""
    cluster = plan.config.cluster_cidr
    log = f'log "{log_file}" {{ info, remote, warning, error, auth, fatal, bug }};\n' if log_file else ""
    parts = [
        f"# BIRD 2 configuration of the lab's router {plan.router_netns}, written by clew lab.\n"
        f"{log}router id {ROUTER_ID};\n\n"
        "protocol device {\n  scan time 10;\n}\n\n"
        "protocol direct {\n  ipv4;\n}\n\n"
        "protocol kernel {\n  ipv4 {\n    import none;\n"
        f"    export where source = RTS_BGP && net ~ {cluster};\n  }};\n  merge paths on;\n}}\n"
    ]
    if plan.config.bfd:
        parts.append("protocol bfd {\n}\n")
    asn, ebgp, bfd = router_asn(plan), plan.config.bgp_router == "ebgp", plan.config.bfd
    for i, n in enumerate(plan.nodes, 1):
        imports = f"where net = {n.pod_cidr} && bgp_next_hop = {n.ip}"
        held = (withhold or {}).get(n.name, ())
        exports = "where source = RTS_BGP" + (f" && !(net ~ [ {', '.join(held)} ])" if held else "")
        parts.append(_session(f"node_{i}", n.ip, n.gateway, imports, asn, DEFAULT_ASN, rr=not ebgp, bfd=bfd,
                              exports=exports))  # fmt: skip
    for p in extra:
        imports = f"filter {{ bgp_local_pref = {p.local_pref}; accept; }}"
        parts.append(_session(p.name, p.address, p.local, imports, DEFAULT_ASN, DEFAULT_ASN, rr=True, bfd=False))
    return "\n".join(parts)


def _session(name: str, address: str, local: str, imports: str, asn: int, peer_asn: int, *, rr: bool,
             bfd: bool, exports: str = "where source = RTS_BGP") -> str:  # fmt: skip
    ebgp = asn != peer_asn
    return (
        f"protocol bgp {name} {{\n"
        f"  local {local} as {asn};\n  neighbor {address} as {peer_asn};\n  direct;\n"
        + ("  rr client;\n" if rr else "")
        + ("  bfd on;\n" if bfd else "")
        + f"  hold time {DEFAULT_HOLD_TIME};\n  keepalive time {DEFAULT_HOLD_TIME // 3};\n  connect delay time 1;\n"
        "  connect retry time 3;\n  error wait time 5, 60;\n  graceful restart on;\n"
        f"  ipv4 {{\n    gateway {'direct' if ebgp else 'recursive'};\n    import {imports};\n"
        f"    export {exports};\n  }};\n}}\n"
    )


def router_dir(root: Path) -> Path:
    return root / "router"


def start_router(plan: LabPlan, root: Path) -> int:
    """Write the router's configuration and start its BIRD (in the router namespace)."""
    assert plan.router_netns is not None
    folder = router_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "bird.conf"
    config.write_text(router_config(plan, str(folder / "bird.log")))
    bird.check_config(config)
    return bird.start(plan.router_netns, config, folder / "bird.ctl", folder / "bird.pid")


def reconfigure_router(
    plan: LabPlan,
    root: Path,
    extra: tuple[ExtraPeer, ...] = (),
    withhold: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Rewrite the router's configuration (`router_config`'s ``extra`` and ``withhold``) and
    apply it (``birdc configure``)."""
    assert plan.router_netns is not None
    folder = router_dir(root)
    config = folder / "bird.conf"
    config.write_text(router_config(plan, str(folder / "bird.log"), extra, withhold))
    bird.check_config(config)
    return bird.configure(plan.router_netns, folder / "bird.ctl")


def bird_routes(ns: str) -> set[str]:
    """The destinations of the ``proto bird`` routes in ``ns``."""
    out = netns.run(ns, ["ip", "-j", "-4", "route", "show", "proto", "bird"]).stdout
    return {r["dst"] for r in json.loads(out or "[]")}


def wait_routes(plan: LabPlan, deadline_s: float = 30.0) -> None:
    """Poll until every node has a BIRD route to every other node's pod subnet.

    The agents' sync (``build.wait_synced``) ends when BIRD is configured, not when its sessions
    are up and the routes learned: whoever sends pod traffic right after ``up`` waits here.
    """
    end = time.monotonic() + deadline_s
    while True:
        missing = [f"{n.name} lacks {o.pod_cidr}" for n in plan.nodes
                   for o in plan.nodes if o is not n and o.pod_cidr not in bird_routes(n.netns)]  # fmt: skip
        if not missing:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"BIRD routes not learned within {deadline_s:g}s: " + "; ".join(missing))
        time.sleep(0.05)
