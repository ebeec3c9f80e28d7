"""kube-proxy's own ``iptables-restore`` payloads for the rules clew renders — to time beside clew's.

kube-proxy's ``syncProxyRules`` (iptables mode, KEP-3453) writes one ``iptables-restore
--noflush --counters`` per sync, built from the same per-Service-port rules as clew's render
(`clew.proxy.iptables.render`, byte for byte), so its shapes are made here from that render:

* **partial sync** — every shared chain declared and rewritten in full (filter KUBE-SERVICES,
  KUBE-EXTERNAL-SERVICES, KUBE-FORWARD, KUBE-NODEPORTS, KUBE-PROXY-FIREWALL, KUBE-FIREWALL; nat
  KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ), plus the changed Service's
  own KUBE-SVC/SVL/EXT/FW/SEP chains; chains that went away are declared and deleted (``-X``).
  Unchanged Services' chains are left out (``--noflush`` keeps them).
* **full sync** — the same with every Service's chains declared and rewritten.

Not timed: kube-proxy's ``iptables-save -t nat`` for stale chains, which it skips in large
cluster mode (over 1000 endpoints; every bench size past ~330 Services), and its Go work to
build the text. The bench times only ``iptables-restore`` of these payloads.
"""

from __future__ import annotations

from collections.abc import Iterable

from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables.render import PortRules, assemble, render_port
from clew.proxy.policy import PortPolicy, large_cluster_mode


class KubeProxyPayloads:
    """kube-proxy's view of the rules: per-port rules by key, updated one Service at a time."""

    def __init__(self, ports: Iterable[PortRules], config: ProxyConfig) -> None:
        """From rules already rendered (the bench shares the sync engine's: no second copy in memory)."""
        self.config = config
        self.ports: dict[str, PortRules] = {r.key: r for r in ports}

    @classmethod
    def from_policies(cls, policies: Iterable[PortPolicy], config: ProxyConfig) -> KubeProxyPayloads:
        policies = list(policies)
        quiet = large_cluster_mode(policies)
        return cls((render_port(p, config, quiet) for p in policies), config)

    def full(self) -> str:
        """The full ``--noflush`` sync: every chain declared and rewritten."""
        return assemble(self.ports.values(), self.config).text()

    def change(self, service_key: str, policies: Iterable[PortPolicy]) -> str:
        """The partial sync after ``service_key`` (``ns/name``) changed; ``policies`` are all
        Service ports after the change (the Service's own ones may be gone: it was deleted)."""
        policies = list(policies)
        quiet = large_cluster_mode(policies)
        old = [r for r in self.ports.values() if r.service_key == service_key]
        for r in old:
            del self.ports[r.key]
        for p in policies:
            if p.service_key == service_key:
                rules = render_port(p, self.config, quiet)
                self.ports[rules.key] = rules
        kept = {c for r in self.ports.values() if r.service_key == service_key for c in r.chains}
        stale = sorted({c for r in old for c in r.chains} - kept)
        rendered = assemble(self.ports.values(), self.config)
        return rendered.text(only_services={service_key}, delete_chains=stale)
