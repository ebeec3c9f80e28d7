"""``podnet.offload``: the "63-second" delays on vxlan (kubernetes #88986, flannel #1282).

A packet marked for masquerade (0x4000) keeps the mark when the vxlan device encapsulates it; the
outer UDP packet is then masqueraded too, and with tx checksum offload on the vxlan device its
checksum comes out wrong: TCP retries at 1+2+4+8+16+32 s. kube-proxy ≥ 1.19 clears the mark in
KUBE-POSTROUTING before MASQUERADE (``MARK --xor-mark 0x4000``); flannel's workaround turns tx
offload off (``ethtool -K flannel.1 tx off``). Either one is enough; neither is a warning (the
kernels that fixed it are not told apart here — the kernel release is evidence only)."""

from __future__ import annotations

from clew.doctor import proxy_state
from clew.doctor.facts import NodeFacts
from clew.doctor.finding import Finding, ok, skip, warn

ID = "podnet.offload"
MASQ_MARK = 0x4000


def clears_mark(f: NodeFacts) -> bool:
    """Whether the proxy clears the masquerade mark before it masquerades: nat KUBE-POSTROUTING
    in iptables mode, the masquerading chain of ``ip clew`` / ``ip kube-proxy`` in nftables mode."""
    if any(
        proxy_state.nft_clears_mark_before_masquerade(f, t, MASQ_MARK)
        for t in (proxy_state.CLEW, proxy_state.KUBE_PROXY)
    ):
        return True
    chain = f.ruleset.chain("nat", "KUBE-POSTROUTING") if f.ruleset else None
    for rule in chain.rules if chain else []:
        t = rule.target
        if t is None:
            continue
        if t.name == "MASQUERADE":
            return False
        if t.name == "MARK":
            # new mark = (mark & ~mask) ^ value (``--xor-mark X`` is saved as ``--set-xmark X/0x0``)
            xor = t.get("--xor-mark")
            setx = t.get("--set-xmark")
            text = f"{xor.value}/0x0" if xor is not None else setx.value if setx is not None else ""
            if not text:
                continue
            value, _, mask = text.partition("/")
            after = (MASQ_MARK & ~int(mask or "0xffffffff", 0)) ^ int(value, 0)
            if not after & MASQ_MARK:
                return True
    return False


def check(f: NodeFacts) -> Finding:
    vxlans = f.vxlans()
    if not vxlans:
        return skip(ID, "no vxlan device on this node")
    if f.offloads is None:
        return skip(ID, "offload flags not read (ethtool missing)")
    dev = vxlans[0].name
    tx = f.offloads.get(dev, {}).get("tx-checksumming")
    if tx is None:
        return skip(ID, f"ethtool -k {dev} did not report tx-checksumming")
    cleared = clears_mark(f)
    evidence = {
        "device": dev,
        "tx_checksumming": tx,
        "mark_cleared_before_masquerade": cleared,
        "kernel": f.host.get("kernel"),
    }
    if tx == "on" and not cleared:
        return warn(
            ID,
            f"tx checksum offload on {dev} and masquerade-marked packets keep the mark when encapsulated: "
            "the 63-second delays",
            f"ethtool -K {dev} tx off (or a proxy that clears the mark: "
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000 before MASQUERADE; "
            "nftables: meta mark set meta mark ^ 0x4000)",
            **evidence,
        )
    why = "tx offload off" if tx != "on" else "the proxy clears the masquerade mark first"
    return ok(ID, f"not exposed to the vxlan checksum bug ({why})", **evidence)
