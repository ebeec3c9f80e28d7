"""What the agent needs of a Service proxy syncer, whatever the mode: `ProxySyncer` (iptables)
and `NftSyncer` (nftables) both are one; `syncer_for` picks by the configuration's mode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clew.model.objects import Snapshot
from clew.model.proxy_config import ProxyConfig
from clew.proxy.iptables.guard import Difference
from clew.proxy.policy import PortPolicy
from clew.proxy.sync import SyncResult


class ServiceSyncer(Protocol):
    @property
    def netns(self) -> str: ...

    @property
    def config(self) -> ProxyConfig: ...

    @property
    def last_policies(self) -> list[PortPolicy]:
        """The policies of the ports the last successful sync loaded."""
        ...

    def sync(self, snapshot: Snapshot) -> SyncResult: ...

    def request_full(self) -> None: ...

    def tampered(self) -> Sequence[Difference]:
        """What someone else changed in what clew owns since the last sync (empty: nothing)."""
        ...


def syncer_for(netns: str, config: ProxyConfig) -> ServiceSyncer:
    """The real syncer of ``config.mode`` for the node in ``netns``. The nftables one removes
    iptables mode's rules at its first sync; the iptables one deletes the nftables table."""
    if config.mode == "nftables":
        from clew.proxy import cleanup
        from clew.proxy.iptables import apply
        from clew.proxy.nftables.sync import NftSyncer

        def leave_iptables_mode() -> list[str]:
            return cleanup.remove_iptables_chains(apply.kernel_for(netns))

        return NftSyncer(netns, config, leave_iptables_mode=leave_iptables_mode)
    from clew.proxy.sync import ProxySyncer

    return ProxySyncer(netns, config)
