"""BIRD 2's configuration for one node of the bgp backend: a pure function of the node, the other
nodes (name, IP, subnet from their Node objects), the cluster network and the bgp options.

What it says (Calico's ``bird.cfg`` template is the model; see ``shared/reference/bgp.md``):

* ``protocol static own_subnet``: this node's pod subnet as a blackhole route — the one and
  only thing the node announces (an aggregate; addresses in it without a pod don't leak to a
  default route). It is never written into the kernel (``cni0``'s connected route serves it).
* ``protocol kernel``: writes BGP-learned routes into the main table (``proto bird``); with
  graceful restart it ``persist``s them (they stay while BIRD is stopped) and keeps them
  through a restart until the peers have re-announced. It learns the kernel's own routes outside
  the cluster network (the default route) so an iBGP next hop on another segment resolves
  (``gateway recursive``); ``protocol direct`` adds the underlay's connected networks.
* one ``protocol bgp`` per session: the full node mesh (the higher IP of a pair is passive, so
  each pair opens one session), the route reflectors (a reflector's clients are ``rr client``),
  or the external peers that serve this node.
* import filters that are the safety (a rogue or confused peer cannot steer pod traffic): from
  a mesh peer only the subnet its Node object assigns to it, with that node as next hop; from a
  reflector (or an external peer in our AS: a reflector outside the cluster) only another
  node's subnet with that node as next hop; from an external peer in another AS (which puts
  itself as next hop) only another node's subnet. Never a prefix outside the cluster network,
  never this node's own.
* next hops: an iBGP next hop is another node, maybe behind routers, so it is resolved
  recursively through the kernel's routes; an eBGP peer on the underlay's network is the next
  hop itself (``gateway direct``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from clew.podnet.bgpconf import MESH, PEERS, REFLECTORS, BgpConf

OWN_PROTO = "own_subnet"  # the static protocol whose route is announced


@dataclass(frozen=True, slots=True, order=True)
class BgpNode:
    """A node as the Node objects describe it: name, InternalIP, pod subnet."""

    name: str
    ip: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network


@dataclass(frozen=True, slots=True)
class BirdInput:
    """Everything the configuration depends on. ``nodes``: the *other* nodes (already checked:
    inside ``network``, no overlap); ``onlink``: the underlay's directly connected networks (a
    peer there is a single hop away); ``log_file``: where BIRD logs (None: nowhere)."""

    node: BgpNode
    nodes: tuple[BgpNode, ...]
    network: ipaddress.IPv4Network
    conf: BgpConf
    onlink: tuple[ipaddress.IPv4Network, ...] = ()
    log_file: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """One BGP session of this node: its protocol name, peer address and AS, the import filter's
    expression, and flags."""

    name: str
    address: ipaddress.IPv4Address
    asn: int
    accept: str
    passive: bool = False
    rr_client: bool = False
    reflects: bool = False  # we are a reflector: pass on what the other nodes announce


def render(inp: BirdInput) -> str:
    """The whole ``bird.conf``."""
    parts = [_header(inp), _filters(inp), _kernel(inp)]
    if inp.conf.bfd:
        parts.append("protocol bfd {\n}\n")
    parts += [_session(inp, s) for s in sessions(inp)]
    return "\n".join(parts)


def sessions(inp: BirdInput) -> list[Session]:
    """This node's sessions, in a stable order."""
    conf, me = inp.conf, inp.node
    others = sorted(inp.nodes)
    names = _Names()
    if conf.peering == MESH:
        return [Session(names.get(n.name), n.ip, conf.asn, _from_owner(n), passive=me.ip > n.ip) for n in others]
    if conf.peering == REFLECTORS:
        reflectors = set(conf.reflectors)
        if me.name in reflectors:
            return [
                Session(names.get(n.name), n.ip, conf.asn,
                        "node_route()" if n.name in reflectors else _from_owner(n),
                        passive=me.ip > n.ip, rr_client=n.name not in reflectors, reflects=True)
                for n in others
            ]  # fmt: skip
        return [Session(names.get(n.name), n.ip, conf.asn, "node_route()") for n in others if n.name in reflectors]
    assert conf.peering == PEERS
    return [
        Session(
            names.get(f"peer_{p.address}"),
            p.address,
            p.asn,
            "node_route()" if p.asn == conf.asn else "other_node_subnet()",
        )
        for p in conf.peers
        if p.serves(me.name)
    ]


