"""What the kernel's routing decides for an arriving packet besides the routes: three sysctls.

After PREROUTING, the input route lookup drops a packet

* for 127.0.0.0/8 from another interface (a martian destination), unless ``route_localnet``;
* whose source fails the reverse-path filter: ``rp_filter`` 1 (strict: the route back must leave
  by the input interface) or 2 (loose: any route back); the larger of ``all`` and the device's;
* that would be forwarded when the input device's ``forwarding`` (``ip_forward``) is 0.

Each gate returns why it drops (None: it passes) and, when the sysctl was not read (a ruleset
file, an old dump), the `Assumption` the answer rests on — made only where the value matters for
this packet, so a trace is not cluttered with assumptions that could not change it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from clew.trace.node_view import NodeView
from clew.trace.packet import Assumption
from clew.trace.routes import lookup
from clew.trace.state import State

Gate = tuple[str | None, Assumption | None]
Check = Callable[[NodeView, State], Gate]


def _unread(key: str, what: str) -> Assumption:
    return Assumption(f"{key} not read (a ruleset or an old dump): {what}", origin="sysctl")


def loopback_from_outside(view: NodeView, st: State) -> Gate:
    if st.iif in (None, "lo", "?") or not ipaddress.IPv4Address(st.dst).is_loopback:
        return None, None
    value = view.sysctl("route_localnet", st.iif)
    drop = f"{st.dst} (127.0.0.0/8) arriving on {st.iif} is a martian destination: dropped by routing"
    if value is None:
        return drop + " (route_localnet assumed 0)", _unread(
            "net.ipv4.conf.*.route_localnet", "assumed 0 (the default): a loopback destination from outside is dropped"
        )
    return (None, None) if value else (drop + " (route_localnet=0)", None)


def reverse_path(view: NodeView, st: State) -> Gate:
    if st.iif in (None, "lo", "?") or not view.routes or view.is_local(st.src):
        return None, None
    back = lookup(view, st.src)
    usable = back is not None and back.type == "unicast"
    strict_ok = usable and back is not None and back.dev == st.iif
    mode = view.sysctl("rp_filter", st.iif)
    where = f"the route back to {st.src} leaves by {back.dev}" if usable and back else f"no route back to {st.src}"
    if mode is None:
        if strict_ok:
            return None, None
        return None, _unread(
            "net.ipv4.conf.*.rp_filter",
            f"assumed 0 (off); with 1 (strict){' or 2 (loose)' if not usable else ''} the kernel drops this packet: "
            f"{where}, not {st.iif}",
        )
    if mode == 1 and not strict_ok:
        return f"the kernel's reverse-path filter (rp_filter=1 on {st.iif}) drops it: {where}", None
    if mode >= 2 and not usable:
        return f"the kernel's reverse-path filter (rp_filter=2 on {st.iif}) drops it: {where}", None
    return None, None


def forwarding(view: NodeView, st: State) -> Gate:
    if st.iif in (None, "?"):
        return None, None
    value = view.sysctl("forwarding", st.iif)
    if value is None:
        value = view.sysctl("ip_forward")
    if value is None:
        if not view.routes:
            return None, None  # rules only: routing as a whole is an assumption already
        return None, _unread("net.ipv4.ip_forward", "assumed 1: this node forwards")
    if value == 0:
        return f"forwarding is off on {st.iif} (net.ipv4.conf.{st.iif}.forwarding / ip_forward = 0): dropped", None
    return None, None
