#!/usr/bin/env bash
# Rebuild the fixtures in tests/golden/foreign/ from the inputs in this folder: load each one into
# a throwaway network namespace with iptables-restore and keep what iptables-save prints back.
# Needs root, iptables 1.8.9 (nf_tables), ipset. Touches nothing outside its own namespace.
#   usage: sudo bash tests/golden/foreign/source/capture.sh [path/to/python]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(dirname "$here")
root=$(cd "$out/../../.." && pwd)
python=${1:-$root/.venv/bin/python}
ns=""

cleanup() { if [[ -n $ns ]]; then ip netns del "$ns" 2>/dev/null || true; fi; }
trap cleanup EXIT

fresh() {  # a new empty namespace in $ns
    cleanup
    ns=clewf-$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
    ip netns add "$ns"
}
in_ns() { ip netns exec "$ns" "$@"; }
save() { in_ns iptables-save >"$out/$1"; echo "wrote $1 ($(wc -l <"$out/$1") lines)"; }

# 1. node-a: Docker first (boot order), then kubelet, kube-proxy (inserts its jumps on top),
#    flanneld --ip-masq with --iptables-forward-rules=false (no FLANNEL-FWD).
fresh
in_ns iptables-restore <"$here/docker28.rules"
in_ns iptables-restore --noflush <"$here/kubelet.rules"
"$python" -m clew render --standalone --objects "$here/objects.yaml" --node-name node-a \
    --node-ip 192.168.1.11 --cluster-cidr 10.244.0.0/16 | in_ns iptables-restore --noflush
in_ns iptables-restore --noflush <"$here/flannel_masq.rules"
save docker_kube_proxy.iptables
# 2. the same node once flanneld runs with its default forward rules.
in_ns iptables-restore --noflush <"$here/flannel_fwd.rules"
save flannel_fwd_accept.iptables

# 3. a ufw host.
fresh
in_ns iptables-restore <"$here/ufw.rules"
save ufw_like.iptables

# 4. matches and targets the tracer does not model (the ipset must exist to load -m set).
fresh
in_ns ipset create blocklist hash:net
in_ns ipset add blocklist 198.51.100.0/24
in_ns iptables-restore <"$here/unknown_matches.rules"
save unknown_matches.iptables

# 5. Docker 28 with a published port (docker run -p 8080:80), FORWARD policy DROP.
fresh
in_ns iptables-restore <"$here/docker_published.rules"
save docker_published.iptables

# 6. a kind node: kind's DNS and masquerade rules, then kube-proxy (iptables mode) on top.
fresh
in_ns iptables-restore <"$here/kind_node.rules"
in_ns iptables-restore --noflush <"$here/kubelet.rules"
"$python" -m clew render --standalone --objects "$here/objects.yaml" --node-name node-a \
    --node-ip 172.18.0.2 --cluster-cidr 10.244.0.0/16 | in_ns iptables-restore --noflush
save kind_node.iptables

# 7. kube-proxy in IPVS mode (the ipsets first: -m set needs them), 8. weave-npc, same.
for name in ipvs_node weave_npc; do
    fresh
    in_ns ipset restore <"$here/$name.ipset"
    in_ns iptables-restore <"$here/$name.rules"
    save "$name.iptables"
done

# 9. a strict reverse-path filter in raw (NixOS's firewall).
fresh
in_ns iptables-restore <"$here/rpfilter_raw.rules"
save rpfilter_raw.iptables

# 10. a damaged dump: made from (1), then checked to be refused by iptables-restore.
"$python" "$here/truncate.py" "$out/docker_kube_proxy.iptables" >"$out/truncated.iptables"
fresh
if in_ns iptables-restore --test <"$out/truncated.iptables" 2>/dev/null; then
    echo "truncated.iptables was accepted by iptables-restore: it should not be" >&2
    exit 1
fi
echo "wrote truncated.iptables (refused by iptables-restore, as intended)"

# 11. a firewalld host (nftables backend): nft -f, then nft's JSON listing (what `clew trace --ruleset` reads).
fresh
in_ns nft -f "$here/firewalld.nft"
in_ns nft -j list ruleset >"$out/firewalld.nft.json"
echo "wrote firewalld.nft.json ($(wc -c <"$out/firewalld.nft.json") bytes)"