def _header(inp: BirdInput) -> str:
    me = inp.node
    log = f'log "{inp.log_file}" {{ info, remote, warning, error, auth, fatal, bug }};\n' if inp.log_file else ""
    # a BIRD started in recovery (-R) keeps the kernel's routes until its peers re-announced
    # theirs, or this long: a peer silent for a hold time is gone anyway
    wait = f"graceful restart wait {inp.conf.hold_time};\n" if inp.conf.graceful_restart else ""
    return (
        f"# BIRD 2 configuration of node {me.name}, written by clew's bgp backend: do not edit.\n"
        f"{log}router id {me.ip};\n{wait}\n"
        f"define CLUSTER = {inp.network};\ndefine OWN = {me.subnet};\n\n"
        "protocol device {\n  scan time 10;\n}\n\n"
        "# the underlay's connected networks, to resolve next hops (never announced)\n"
        'protocol direct {\n  ipv4 { import where net !~ CLUSTER; };\n  interface "-cni0", "-veth*", "*";\n}\n\n'
        f"protocol static {OWN_PROTO} {{\n  ipv4;\n  route {me.subnet} blackhole;\n}}\n"
    )


def _filters(inp: BirdInput) -> str:
    others = sorted(inp.nodes)
    subnets = ", ".join(str(n.subnet) for n in others)
    owner_lines = "".join(f"  if net = {n.subnet} then return bgp_next_hop = {n.ip};\n" for n in others)
    other = f"  return net ~ [ {subnets} ];\n" if others else "  return false;\n"
    return (
        "# a prefix we may install: inside the cluster network and not our own subnet\n"
        "function foreign_prefix()\n{\n  return net !~ CLUSTER || net = OWN;\n}\n\n"
        "# exactly the subnet a Node object assigns to another node\n"
        f"function other_node_subnet()\n{{\n{other}}}\n\n"
        "# another node's subnet, announced with that node as the next hop\n"
        f"function node_route()\n{{\n{owner_lines}  return false;\n}}\n"
    )


def _kernel(inp: BirdInput) -> str:
    gr = inp.conf.graceful_restart
    keep = "  persist;\n  graceful restart on;\n" if gr else ""
    return (
        "protocol kernel {\n"
        "  ipv4 {\n"
        "    # learn the kernel's own routes (the default route), never the cluster network's\n"
        "    import where net !~ CLUSTER && source = RTS_INHERIT;\n"
        "    # install only routes BGP learned, only inside the cluster network, never our own subnet\n"
        "    export where source = RTS_BGP && !foreign_prefix();\n"
        "  };\n"
        "  learn;\n"
        "  scan time 10;\n"
        "  merge paths on;\n"
        f"{keep}"
        "}\n"
    )


def _session(inp: BirdInput, s: Session) -> str:
    conf, me = inp.conf, inp.node
    hop = any(s.address in net for net in inp.onlink)
    ebgp = s.asn != conf.asn
    keepalive = max(1, conf.hold_time // 3)
    lines = [
        f"protocol bgp {s.name} {{",
        f"  local {me.ip} as {conf.asn};",
        f"  neighbor {s.address} as {s.asn};",
        "  direct;" if hop else ("  multihop 8;" if ebgp else "  multihop;"),
        f"  hold time {conf.hold_time};",
        f"  keepalive time {keepalive};",
        "  connect delay time 1;",
        "  connect retry time 3;",
        "  error wait time 5, 60;",
    ]
    if conf.graceful_restart:
        lines += ["  graceful restart on;", f"  graceful restart time {conf.graceful_restart_time};"]
    if s.passive:
        lines.append("  passive on;")
    if s.rr_client:
        lines.append("  rr client;")
    if ebgp:  # every node has the same AS: a route from another node comes back with ours in its path
        lines.append("  allow local as;")
    if conf.password is not None:
        lines.append(f'  password "{conf.password}";')
    if conf.bfd:
        lines.append("  bfd on;")
    export = f'proto = "{OWN_PROTO}"' + (" || source = RTS_BGP" if s.reflects else "")
    lines += [
        "  ipv4 {",
        f"    gateway {'direct' if hop and ebgp else 'recursive'};",
        f"    import where !foreign_prefix() && {s.accept};",
        f"    export where {export};",
        "  };",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _from_owner(n: BgpNode) -> str:
    return f"net = {n.subnet} && bgp_next_hop = {n.ip}"


class _Names:
    """BIRD protocol names from node names: ``node-2`` → ``node_2``, made unique."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def get(self, name: str) -> str:
        base = "n_" + re.sub(r"[^A-Za-z0-9]", "_", name)
        got, i = base, 2
        while got in self.used:
            got, i = f"{base}_{i}", i + 1
        self.used.add(got)
        return got


def bgp_nodes(entries: Sequence[tuple[str, str, str]]) -> tuple[BgpNode, ...]:
    """(name, ip, subnet) triples as :class:`BgpNode` values (for tests and the lab)."""
    return tuple(BgpNode(n, ipaddress.IPv4Address(ip), ipaddress.IPv4Network(s)) for n, ip, s in entries)


def bgp_sessions(show_protocols: str) -> list[dict[str, str]]:
    """The BGP rows of ``birdc show protocols`` output: ``{"name", "state", "since", "info"}``
    (``info`` is the session's state: ``Established``, ``Active``, ``Connect``…)."""
    found = []
    for line in show_protocols.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[1] == "BGP":
            found.append({"name": cols[0], "state": cols[3], "since": cols[4], "info": " ".join(cols[5:])})
    return found
