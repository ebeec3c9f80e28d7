"""The iptables-save / iptables-restore parser and the canonical rule form (pure)."""

from __future__ import annotations

import importlib
import random
import sys
from pathlib import Path

import pytest

from clew.netfilter.iptables_save import parse, tokenize
from clew.netfilter.rules import Match, Option, Rule, Ruleset, Target, canonical

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
if str(GOLDEN) not in sys.path:
    sys.path.insert(0, str(GOLDEN))
golden = importlib.import_module("scenario")  # tests/golden/scenario.py, as test_golden imports it


def op(name: str, *values: str, neg: bool = False) -> Option:
    return Option(name, values, neg)


def one_rule(line: str, table: str = "filter") -> Rule:
    rs = parse(f"*{table}\n:X - [0:0]\n:Y - [0:0]\n{line}\nCOMMIT\n", origin="t")
    assert rs.warnings == []
    chain = rs.chain(table, "X")
    assert chain is not None and len(chain.rules) == 1
    return chain.rules[0]


def rules(rs: Ruleset, table: str, chain: str) -> list[str]:
    c = rs.chain(table, chain)
    assert c is not None, f"no chain {table}/{chain}"
    return [r.text for r in c.rules]


# ---------------------------------------------------------------------------- rules

TCP80 = Match("tcp", (op("--dport", "80"),))
RULES: list[tuple[str, tuple[Option, ...], tuple[Match, ...], Target | None]] = [
    ("-A X -s 10.0.0.1 -j ACCEPT", (op("-s", "10.0.0.1"),), (), Target("ACCEPT")),
    (
        "-A X ! -s 10.0.0.0/8 -d 1.2.3.4/32 -j DROP",
        (op("-s", "10.0.0.0/8", neg=True), op("-d", "1.2.3.4/32")),
        (),
        Target("DROP"),
    ),
    ("-A X -s ! 10.0.0.1 -j DROP", (op("-s", "10.0.0.1", neg=True),), (), Target("DROP")),
    ("-A X --source 1.1.1.1 --protocol tcp -j DROP", (op("-s", "1.1.1.1"), op("-p", "tcp")), (), Target("DROP")),
    ("-A X -i cni0+ ! -o eth0 -j ACCEPT", (op("-i", "cni0+"), op("-o", "eth0", neg=True)), (), Target("ACCEPT")),
    ("-A X -f -j DROP", (op("-f"),), (), Target("DROP")),
    ("-A X ! -f -j DROP", (op("-f", neg=True),), (), Target("DROP")),
    # implicit protocol matches, as iptables loads them
    ("-A X -p tcp --dport 80 -j ACCEPT", (op("-p", "tcp"),), (TCP80,), Target("ACCEPT")),
    (
        "-A X -m comment --comment x -p tcp --dport 80 -j ACCEPT",
        (op("-p", "tcp"),),
        (Match("comment", (op("--comment", "x"),)), TCP80),
        Target("ACCEPT"),
    ),
    ("-A X -p 17 --sport 1:2 -j ACCEPT", (op("-p", "17"),), (Match("udp", (op("--sport", "1:2"),)),), Target("ACCEPT")),
    ("-A X -p tcp --syn -j DROP", (op("-p", "tcp"),), (Match("tcp", (op("--syn"),)),), Target("DROP")),
    (
        "-A X -p icmp --icmp-type echo-request -j ACCEPT",
        (op("-p", "icmp"),),
        (Match("icmp", (op("--icmp-type", "echo-request"),)),),
        Target("ACCEPT"),
    ),
    # explicit matches: option order, negation (both spellings), several values, flags
    (
        "-A X -m tcp -p tcp -d 10.96.0.1 --dport 80 -j Y",
        (op("-p", "tcp"), op("-d", "10.96.0.1")),
        (TCP80,),
        Target("Y"),
    ),
    (
        "-A X -p udp -m udp ! --dport 53 -j ACCEPT",
        (op("-p", "udp"),),
        (Match("udp", (op("--dport", "53", neg=True),)),),
        Target("ACCEPT"),
    ),
    (
        "-A X -p tcp -m tcp --dport ! 53 -j ACCEPT",
        (op("-p", "tcp"),),
        (Match("tcp", (op("--dport", "53", neg=True),)),),
        Target("ACCEPT"),
    ),
    (
        "-A X -p tcp -m tcp --tcp-flags SYN,ACK SYN -j DROP",
        (op("-p", "tcp"),),
        (Match("tcp", (op("--tcp-flags", "SYN,ACK", "SYN"),)),),
        Target("DROP"),
    ),
    (
        "-A X -m recent --name KUBE-SEP-A --rcheck --seconds 10800 --reap --rsource -j KUBE-SEP-A",
        (),
        (
            Match(
                "recent",
                (op("--name", "KUBE-SEP-A"), op("--rcheck"), op("--seconds", "10800"), op("--reap"), op("--rsource")),
            ),
        ),
        Target("KUBE-SEP-A"),
    ),
    (
        "-A X -m set --match-set KUBE-LB src,dst -j ACCEPT",
        (),
        (Match("set", (op("--match-set", "KUBE-LB", "src,dst"),)),),
        Target("ACCEPT"),
    ),
    (
        "-A X -m mark ! --mark 0x4000/0x4000 -j RETURN",
        (),
        (Match("mark", (op("--mark", "0x4000/0x4000", neg=True),)),),
        Target("RETURN"),
    ),
    (
        "-A X -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -m tcp -p tcp -j DROP",
        (op("-p", "tcp"),),
        (Match("conntrack", (op("--ctstate", "RELATED,ESTABLISHED,DNAT", neg=True),)), Match("tcp")),
        Target("DROP"),
    ),
    # quoting: escaped quotes, " -" inside quotes, empty, single quotes are plain characters
    (
        '-A X -m comment --comment "a \\"q\\" b" -j ACCEPT',
        (),
        (Match("comment", (op("--comment", 'a "q" b'),)),),
        Target("ACCEPT"),
    ),
    (
        '-A X -m comment --comment "ns/svc:p80 -> 10.0.0.1:80" -j Y',
        (),
        (Match("comment", (op("--comment", "ns/svc:p80 -> 10.0.0.1:80"),)),),
        Target("Y"),
    ),
    ('-A X -m comment --comment "" -j ACCEPT', (), (Match("comment", (op("--comment", ""),)),), Target("ACCEPT")),
    (
        '-A X -m comment --comment "it\\\'s" -j ACCEPT',
        (),
        (Match("comment", (op("--comment", "it's"),)),),
        Target("ACCEPT"),
    ),
    ('-A X -m comment --comment a"b c" -j Y', (), (Match("comment", (op("--comment", "ab c"),)),), Target("Y")),
    ('-A X -m comment --comment a"b" -j Y', (), (Match("comment", (op("--comment", "ab"),)),), Target("Y")),
    ('-A X -j LOG --log-prefix "drop -x "', (), (), Target("LOG", (op("--log-prefix", "drop -x "),))),
    # targets: goto, options, flags, none
    ("-A X -g Y", (), (), Target("Y", goto=True)),
    ("-A X -j MARK --set-xmark 0x4000/0x4000", (), (), Target("MARK", (op("--set-xmark", "0x4000/0x4000"),))),
    ("-A X -j MASQUERADE --random-fully", (), (), Target("MASQUERADE", (op("--random-fully"),))),
    (
        "-A X -j DNAT --to-destination 10.244.0.5:8080",
        (),
        (),
        Target("DNAT", (op("--to-destination", "10.244.0.5:8080"),)),
    ),
    ("-A X -m comment --comment x", (), (Match("comment", (op("--comment", "x"),)),), None),
    ("-A X -j Y -m comment --comment z", (), (Match("comment", (op("--comment", "z"),)),), Target("Y")),
    # counters in every place iptables-restore takes them; odd spacing
    ("[12:345] -A X -j ACCEPT", (), (), Target("ACCEPT")),
    ("-A X -c 1 2 -j ACCEPT", (), (), Target("ACCEPT")),
    ("-c 1 2 -A X -j ACCEPT", (), (), Target("ACCEPT")),
    ("-A X  -s\t10.0.0.1   -j  ACCEPT ", (op("-s", "10.0.0.1"),), (), Target("ACCEPT")),
]


