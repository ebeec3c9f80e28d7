"""The pod MTU per backend: the underlay's MTU minus what the backend's encapsulation adds.

vxlan adds 50 bytes to every pod packet: outer IPv4 (20) + UDP (8) + VXLAN (8) + the inner
Ethernet header (14). flannel uses 50 even on an IPv6 underlay (which would need 70). host-gw
routes pod packets unchanged, so pods get the full underlay MTU. 1500 → 1450 under vxlan.

The pod MTU flows into subnet.env's ``FLANNEL_MTU``, the CNI plugin's bridge and veths, and the
vxlan device itself. A pod MTU too large for the path shows up as handshakes that work and big
responses that hang (flannel #1614).
"""

from __future__ import annotations

from clew.podnet.errors import PodnetError

OVERHEAD = {"vxlan": 50, "host-gw": 0, "bgp": 0}
MIN_POD_MTU = 576  # the smallest datagram every IPv4 host must accept (RFC 791)


def pod_mtu(underlay_mtu: int, backend: str) -> int:
    """The MTU of pod interfaces (and of ``flannel.<VNI>``) for ``backend`` on this underlay."""
    if backend not in OVERHEAD:
        raise PodnetError(f"unknown backend {backend!r}; choose one of: {', '.join(OVERHEAD)}")
    mtu = underlay_mtu - OVERHEAD[backend]
    if mtu < MIN_POD_MTU:
        raise PodnetError(
            f"underlay MTU {underlay_mtu} leaves {mtu} for pods under {backend}; at least {MIN_POD_MTU} is needed"
        )
    return mtu
