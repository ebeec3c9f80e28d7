"""FakeNft: the stateful nftables fake the nftables-mode sync is tested against (its faithfulness
to the kernel is proved in tests/kernel/test_nft_kernel.py; here: its parsing, its refusals,
atomicity and the accessors), plus nft JSON as text (clew.kernel.nft_json)."""

from __future__ import annotations

import pytest

from clew.fakes import nft_parse
from clew.fakes.nft import FakeNft
from clew.kernel import nft_json
from clew.kernel.errors import KernelError
from clew.kernel.nftables import NftKernel, has_table_in

BASE = """add table ip clew { comment "clew" ; }
add chain ip clew nat-prerouting { type nat hook prerouting priority dstnat ; }
add chain ip clew services
add chain ip clew to-dst
add set ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service ; comment "masq" ; }
add set ip clew allow { type ipv4_addr . inet_proto . inet_service . ipv4_addr ; flags interval ; }
add map ip clew service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip clew dst-tcp-2 { typeof ip daddr . tcp dport . numgen random mod 2 : ip daddr . tcp dport ; }
add rule ip clew nat-prerouting jump services
add rule ip clew services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip clew services ip daddr . meta l4proto . th dport @cluster-masq mark set mark or 0x4000
add rule ip clew services jump to-dst
add rule ip clew to-dst dnat ip to ip daddr . tcp dport . numgen random mod 2 map @dst-tcp-2
"""
SVC = 'add element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0 comment "ns/a:http" : 10.244.0.1 . 8080, 10.96.0.1 . 80 . 1 comment "ns/a:http" : 10.244.0.2 . 8080 }'  # noqa: E501


@pytest.fixture
def fake() -> FakeNft:
    f = FakeNft(where="node-a")
    f.run(BASE)
    return f


def refused(fake: FakeNft, script: str) -> str:
    """Run ``script``, expect a refusal that changes nothing; return the message."""
    before = fake.state()
    with pytest.raises(KernelError) as caught:
        fake.run(script)
    assert fake.state() == before
    return str(caught.value)


def test_it_is_an_nft_kernel() -> None:
    kernel: NftKernel = FakeNft()
    assert not kernel.has_table("ip", "clew")


def test_the_layout_loads_and_reads_back(fake: FakeNft) -> None:
    fake.run(SVC)
    assert fake.tables() == [("ip", "clew")]
    assert fake.chains() == ["nat-prerouting", "services", "to-dst"]
    assert fake.base_chain("nat-prerouting") == nft_parse.BaseSpec("nat", "prerouting", -100, "accept")
    assert fake.base_chain("services") is None
    assert fake.rules("services") == [
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "ip daddr . meta l4proto . th dport @cluster-masq mark set mark or 0x4000",
        "jump to-dst",
    ]
    assert fake.elements("dst-tcp-2") == {
        "10.96.0.1 . 80 . 0": "10.244.0.1 . 8080",
        "10.96.0.1 . 80 . 1": "10.244.0.2 . 8080",
    }
    assert fake.comments("dst-tcp-2") == {"10.96.0.1 . 80 . 0": "ns/a:http", "10.96.0.1 . 80 . 1": "ns/a:http"}
    spec = fake.sets()["dst-tcp-2"]
    assert (spec.kind, spec.key_arity, spec.data_arity) == ("typeof", 3, 2)
    assert fake.sets()["cluster-masq"].comment == "masq"


def test_commands_split_on_semicolons_and_newlines_not_inside_braces_or_quotes() -> None:
    text = 'add table ip t; add map ip t m { type ipv4_addr : ipv4_addr ;\n comment "a; b } c" ; }\n# a comment\n'
    text += 'add element ip t m {\n  10.0.0.1 : 10.0.0.2,\n  10.0.0.3 comment "x, y : z" : 10.0.0.4\n}'
    fake = FakeNft()
    fake.run(text)
    assert fake.sets("ip", "t")["m"].comment == "a; b } c"
    assert fake.elements("m", "ip", "t") == {"10.0.0.1": "10.0.0.2", "10.0.0.3": "10.0.0.4"}
    assert fake.comments("m", "ip", "t") == {"10.0.0.3": "x, y : z"}
    assert nft_parse.statements("a\n\nb ; c { d ;\n e }") == [(1, "a"), (3, "b"), (3, "c { d ; e }")]


