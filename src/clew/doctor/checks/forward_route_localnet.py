"""``forward.route_localnet``: with route_localnet on, a neighbour can reach services bound to
127.0.0.1 (CVE-2020-8558) unless INPUT drops non-local sources to 127.0.0.0/8 (kube-proxy's
KUBE-FIREWALL rule; in clew's nftables mode the same rule in ``ip clew`` chain filter-input).

Each input path is read: iptables INPUT (`probe`) and every native nftables base chain on the
input hook (`nft_probe`); in netfilter a drop in any of them is final, so one is enough."""

from __future__ import annotations

from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, fail, ok, skip
from clew.doctor.nft_probe import walk as nft_walk
from clew.doctor.probe import Packet, walk

ID = "forward.route_localnet"
RULE = "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"


def check(f: NodeFacts) -> Finding:
    if f.sysctls is None:
        return skip(ID, "sysctls not collected (no sysctl.txt)")
    on = sorted(
        k.split(".")[3].replace("/", ".")
        for k, v in f.sysctls.items()
        if k.startswith("net.ipv4.conf.") and k.endswith(".route_localnet") and v == "1"
    )
    if not on:
        return ok(ID, "route_localnet is off everywhere", route_localnet=[])
    if f.ruleset is None:
        return skip(ID, f"route_localnet on ({', '.join(on)}) but the rules were not collected", route_localnet=on)
    # a packet from a neighbour to 127.0.0.1 on the underlay: must be dropped in INPUT
    dev = next((d for d in on if d not in ("all", "default", "lo")), None)
    underlay = f.underlay()
    iif = dev or (underlay.name if underlay else "eth0")
    packet = Packet("192.0.2.1", "127.0.0.1", iif=iif, proto="tcp", dport=10248)
    verdict = walk(f.ruleset, "INPUT", packet)
    evidence: dict[str, object] = {
        "route_localnet": on,
        "probe": f"192.0.2.1 -> 127.0.0.1:10248 in {iif}",
        "verdict": verdict.verdict,
        "by": verdict.by,
    }
    if verdict.verdict == "DROP":
        return ok(ID, "route_localnet on, and INPUT drops outside sources to 127.0.0.0/8", **evidence)
    nft = {b.label: nft_walk(f.nft, b, packet) for b in f.nft.base_chains("input")} if f.nft else {}
    evidence["nft_input_chains"] = {label: {"verdict": v.verdict, "by": v.by} for label, v in nft.items()}
    dropped = next((v for v in nft.values() if v.verdict == "DROP"), None)
    if dropped is not None:
        evidence["verdict"], evidence["by"] = "DROP", dropped.by
        return ok(
            ID, f"route_localnet on, and nftables drops outside sources to 127.0.0.0/8 ({dropped.by})", **evidence
        )
    return fail(
        ID,
        f"route_localnet on ({', '.join(on)}) without the 127.0.0.0/8 protection rule: "
        "neighbours reach services bound to 127.0.0.1 (CVE-2020-8558)",
        f"iptables -N KUBE-FIREWALL; iptables {RULE.replace('-A', '-I', 1)}; iptables -I INPUT -j KUBE-FIREWALL "
        "(or sysctl -w net.ipv4.conf.all.route_localnet=0)",
        **evidence,
    )