@pytest.mark.parametrize(("line", "core", "matches", "target"), RULES, ids=[r[0] for r in RULES])
def test_rule(line: str, core: tuple[Option, ...], matches: tuple[Match, ...], target: Target | None) -> None:
    rule = one_rule(line)
    assert (rule.table, rule.chain, rule.line) == ("filter", "X", 4)
    assert (rule.core, rule.matches, rule.target) == (core, matches, target)
    slow = one_rule(" " + line)  # a leading space takes the word-by-word parser
    assert (slow.core, slow.matches, slow.target) == (core, matches, target)


def test_rule_keeps_its_text_and_helpers_work() -> None:
    rule = one_rule('-A X -m comment --comment "ns/a:p -> 1.2.3.4:80" -m tcp -p tcp --dport 80 -j Y')
    assert rule.text == '-A X -m comment --comment "ns/a:p -> 1.2.3.4:80" -m tcp -p tcp --dport 80 -j Y'
    assert rule.comment == "ns/a:p -> 1.2.3.4:80"
    assert rule.core_option("-p") == op("-p", "tcp")
    assert rule.match("tcp") == TCP80


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("a b\tc", ["a", "b", "c"]),
        ('x "a b" y', ["x", "a b", "y"]),
        ('x "a \\"b\\" \\\\" y', ["x", 'a "b" \\', "y"]),
        ("x 'a b'", ["x", "'a", "b'"]),
        ('x a"b c"', ["x", "ab c"]),
        ('x "a b"c', ["x", "a b", "c"]),
        ('x ""', ["x", ""]),
    ],
)
def test_tokenize_like_iptables_restore(line: str, words: list[str]) -> None:
    assert tokenize(line) == words


