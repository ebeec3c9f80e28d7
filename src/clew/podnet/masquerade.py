"""flanneld's iptables rules: masquerade pod traffic leaving the cluster network, and accept
forwarding of pod traffic (flannel ``pkg/trafficmngr/iptables``, ``e2e/rules.go``).

nat ``FLANNEL-POSTRTG`` (jumped to from POSTROUTING), first match wins:

1. kube-proxy's mark 0x4000 → RETURN: kube-proxy masquerades it; a second SNAT of the outer
   vxlan packet with ``--random-fully`` hit a kernel checksum bug (the "63 s delay").
2. pod subnet → cluster network, 3. cluster network → pod subnet: RETURN (never pod → pod).
4. anything outside the cluster → this node's pods: RETURN (keep external clients' addresses).
5. cluster network → not multicast: MASQUERADE --random-fully (pods leaving the cluster).
6. outside → cluster network: MASQUERADE --random-fully (the host talking to remote pods).

filter ``FLANNEL-FWD`` (jumped to from FORWARD, **appended** after kube-proxy's jumps):
ACCEPT from and to the cluster network, for hosts whose FORWARD policy is DROP (Docker).

:func:`render` is pure; :func:`apply` loads it with ``iptables-restore --noflush`` (the two
chains declared, hence rewritten whole) and ensures the two jumps, appended as flannel does.
The chain names and comments are flannel's, so its users and its e2e checks recognise them.
"""

from __future__ import annotations

import ipaddress

from clew.kernel import iptables
from clew.netfilter.restore import TableText, comment, payload

POSTRTG = "FLANNEL-POSTRTG"
FWD = "FLANNEL-FWD"
MASQ_COMMENT = "flanneld masq"
FWD_COMMENT = "flanneld forward"
KUBE_PROXY_MARK = "0x4000/0x4000"
MULTICAST = "224.0.0.0/4"
# (table, built-in chain, jump rule args): appended, like flannel's "-A".
JUMPS = (
    ("nat", "POSTROUTING", ["-m", "comment", "--comment", MASQ_COMMENT, "-j", POSTRTG]),
    ("filter", "FORWARD", ["-m", "comment", "--comment", FWD_COMMENT, "-j", FWD]),
)


def masquerade_rules(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> list[str]:
    """The ``-A FLANNEL-POSTRTG …`` lines, in flannel's order."""
    masq, net, sub = comment(MASQ_COMMENT), str(network), str(subnet)
    return [
        f"-A {POSTRTG} -m mark --mark {KUBE_PROXY_MARK} {masq} -j RETURN",
        f"-A {POSTRTG} -s {sub} -d {net} {masq} -j RETURN",
        f"-A {POSTRTG} -s {net} -d {sub} {masq} -j RETURN",
        f"-A {POSTRTG} ! -s {net} -d {sub} {masq} -j RETURN",
        f"-A {POSTRTG} -s {net} ! -d {MULTICAST} {masq} -j MASQUERADE --random-fully",
        f"-A {POSTRTG} ! -s {net} -d {net} {masq} -j MASQUERADE --random-fully",
    ]


def forward_rules(network: ipaddress.IPv4Network) -> list[str]:
    """The ``-A FLANNEL-FWD …`` lines."""
    fwd = comment(FWD_COMMENT)
    return [f"-A {FWD} -s {network} {fwd} -j ACCEPT", f"-A {FWD} -d {network} {fwd} -j ACCEPT"]


def render(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network, *, ipmasq: bool = True) -> str:
    """iptables-restore input for the node whose pod subnet is ``subnet`` (pure).

    Without ``ipmasq`` (flanneld's ``--ip-masq=false``) only the forward rules are rendered.
    """
    tables = []
    if ipmasq:
        tables.append(TableText("nat", [POSTRTG], masquerade_rules(network, subnet)))
    tables.append(TableText("filter", [FWD], forward_rules(network)))
    return payload(tables)


def apply(netns: str, network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network, *, ipmasq: bool = True) -> None:
    """Load the rules into ``netns`` and ensure the jumps. Idempotent."""
    iptables.restore(netns, render(network, subnet, ipmasq=ipmasq), noflush=True, counters=False)
    for table, chain, args in JUMPS:
        if table == "nat" and not ipmasq:
            continue
        iptables.ensure_rule(netns, table, chain, args, prepend=False)