def test_one_services_change_is_delete_and_add(fake: FakeNft) -> None:
    fake.run(SVC)
    fake.run(
        "delete element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0, 10.96.0.1 . 80 . 1 }\n"
        "add element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0 : 10.244.0.7 . 8080,"
        " 10.96.0.1 . 80 . 1 : 10.244.0.8 . 8080 }"
    )
    assert fake.elements("dst-tcp-2") == {
        "10.96.0.1 . 80 . 0": "10.244.0.7 . 8080",
        "10.96.0.1 . 80 . 1": "10.244.0.8 . 8080",
    }
    assert fake.comments("dst-tcp-2") == {}
    assert fake.log[-1].startswith("delete element")


def test_the_same_element_again_is_accepted_and_keeps_its_first_comment(fake: FakeNft) -> None:
    fake.run(SVC)
    fake.run('add element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0 comment "other" : 10.244.0.1 . 8080 }')
    assert fake.comments("dst-tcp-2")["10.96.0.1 . 80 . 0"] == "ns/a:http"


def test_keys_compare_with_whitespace_and_slash_32_normalised(fake: FakeNft) -> None:
    fake.run("add element ip clew allow { 192.0.2.1 .  tcp . 80 . 10.0.0.1/32, 192.0.2.1 . tcp . 80 . 10.0.0.0/8 }")
    assert set(fake.elements("allow")) == {"192.0.2.1 . tcp . 80 . 10.0.0.1", "192.0.2.1 . tcp . 80 . 10.0.0.0/8"}
    fake.run("delete element ip clew allow { 192.0.2.1 . tcp . 80 . 10.0.0.1 }")
    assert set(fake.elements("allow")) == {"192.0.2.1 . tcp . 80 . 10.0.0.0/8"}


