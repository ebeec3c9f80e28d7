"""One node's Service proxy sync: snapshot → policy → render → kernel.

The sync is a full one each time (kube-proxy's full sync: every owned chain rewritten in one
``iptables-restore --noflush``, jumps and canaries ensured). It records what it loaded so the
caller can report it and skip work when nothing changed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from clew.kernel.errors import KernelError
from clew.model.objects import Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables.apply import full_sync
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide

log = logging.getLogger("clew.proxy")


@dataclass
class SyncResult:
    ok: bool
    seconds: float
    service_ports: int
    rules: int
    error: str | None = None


@dataclass
class ProxySyncer:
    netns: str
    config: ProxyConfig
    last_payload: str | None = None

    def sync(self, snapshot: Snapshot) -> SyncResult:
        start = time.monotonic()
        config = self._node_config(snapshot)
        policies = decide(snapshot, config)
        rendered = render(policies, config)
        payload = rendered.text()
        try:
            full_sync(self.netns, rendered)
        except KernelError as e:
            log.error("sync failed: %s", e)
            return SyncResult(False, time.monotonic() - start, len(policies), 0, str(e))
        self.last_payload = payload
        rules = payload.count("\n-A ")
        return SyncResult(True, time.monotonic() - start, len(policies), rules)

    def _node_config(self, snapshot: Snapshot) -> ProxyConfig:
        """Node IPs and pod CIDRs come from this node's Node object when the config lacks them."""
        node = next((n for n in snapshot.nodes if n.name == self.config.node_name), None)
        config = self.config
        if node is None:
            return config
        if not config.node_ips and node.internal_ips:
            config = replace(config, node_ips=node.internal_ips)
        if node.pod_cidrs and not config.node_pod_cidrs:
            config = replace(config, node_pod_cidrs=node.pod_cidrs)
        return config
