"""The kernel layer's readers for the pod network, on JSON captured from iproute2 6.1 (pure),
and the batch lines its writers produce."""

from __future__ import annotations

import ipaddress
import json

from clew.kernel import fdb, links, neighbours, routes

IP = ipaddress.IPv4Address
NET = ipaddress.IPv4Network

ROUTES = json.loads(
    '[{"dst":"default","gateway":"192.168.7.1","dev":"eth0","flags":[]},'
    '{"dst":"10.244.2.0/24","gateway":"10.244.2.0","dev":"flannel.1","flags":["onlink"]},'
    '{"dst":"10.244.3.0/24","gateway":"192.168.7.3","dev":"eth0","metric":50,"flags":[]},'
    '{"dst":"10.9.9.9","dev":"eth0","scope":"link","flags":[]},'
    '{"type":"blackhole","dst":"10.10.0.0/16","flags":[]},'
    '{"dst":"192.168.7.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.168.7.2","flags":[]}]'
)
LINK = json.loads(
    '{"ifindex":4,"ifname":"flannel.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,'
    '"address":"0a:11:22:33:44:55","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"192.168.7.2",'
    '"link":"eth0","port_range":{"low":0,"high":0},"port":8472,"learning":false,"ttl":0}}}'
)


def test_parse_routes() -> None:
    got = [routes.parse_route(doc) for doc in ROUTES]
    assert got[0] == routes.Route(NET("0.0.0.0/0"), "eth0", IP("192.168.7.1"))
    assert got[1] == routes.Route(NET("10.244.2.0/24"), "flannel.1", IP("10.244.2.0"), onlink=True)
    assert got[2].metric == 50
    assert got[3].dst == NET("10.9.9.9/32") and got[3].scope == "link" and got[3].gateway is None
    assert got[4].type == "blackhole" and got[4].dev is None
    assert got[5].protocol == "kernel"


def test_route_lines() -> None:
    assert routes.replace_command(NET("10.244.2.0/24"), "flannel.1", IP("10.244.2.0"), onlink=True) == (
        "route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"
    )
    assert routes.replace_command(NET("10.244.2.0/24"), "eth0", IP("192.168.1.12")) == (
        "route replace 10.244.2.0/24 via 192.168.1.12 dev eth0"
    )
    assert routes.delete_command(routes.parse_route(ROUTES[2])) == "route del unicast 10.244.3.0/24 dev eth0 metric 50"


def test_parse_link() -> None:
    link = links.parse_link(LINK)
    assert (link.name, link.index, link.kind, link.mtu, link.mac, link.up) == (
        "flannel.1",
        4,
        "vxlan",
        1450,
        "0a:11:22:33:44:55",
        True,
    )
    assert link.vxlan == links.VxlanInfo(1, IP("192.168.7.2"), "eth0", 8472, False)
    plain = links.parse_link({"ifindex": 2, "ifname": "eth0", "flags": ["BROADCAST"], "mtu": 1500, "address": "x"})
    assert plain.kind == "" and plain.vxlan is None and not plain.up


def test_parse_neighbours_and_fdb() -> None:
    n = neighbours.parse_neighbour(
        json.loads('{"dst":"10.244.2.0","lladdr":"0A:00:00:00:00:02","state":["PERMANENT"]}'), "flannel.1"
    )
    assert n == neighbours.Neighbour(IP("10.244.2.0"), "0a:00:00:00:00:02", "flannel.1", ("PERMANENT",)) and n.permanent
    failed = neighbours.parse_neighbour({"dst": "10.244.9.0", "state": ["FAILED"]}, "flannel.1")
    assert failed.mac is None and not failed.permanent
    e = fdb.parse_fdb(
        json.loads('{"mac":"0a:00:00:00:00:02","dst":"192.168.7.3","flags":["self"],"state":"permanent"}'), "flannel.1"
    )
    assert e == fdb.FdbEntry("0a:00:00:00:00:02", "flannel.1", IP("192.168.7.3"), True)
    assert fdb.delete_command(e) == "fdb del 0a:00:00:00:00:02 dev flannel.1 dst 192.168.7.3 self"
    assert fdb.replace_command(e.mac, e.dev, IP("192.168.7.3")) == (
        "fdb replace 0a:00:00:00:00:02 dev flannel.1 dst 192.168.7.3 self permanent"
    )
    assert neighbours.replace_command(IP("10.244.2.0"), "0a:00:00:00:00:02", "flannel.1") == (
        "neigh replace 10.244.2.0 lladdr 0a:00:00:00:00:02 dev flannel.1 nud permanent"
    )


def test_one_route_parser_for_the_kernel_layer_the_cni_plugin_and_the_tracer() -> None:
    """``ip -j route`` is read by `clew.iproute2.routes` alone: the pod network's reader, the CNI
    plugin's CHECK and the tracer's node view agree on every route (IPv6 and junk skipped)."""
    from clew.iproute2.routes import parse_routes
    from clew.trace.node_view import routes_from_json

    docs = [*ROUTES, {"dst": "fd00::/64", "dev": "eth0"}, {"dst": "nonsense"}, {"type": "local",
            "dst": "192.168.7.2", "dev": "eth0", "table": "local", "protocol": "kernel", "scope": "host",
            "prefsrc": "192.168.7.2"}]  # fmt: skip
    parsed = parse_routes(docs)
    assert [r.dst for r in parsed] == [routes.parse_route(d).dst for d in ROUTES] + [NET("192.168.7.2/32")]  # type: ignore[union-attr]
    traced = routes_from_json(docs)
    assert [(t.dst, t.dev, t.gateway, t.table, t.onlink, t.metric, t.prefsrc) for t in traced] == [
        (r.dst, r.dev, str(r.gateway) if r.gateway else None, r.table, r.onlink, r.metric, r.prefsrc) for r in parsed
    ]
    assert [r.dst_text for r in parsed][:4] == ["default", "10.244.2.0/24", "10.244.3.0/24", "10.9.9.9"]
    assert parsed[-1].table == "local" and parsed[-1].type == "local" and parsed[5].prefsrc == "192.168.7.2"