def test_deleting_an_element_ignores_a_value_as_nft_does(fake: FakeNft) -> None:
    fake.run(SVC)
    fake.run("delete element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0 : 10.9.9.9 . 1 }")
    assert list(fake.elements("dst-tcp-2")) == ["10.96.0.1 . 80 . 1"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("add element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0 : 10.244.0.9 . 8080 }", "File exists"),
        ("create element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0 : 10.244.0.1 . 8080 }", "File exists"),
        (
            "add element ip clew dst-tcp-2 { 10.96.0.2 . 80 . 0 : 10.244.0.1 . 80, "
            "10.96.0.2 . 80 . 0 : 10.244.0.2 . 80 }",
            "File exists",
        ),
        (
            "delete element ip clew dst-tcp-2 { 10.96.0.9 . 80 . 0 }",
            "Could not process rule: No such file or directory",
        ),
        ("delete element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0, 10.96.0.1 . 80 . 0 }", "No such file or directory"),
        ("add element ip clew nope { 10.0.0.1 }", "No such file or directory"),
        ("add element ip other m { 10.0.0.1 }", "No such file or directory"),
        ("add element ip clew cluster-masq { 10.0.0.1 . tcp }", "datatype mismatch"),
        ("add element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 5 : 10.244.0.1 }", "datatype mismatch"),
        ("add element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 5 }", "Invalid argument"),
        ("add element ip clew cluster-masq { 10.0.0.1 . tcp . 80 : 10.0.0.2 . tcp . 1 }", "set is not a map"),
        ("add element ip clew cluster-masq { 10.0.0.0/8 . tcp . 80 }", "flags interval"),
        ("add element ip clew service-ips { 10.0.0.1 . tcp . 80 : goto nowhere }", "No such file or directory"),
        ("add element ip clew service-ips { 10.0.0.1 . tcp . 80 : goto nat-prerouting }", "Operation not supported"),
        ("add element ip clew service-ips { 10.0.0.1 . tcp . 80 : 10.0.0.2 }", "expected verdict"),
        ("delete chain ip clew to-dst", "Device or resource busy"),
        ("delete chain ip clew nowhere", "No such file or directory"),
        ("delete set ip clew cluster-masq", "Device or resource busy"),
        ("delete map ip clew dst-tcp-2", "Device or resource busy"),
        ("flush set ip clew dst-tcp-2", "No such file or directory"),
        ("flush chain ip clew nowhere", "No such file or directory"),
        ("add rule ip clew nowhere accept", "No such file or directory"),
        ("add rule ip clew services jump nowhere", "No such file or directory"),
        ("add rule ip clew services jump nat-prerouting", "Operation not supported"),
        ("add rule ip clew services ip daddr @nowhere accept", "No such file or directory"),
        (
            "add rule ip clew services ip daddr @later accept\nadd set ip clew later { type ipv4_addr ; }",
            "No such file or directory",
        ),
        ("delete rule ip clew services handle 999", "No such file or directory"),
        ("add set ip clew cluster-masq { type ipv4_addr . inet_service ; }", "File exists"),
        (
            "add set ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service ; flags interval ; }",
            "File exists",
        ),
        ("add map ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service : verdict ; }", "File exists"),
        ("create set ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service ; }", "File exists"),
        ("create chain ip clew services", "File exists"),
        ("create table ip clew", "File exists"),
        ("add chain ip clew nat-prerouting { type nat hook prerouting priority 0 ; }", "Operation not supported"),
        ("add chain ip clew nat-prerouting { type nat hook output priority -100 ; }", "Operation not supported"),
        ("add chain ip clew nat-prerouting { type filter hook prerouting priority -100 ; }", "File exists"),
        ("add chain ip clew services { type nat hook output priority -100 ; }", "File exists"),
        ("delete table ip nowhere", "No such file or directory"),
        ("add chain ip clew dst", "syntax error, unexpected dst"),
        ('add chain ip clew "quoted"', "unexpected quoted string"),
        ("add set ip clew s", "syntax error"),
        ("add map ip clew m { type ipv4_addr ; }", "a map needs"),
        ("add set ip clew s { type ipv4_addr : ipv4_addr ; }", "a set has no data"),
        ("add bogus", "syntax error"),
        ("table ip clew { chain c { } }", "block form"),
        ("add element ip clew cluster-masq { 10.0.0.1 . tcp . 80", "unterminated"),
    ],
)
def test_refusals_change_nothing(fake: FakeNft, script: str, expected: str) -> None:
    fake.run(SVC)
    fake.run("add chain ip clew aff\nadd element ip clew service-ips { 10.96.0.3 . tcp . 80 : goto aff }")
    message = refused(
        fake, "add element ip clew cluster-masq { 10.96.0.50 . tcp . 80 }\nadd chain ip clew x\n" + script
    )
    assert expected in message
    assert message.startswith("nft in netns node-a: Error: ")


def test_a_refusal_late_in_a_big_transaction_undoes_everything(fake: FakeNft) -> None:
    fake.run(SVC)
    before = fake.list_json("ruleset")
    with pytest.raises(KernelError, match=r"\[line 10: delete element ip clew cluster-masq"):
        fake.run(
            "flush map ip clew dst-tcp-2\n"
            "add element ip clew dst-tcp-2 { 10.96.0.1 . 80 . 0 : 10.244.0.9 . 8080 }\n"
            "flush chain ip clew services\nflush chain ip clew to-dst\ndelete chain ip clew to-dst\n"
            "add chain ip clew new\nadd rule ip clew new accept\ninsert rule ip clew services jump new\n"
            "add table ip other\n"
            "delete element ip clew cluster-masq { 10.0.0.1 . tcp . 1 }"
        )
    assert fake.list_json("ruleset") == before
    assert fake.tables() == [("ip", "clew")]