# ---------------------------------------------------------------------------- tables, chains, commands

SAVE = """# Generated by iptables-save v1.8.9 (nf_tables) on Fri Nov 27 04:49:24 2026
*nat
:PREROUTING ACCEPT [10:600]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [3:180]
:POSTROUTING ACCEPT [3:180]
:KUBE-SERVICES - [0:0]
[10:600] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[0:0] -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-X
COMMIT
# Completed on Fri Nov 27 04:49:24 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""


def test_iptables_save_output_tables_policies_and_counters() -> None:
    rs = parse(SAVE, origin="save")
    assert rs.warnings == []
    assert list(rs.tables) == ["nat", "filter"]
    assert [(c.name, c.policy) for c in rs.tables["nat"].chains.values()] == [
        ("PREROUTING", "ACCEPT"),
        ("INPUT", "ACCEPT"),
        ("OUTPUT", "ACCEPT"),
        ("POSTROUTING", "ACCEPT"),
        ("KUBE-SERVICES", None),
    ]
    forward = rs.chain("filter", "FORWARD")
    assert forward is not None and forward.policy == "DROP"
    (rule,) = rs.tables["nat"].chains["KUBE-SERVICES"].rules
    assert (rule.line, rule.target) == (9, Target("KUBE-SVC-X"))
    assert rule.text == "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-X"


def test_crlf_line_ends() -> None:
    rs = parse(SAVE.replace("\n", "\r\n"), origin="save")
    assert rs.warnings == []
    assert rules(rs, "nat", "KUBE-SERVICES") == rules(parse(SAVE), "nat", "KUBE-SERVICES")


def test_insert_goes_before_and_at_the_position() -> None:
    rs = parse(
        "*filter\n:X - [0:0]\n-A X -j A\n-A X -j B\n-I X -j C\n-I X 3 -j D\n-I X 5 -j E\n-I INPUT 1 -j X\nCOMMIT\n"
    )
    assert rs.warnings == []
    assert [r.target.name for r in rs.tables["filter"].chains["X"].rules if r.target] == ["C", "A", "D", "B", "E"]
    assert rules(rs, "filter", "INPUT") == ["-I INPUT 1 -j X"]  # built-in chains need no declaration


def test_chain_commands() -> None:
    rs = parse(
        "*filter\n:X - [0:0]\n:STALE - [0:0]\n-N NEW\n-A NEW -j ACCEPT\n-A X -j A\n-A X -j B\n-A X -j C\n"
        "-D X 1\n-D X -j C\n-R X 1 -j R\n-X STALE\n-P FORWARD DROP\n-F NEW\n-Z\nCOMMIT\n"
    )
    assert rs.warnings == []
    table = rs.tables["filter"]
    assert set(table.chains) == {"X", "NEW", "FORWARD"}
    assert rules(rs, "filter", "X") == ["-R X 1 -j R"]
    assert rules(rs, "filter", "NEW") == []
    assert table.chains["FORWARD"].policy == "DROP"


def test_redeclared_chain_is_flushed_and_a_repeated_table_continues() -> None:
    rs = parse("*nat\n:A - [0:0]\n:B - [0:0]\n-A A -j X\n-A B -j Y\nCOMMIT\n*nat\n:A - [0:0]\n-A A -j Z\nCOMMIT\n")
    assert rs.warnings == []
    assert rules(rs, "nat", "A") == ["-A A -j Z"]
    assert rules(rs, "nat", "B") == ["-A B -j Y"]


def test_declared_then_deleted_stale_chain_disappears() -> None:
    rs = parse("*nat\n:KUBE-SEP-OLD - [0:0]\n-X KUBE-SEP-OLD\nCOMMIT\n")
    assert rs.warnings == [] and "KUBE-SEP-OLD" not in rs.tables["nat"].chains


# ---------------------------------------------------------------------------- bad input


def in_x(line: str) -> str:
    """A filter table whose chain X gets ``line`` and then a good rule."""
    return f"*filter\n:X - [0:0]\n{line}\n-A X -j ACCEPT\nCOMMIT\n"


BAD: list[tuple[str, str, str]] = [
    ("garbage", in_x("hello world"), "t:3: unknown command 'hello'"),
    ("stray word", in_x("-A X foo -j DROP"), "t:3: unexpected word 'foo'"),
    ("missing value", in_x("-A X -j"), "t:3: -j needs a value"),
    ("open quote", in_x('-A X -m comment --comment "a -j'), "t:3: unterminated quote"),
    ("port without -p", in_x("-A X --dport 80 -j DROP"), "t:3: --dport without -p"),
    ("dangling !", in_x("-A X -j DROP !"), "t:3: '!' at the end"),
    ("bad counters", in_x("[1:x] -A X -j DROP"), "t:3: bad [packets:bytes]"),
    ("insert too far", in_x("-I X 3 -j DROP"), "t:3: -I X 3"),
    ("delete missing", in_x("-D X -j DROP"), "t:3: -D X: no such rule"),
    ("undeclared chain", "*filter\n-A X -j ACCEPT\nCOMMIT\n", "t:2: chain X was never declared"),
    ("rule before any table", "-A X -j DROP\n" + in_x(""), "t:1: '-A X -j DROP' outside a table"),
    ("unknown table", "*bogus\n:X - [0:0]\n-A X -j DROP\nCOMMIT\n" + in_x(""), "t:1: unknown table 'bogus'"),
    ("no COMMIT before next table", "*nat\n:X - [0:0]\n" + in_x(""), "t:3: table nat (opened at line 1) has no COMMIT"),
    ("truncated dump", "*filter\n:X - [0:0]\n-A X -j ACCEPT\n", "t:3: table filter (opened at line 1) has no COMMIT"),
    ("truncated mid-line", "*filter\n:X - [0:0]\n-A X -j ACCEPT\n-A X -m comment --comm", "t:4: last line"),
]


@pytest.mark.parametrize(("text", "warning"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_warns_naming_the_line_and_goes_on(text: str, warning: str) -> None:
    rs = parse(text, origin="t")
    assert any(w.startswith(warning) for w in rs.warnings), rs.warnings
    assert rules(rs, "filter", "X")[-1] == "-A X -j ACCEPT"  # the rest is parsed


def test_bad_input_never_raises() -> None:
    junk = ["", "\n\n", "*", "COMMIT", ":", "-A", "*filter\n:", "*filter\n-A X -m", "*filter\n-A X ! ! -j Y"]
    junk += ["*filter\n-N\n-X\n-X NOPE\n-F NOPE\n-P\n-P X DROP\n-R X\n-D\n-I\n[0:0]\n-c 1 2\n\x00\n-A X -j Y -j Z"]
    for text in junk:
        rs = parse(text)
        assert isinstance(rs.warnings, list)


def test_warnings_carry_the_origin() -> None:
    rs = parse("*filter\nnonsense\nCOMMIT\n", origin="/tmp/node-a.rules")
    assert rs.warnings[0].startswith("/tmp/node-a.rules:2: ")


# ---------------------------------------------------------------------------- clew's own renders


def golden_texts() -> list[tuple[str, str]]:
    texts = [(f"{s.name} render", s.render().text()) for s in golden.scenarios()]
    texts += [(f"{s.name} standalone", s.render().text(standalone=True)) for s in golden.scenarios()]
    texts += [(f"{s.name} expected", s.expected.read_text()) for s in golden.scenarios() if s.expected]
    texts += [(p.name, p.read_text()) for p in sorted((GOLDEN / "rendered").glob("*.iptables"))]
    return texts


@pytest.fixture(scope="module")
def golden_payloads() -> list[tuple[str, str]]:
    return golden_texts()


def rule_counts(text: str) -> dict[tuple[str, str], int]:
    """(table, chain) → how many ``-A``/``-I`` lines a payload has for it."""
    counts: dict[tuple[str, str], int] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(("-A ", "-I ")):
            key = (table, line.split()[1])
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_golden_renders_parse_without_warnings(golden_payloads: list[tuple[str, str]]) -> None:
    assert len(golden_payloads) >= 30
    for name, text in golden_payloads:
        rs = parse(text, origin=name)
        assert rs.warnings == [], name
        for (table, chain), count in rule_counts(text).items():
            got = rs.chain(table, chain)
            assert got is not None and len(got.rules) == count, (name, table, chain)
        declared = {(t, line[1:].split()[0]) for t, line in _declarations(text)}
        assert declared - {(t.name, c) for t in rs.tables.values() for c in t.chains} <= _deleted(text)


def _declarations(text: str) -> list[tuple[str, str]]:
    out, table = [], ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            out.append((table, line))
    return out


def _deleted(text: str) -> set[tuple[str, str]]:
    out, table = set(), ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-X "):
            out.add((table, line.split()[1]))
    return out


def test_fast_and_word_by_word_parsers_agree_on_golden_renders(golden_payloads: list[tuple[str, str]]) -> None:
    for name, text in golden_payloads:
        indented = "\n".join(" " + line if line.startswith("-A ") else line for line in text.splitlines())
        fast, slow = parse(text), parse(indented)
        for table, t in fast.tables.items():
            for chain, c in t.chains.items():
                other = slow.chain(table, chain)
                assert other is not None and c.rules == other.rules, (name, table, chain)


def test_fast_and_word_by_word_parsers_agree_on_mangled_rules(golden_payloads: list[tuple[str, str]]) -> None:
    """Golden rules with words dropped, added or swapped (seeded): the fast path either takes a
    line and agrees with the word-by-word parser, or leaves it (and its warning) to it."""
    lines = sorted({line for _, text in golden_payloads for line in text.splitlines() if line.startswith("-A ")})
    words = sorted({w for line in lines for w in line.split()[2:]})
    words += [
        "!",
        '"',
        '""',
        '"a -b"',
        'a"b"',
        '-s a"b"',
        '--comment a"b -c"',
        '--x "y"z',
        "-p",
        "tcp",
        "--dport",
        "-g",
        "-m",
        "-j",
        "-c",
        "--x",
        "\\",
        "\t",
    ]
    rng = random.Random(20261127)
    for _ in range(3000):
        w = rng.choice(lines).split(" ")
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(2, len(w) + 1)
            if rng.random() < 0.4 and at < len(w):
                del w[at]
            else:
                w.insert(at, rng.choice(words))
        line = " ".join(w)
        fast = parse(f"*filter\n{line}\nCOMMIT\n", origin="t")
        slow = parse(f"*filter\n {line}\nCOMMIT\n", origin="t")
        assert fast.warnings == slow.warnings, line
        assert [c.rules for c in fast.tables["filter"].chains.values()] == [
            c.rules for c in slow.tables["filter"].chains.values()
        ], line


# ---------------------------------------------------------------------------- canonical

# (as clew renders it, as iptables-save 1.8.9 prints it back): verified in a namespace.
SAME: list[tuple[str, str]] = [
    (
        '-A X -m comment --comment "a b" -m tcp -p tcp -d 10.0.0.1 --dport 80 ! -s 10.244.0.0/16 -j ACCEPT',
        '-A X ! -s 10.244.0.0/16 -d 10.0.0.1/32 -p tcp -m comment --comment "a b" -m tcp --dport 80 -j ACCEPT',
    ),
    ("-A X -m comment --comment x -j ACCEPT", '-A X -m comment --comment "x" -j ACCEPT'),
    ("-A X -p tcp --dport 81 -j ACCEPT", "-A X -p tcp -m tcp --dport 81 -j ACCEPT"),
    ("-A X -p tcp --destination-port 81 -j ACCEPT", "-A X -p tcp -m tcp --dport 81 -j ACCEPT"),
    ("-A X -m tcp -p tcp -j ACCEPT", "-A X -p tcp -m tcp -j ACCEPT"),
    ("-A X -p 6 -j ACCEPT", "-A X -p tcp -j ACCEPT"),
    ("-A X -p all -j ACCEPT", "-A X -j ACCEPT"),
    ("-A X -p tcp --syn -j ACCEPT", "-A X -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT"),
    ("-A X -p tcp --tcp-flags SYN,FIN ACK -j ACCEPT", "-A X -p tcp -m tcp --tcp-flags FIN,SYN ACK -j ACCEPT"),
    ("-A X -s 10.1.2.3/24 -j ACCEPT", "-A X -s 10.1.2.0/24 -j ACCEPT"),
    ("-A X -d 10.0.0.0/255.255.255.0 -j ACCEPT", "-A X -d 10.0.0.0/24 -j ACCEPT"),
    ("-A X -j REJECT", "-A X -j REJECT --reject-with icmp-port-unreachable"),
    ("-A X -p tcp -j REJECT --reject-with tcp-rst", "-A X -p tcp -j REJECT --reject-with tcp-reset"),
    ("-A X -j REJECT --reject-with admin-prohib", "-A X -j REJECT --reject-with icmp-admin-prohibited"),
    ("-A X -m conntrack --ctstate ESTABLISHED,RELATED -j A", "-A X -m conntrack --ctstate RELATED,ESTABLISHED -j A"),
    ("-A X -m mark --mark 16 -j ACCEPT", "-A X -m mark --mark 0x10 -j ACCEPT"),
    ("-A X -m mark ! --mark 0x04000/0x4000 -j ACCEPT", "-A X -m mark ! --mark 0x4000/0x4000 -j ACCEPT"),
    ("-A X -p icmp --icmp-type echo-request -j ACCEPT", "-A X -p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    ("-A X -p icmp --icmp-type destination-unreachable -j ACCEPT", "-A X -p icmp -m icmp --icmp-type 3 -j ACCEPT"),
    (
        "-A X -m recent --name KUBE-SEP-X --set -m tcp -p tcp -j DNAT --to-destination 10.244.0.1:80",
        "-A X -p tcp -m recent --set --name KUBE-SEP-X --mask 255.255.255.255 --rsource -m tcp "
        "-j DNAT --to-destination 10.244.0.1:80",
    ),
    (
        "-A X -m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap -j KUBE-SEP-X",
        "-A X -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource "
        "-j KUBE-SEP-X",
    ),
    (
        "-A X -m statistic --mode random --probability 0.3333333333 -j Y",
        "-A X -m statistic --mode random --probability 0.33333333349 -j Y",
    ),
    (
        "-A X -m statistic --mode random --probability 0.1428571429 -j Y",
        "-A X -m statistic --mode random --probability 0.14285714272 -j Y",
    ),
    ("-A X -j MARK --or-mark 0x4000", "-A X -j MARK --set-xmark 0x4000/0x4000"),
    ("-A X -j MARK --xor-mark 0x4000", "-A X -j MARK --set-xmark 0x4000/0x0"),
    ("-A X -j MARK --and-mark 0x4000", "-A X -j MARK --set-xmark 0x0/0xffffbfff"),
    ("-A X -j MARK --set-mark 0x4000", "-A X -j MARK --set-xmark 0x4000/0xffffffff"),
    ("-A X -j MARK --set-mark 0x1/0x4000", "-A X -j MARK --set-xmark 0x1/0x4001"),
    ("-A X -j MARK --set-xmark 0x1", "-A X -j MARK --set-xmark 0x1/0xffffffff"),
    ("-A X -m nfacct --nfacct-name foo -j ACCEPT", "-A X -m nfacct --nfacct-name  foo -j ACCEPT"),
]  # fmt: skip

DIFFERENT: list[tuple[str, str]] = [
    ("-A X -s 10.0.0.1 -j ACCEPT", "-A X -s 10.0.0.2/32 -j ACCEPT"),
    ("-A X -s 10.0.0.1 -j ACCEPT", "-A X ! -s 10.0.0.1/32 -j ACCEPT"),
    ("-A X -m tcp -p tcp -j ACCEPT", "-A X -p tcp -j ACCEPT"),
    ("-A X -m comment --comment a -m mark --mark 1 -j A", "-A X -m mark --mark 1 -m comment --comment a -j A"),
    ("-A X -m statistic --mode random --probability 0.333333", "-A X -m statistic --mode random --probability 0.3334"),
    ("-A X -j MARK --or-mark 0x4000", "-A X -j MARK --xor-mark 0x4000"),
    ("-A X -j Y", "-A X -g Y"),
    ("-A X -m recent --name A --rcheck -j Y", "-A X -m recent --name A --rcheck --rdest -j Y"),
]  # fmt: skip


@pytest.mark.parametrize(("rendered", "saved"), SAME, ids=[s[0] for s in SAME])
def test_canonical_equates_render_and_iptables_save(rendered: str, saved: str) -> None:
    assert canonical(one_rule(rendered)) == canonical(one_rule(saved))


@pytest.mark.parametrize(("a", "b"), DIFFERENT, ids=[d[1] for d in DIFFERENT])
def test_canonical_keeps_real_differences(a: str, b: str) -> None:
    assert canonical(one_rule(a)) != canonical(one_rule(b))


def test_canonical_is_hashable_and_ignores_line_and_text() -> None:
    a = parse("*filter\n:X - [0:0]\n-A X -s 1.2.3.4 -j DROP\nCOMMIT\n").tables["filter"].chains["X"].rules[0]
    b = parse("*filter\n:X - [0:0]\n\n\n-A X  -s 1.2.3.4/32 -j DROP\nCOMMIT\n").tables["filter"].chains["X"].rules[0]
    assert a.line != b.line and canonical(a) == canonical(b)
    assert len({canonical(a), canonical(b)}) == 1
