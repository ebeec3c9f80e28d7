"""Load a render into a node's kernel, the way kube-proxy's full sync does.

1. ``iptables-restore -w 5 -W 100000 --noflush --counters`` with the whole payload: one atomic
   transaction for the filter and nat tables; chains clew does not declare stay untouched.
2. The canary chains in mangle, nat and filter (flush detection).
3. The jump rules from the built-in chains, ensured with ``-C`` / ``-I`` (idempotent).
4. ``net.ipv4.conf.all.route_localnet=1`` in the node's namespace when localhost NodePorts are
   on (and the KUBE-FIREWALL rule guarding it is in the payload).

Every call names the node's network namespace; nothing here touches any other.
"""

from __future__ import annotations

from clew.kernel import iptables, netns
from clew.proxy import names
from clew.proxy.iptables.jumps import CANARY_TABLES, jump_rules
from clew.proxy.iptables.render import Rendered


def full_sync(node_netns: str, rendered: Rendered) -> None:
    """Apply a full render into ``node_netns``. Idempotent: applying twice changes nothing."""
    iptables.restore(node_netns, rendered.text(), noflush=True, counters=True)
    for table in CANARY_TABLES:
        iptables.ensure_chain(node_netns, table, names.KUBE_PROXY_CANARY)
    for rule in jump_rules(rendered.config):
        iptables.ensure_rule(node_netns, rule.table, rule.chain, rule.args, prepend=True)
    if rendered.config.localhost_nodeports:
        netns.set_sysctl(node_netns, "net.ipv4.conf.all.route_localnet", 1)