def test_check_changes_nothing_and_refuses_as_run(fake: FakeNft) -> None:
    before = fake.state()
    fake.check("add element ip clew cluster-masq { 10.0.0.1 . tcp . 1 }\ndelete table ip clew")
    assert fake.state() == before
    with pytest.raises(KernelError, match="No such file"):
        fake.check("delete element ip clew cluster-masq { 10.0.0.1 . tcp . 1 }")
    assert fake.log[-1].startswith("check: ")


def test_deleting_chains_and_sets_once_unreferenced(fake: FakeNft) -> None:
    fake.run("add chain ip clew aff\nadd rule ip clew aff accept\n"
             "add element ip clew service-ips { 10.96.0.3 . tcp . 80 : goto aff }")  # fmt: skip
    refused(fake, "delete chain ip clew aff")
    fake.run("delete element ip clew service-ips { 10.96.0.3 . tcp . 80 }\ndelete chain ip clew aff")
    fake.run("flush chain ip clew services\ndelete set ip clew cluster-masq\ndelete chain ip clew to-dst")
    assert fake.chains() == ["nat-prerouting", "services"]
    assert "cluster-masq" not in fake.sets()


def test_flush_table_drops_rules_and_keeps_elements(fake: FakeNft) -> None:
    fake.run(SVC)
    fake.run("flush table ip clew")
    assert all(fake.rules(c) == [] for c in fake.chains())
    assert len(fake.elements("dst-tcp-2")) == 2


def test_a_full_resync_replaces_the_table(fake: FakeNft) -> None:
    fake.run(SVC + "\nadd chain ip clew stale")
    fake.run("add table ip clew\ndelete table ip clew\n" + BASE)
    assert "stale" not in fake.chains() and fake.elements("dst-tcp-2") == {}


def test_redeclaring_keeps_the_first_comment_and_takes_a_timeout_and_a_policy(fake: FakeNft) -> None:
    fake.run('add set ip clew cluster-masq { type ipv4_addr . inet_proto . inet_service ; comment "new" ; }')
    assert fake.sets()["cluster-masq"].comment == "masq"
    fake.run("add set ip clew aff { type ipv4_addr ; flags dynamic,timeout ; timeout 3h ; }")
    fake.run('add set ip clew aff { type ipv4_addr ; flags timeout,dynamic ; timeout 100s ; comment "x" ; }')
    assert (fake.sets()["aff"].timeout, fake.sets()["aff"].comment) == ("100s", "")
    refused(fake, "add set ip clew aff { type ipv4_addr ; flags timeout ; }")
    fake.run("add chain ip clew nat-prerouting { type nat hook prerouting priority -100 ; policy drop ; }")
    base = fake.base_chain("nat-prerouting")
    assert base is not None and base.policy == "drop"


def test_rule_positions_and_handles(fake: FakeNft) -> None:
    handles = fake.rule_handles("services")
    fake.run(
        f"insert rule ip clew services counter\nadd rule ip clew services position {handles[0]} ip daddr 10.0.0.1 drop"
    )
    assert fake.rules("services")[:3] == ["counter", "ip daddr . meta l4proto . th dport vmap @service-ips",
                                          "ip daddr 10.0.0.1 drop"]  # fmt: skip
    fake.run(f"delete rule ip clew services handle {handles[0]}")
    fake.run(f'replace rule ip clew services handle {handles[2]} jump to-dst comment "again"')
    assert fake.rules("services") == ["counter", "ip daddr 10.0.0.1 drop",
                                      "ip daddr . meta l4proto . th dport @cluster-masq mark set mark or 0x4000",
                                      'jump to-dst comment "again"']  # fmt: skip


