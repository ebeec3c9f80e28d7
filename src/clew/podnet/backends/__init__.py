"""Pod-network backends, listed in one dict.

A backend is pure: from the node's own lease, every lease and the underlay it computes the
whole desired state (:class:`~clew.podnet.desired.Desired`); :mod:`clew.podnet.setup` creates
its device and :mod:`clew.podnet.reconcile` moves the kernel to that level. Adding a backend
means one module and one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Protocol

from clew.podnet.annotations import Lease
from clew.podnet.backends.bgp import BgpBackend
from clew.podnet.backends.hostgw import HostGwBackend
from clew.podnet.backends.vxlan import VxlanBackend, VxlanDeviceSpec
from clew.podnet.desired import Desired, Underlay
from clew.podnet.netconf import NetConf


class Backend(Protocol):
    def __init__(self, conf: NetConf) -> None: ...

    def pod_mtu(self, underlay: Underlay) -> int:
        """The MTU of pod interfaces (``FLANNEL_MTU``)."""
        ...

    def device(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, mac: str | None = None
    ) -> VxlanDeviceSpec | None:
        """The device the backend needs on this node, or None."""
        ...

    def own_lease(
        self, node: str, subnet: ipaddress.IPv4Network, underlay: Underlay, vtep_mac: str | None = None
    ) -> Lease:
        """The lease this node publishes (as Node annotations)."""
        ...

    def desired(self, self_lease: Lease, leases: Sequence[Lease], underlay: Underlay) -> Desired:
        """Everything the kernel should hold for this lease set."""
        ...


BACKENDS: dict[str, type[Backend]] = {"vxlan": VxlanBackend, "host-gw": HostGwBackend, "bgp": BgpBackend}


def backend_for(conf: NetConf) -> Backend:
    """The backend ``conf`` names (net-conf.json's ``Backend.Type``, already validated)."""
    return BACKENDS[conf.backend_type](conf)
