"""The lab's bgp backend: what the nodes' net-conf.json says and the router's own BIRD.

With ``--backend bgp --underlay routed`` the router namespace is the top-of-rack router of
every node's segment and runs BIRD as their route reflector (AS 64512, the nodes' AS): each
node peers only with the router's address on its own segment (net-conf ``Peering.Peers`` with
``Nodes``), announces its pod subnet, and learns the others' reflected with the owning node as
next hop (resolved through the router). The router writes the pod subnets into its own kernel,
so pod packets cross it natively — no encapsulation, MTU 1500. On the ``l2`` underlay the nodes
form a full mesh and the router is not needed.

The router trusts each node for exactly the subnet the plan gives it (pure config, `router_config`);
`extra` sessions (the rogue test's) are imported without a filter, as a misconfigured router
would, so that only the nodes' own import filters stand between a rogue and their kernels.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clew.kernel import bird, netns
from clew.lab.plan import LabPlan
from clew.podnet.bgpconf import DEFAULT_ASN

ROUTER_ID = "192.168.100.1"


@dataclass(frozen=True)
class ExtraPeer:
    """A session the router opens beyond the nodes' (name, address, its local address)."""

    name: str
    address: str
    local: str
    local_pref: int = 100


def node_backend(plan: LabPlan) -> dict[str, Any]:
    """net-conf.json's ``Backend`` for a bgp lab."""
    if plan.router_netns is None:
        return {"Type": "bgp", "ASN": DEFAULT_ASN, "Peering": "mesh", "HoldTime": 9}
    peers = [{"Address": n.gateway, "ASN": DEFAULT_ASN, "Nodes": [n.name]} for n in plan.nodes]
    return {"Type": "bgp", "ASN": DEFAULT_ASN, "Peering": {"Peers": peers}, "HoldTime": 9}


def router_config(plan: LabPlan, log_file: str | None = None, extra: tuple[ExtraPeer, ...] = ()) -> str:
    """The router's bird.conf (pure)."""
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
    for i, n in enumerate(plan.nodes, 1):
        parts.append(_session(f"node_{i}", n.ip, n.gateway, f"where net = {n.pod_cidr} && bgp_next_hop = {n.ip}"))
    for p in extra:
        parts.append(_session(p.name, p.address, p.local, f"filter {{ bgp_local_pref = {p.local_pref}; accept; }}"))
    return "\n".join(parts)


def _session(name: str, address: str, local: str, imports: str) -> str:
    return (
        f"protocol bgp {name} {{\n"
        f"  local {local} as {DEFAULT_ASN};\n  neighbor {address} as {DEFAULT_ASN};\n  direct;\n"
        "  rr client;\n  hold time 9;\n  keepalive time 3;\n  connect delay time 1;\n"
        "  connect retry time 3;\n  error wait time 5, 60;\n  graceful restart on;\n"
        f"  ipv4 {{\n    gateway recursive;\n    import {imports};\n"
        "    export where source = RTS_BGP;\n  };\n}\n"
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


def reconfigure_router(plan: LabPlan, root: Path, extra: tuple[ExtraPeer, ...]) -> str:
    """Rewrite the router's configuration with ``extra`` sessions and apply it (``birdc configure``)."""
    assert plan.router_netns is not None
    folder = router_dir(root)
    config = folder / "bird.conf"
    config.write_text(router_config(plan, str(folder / "bird.log"), extra))
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