def test_list_json_has_nfts_shape(fake: FakeNft) -> None:
    fake.run(SVC)
    tables = fake.list_json("tables")
    assert has_table_in(tables, "ip", "clew") and not has_table_in(tables, "ip", "other")
    (item,) = [i for i in fake.list_json("map ip clew dst-tcp-2")["nftables"] if "map" in i]
    m = item["map"]
    assert (m["type"], m["map"]) == (["ipv4_addr", "inet_service", "integer"], "ipv4_addr . inet_service")
    assert m["elem"][0] == [{"elem": {"val": {"concat": ["10.96.0.1", 80, 0]}, "comment": "ns/a:http"}},
                            {"concat": ["10.244.0.1", 8080]}]  # fmt: skip
    chain = fake.list_json("chain ip clew services")["nftables"]
    assert [next(iter(i)) for i in chain] == ["metainfo", "chain", "rule", "rule", "rule"]
    assert {next(iter(i)) for i in fake.list_json("chains")["nftables"][1:]} == {"chain"}
    assert [i["set"]["name"] for i in fake.list_json("sets")["nftables"][1:]] == ["cluster-masq", "allow"]
    assert len(fake.list_json("maps")["nftables"][2]["map"]["elem"]) == 2  # as nft -j: sets and maps with elements
    state = nft_json.state_of(fake.list_json("ruleset"), "ip", "clew")
    assert state is not None and state.elements["dst-tcp-2"]["10.96.0.1 . 80 . 1"].value == "10.244.0.2 . 8080"
    with pytest.raises(KernelError, match="No such file"):
        fake.list_json("set ip clew dst-tcp-2")  # a map, not a set
    with pytest.raises(KernelError, match="No such file"):
        fake.list_json("table ip other")


def test_test_hooks_and_close(fake: FakeNft) -> None:
    seen: list[int] = []
    fake.before_run = lambda f: seen.append(len(f.log))
    fake.fail_next = "Error: Could not process rule: Device or resource busy"
    with pytest.raises(KernelError, match="busy"):
        fake.run("add chain ip clew x")
    assert "x" not in fake.chains()
    fake.run("add chain ip clew x")
    assert "x" in fake.chains() and seen == [1, 1]
    fake.close()
    with pytest.raises(KernelError, match="closed"):
        fake.run("add chain ip clew y")


@pytest.mark.parametrize(
    "text",
    ["10.96.0.1 . tcp . 80", "10.96.0.1 . 80 . 0", "10.0.0.0/8", "goto service-X-ns/a/tcp/p80", "drop", "7",
     "1.2.3.4 . tcp . 80 . 10.0.0.1-10.0.0.9"],
)  # fmt: skip
def test_nft_json_text_round_trips(text: str) -> None:
    assert nft_json.text_of(nft_json.json_of(text)) == text


def test_nft_json_reads_what_the_kernel_writes() -> None:
    obj = {"name": "m", "map": "ipv4_addr . inet_service", "elem": [
        [{"elem": {"val": {"concat": ["10.96.0.1", 80, 0]}, "comment": "a/b:c"}}, {"concat": ["10.244.0.1", 8080]}],
        [{"concat": ["10.96.0.1", 80, 1]}, {"concat": ["10.244.0.2", 8080]}]]}  # fmt: skip
    assert nft_json.elements_of(obj) == {
        "10.96.0.1 . 80 . 0": nft_json.Element("10.244.0.1 . 8080", "a/b:c"),
        "10.96.0.1 . 80 . 1": nft_json.Element("10.244.0.2 . 8080", ""),
    }
    assert nft_json.text_of({"prefix": {"addr": "10.0.0.1", "len": 32}}) == "10.0.0.1"
    with pytest.raises(ValueError, match="unknown nft JSON"):
        nft_json.text_of({"mystery": 1})
