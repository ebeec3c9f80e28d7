"""What a node agent serves, scraped from inside its node's namespace (where its listeners are):
after a sync every kube-proxy series it promises has a value, the rule counts per table among
them; /healthz answers on kube-proxy's 0.0.0.0:10256 and /configz shows the configuration."""

from __future__ import annotations

import json
import re
import sys

import pytest
from labkit import app, running_lab

from clew.agent.metrics import ProxyMetrics
from clew.kernel import netns

pytestmark = pytest.mark.lab

FETCH = "import sys, urllib.request\nsys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def fetch(ns: str, url: str) -> str:
    return netns.run(ns, [sys.executable, "-c", FETCH, url]).stdout


def promised() -> set[str]:
    """The kube-proxy metric families the agent registers."""
    return {m.name for m in ProxyMetrics().registry.collect() if m.name.startswith("kubeproxy_")}


def test_every_promised_kube_proxy_series_has_a_value_after_a_sync() -> None:
    with running_lab(nodes=1) as lab:
        lab.apply(app("web", 2))
        ns = lab.state.plan.nodes[0].netns
        fetch(ns, "http://127.0.0.1:10256/healthz")  # the probes' counters count probes
        fetch(ns, "http://127.0.0.1:10256/livez")
        text = fetch(ns, "http://127.0.0.1:10249/metrics")
        samples: dict[str, list[tuple[str, float]]] = {}
        for line in text.splitlines():
            m = SAMPLE.match(line)
            if m:
                samples.setdefault(m[1], []).append((m[2] or "", float(m[3])))
        missing = sorted(
            name
            for name in promised()
            if not any(s == name or s.startswith(f"{name}_") for s in samples)  # histograms: _count, _bucket
        )
        assert not missing, f"promised but never set: {missing}"

        def per_table(gauge: str) -> dict[str, float]:
            return {t: v for labels, v in samples.get(gauge, []) for t in ("filter", "nat") if f'table="{t}"' in labels}

        owned = per_table("kubeproxy_sync_proxy_rules_iptables_total")
        written = per_table("kubeproxy_sync_proxy_rules_iptables_last")  # the last (partial) sync's lines
        assert owned.keys() == written.keys() == {"filter", "nat"} and min(owned.values()) > 0, (owned, written)
        assert sum(written.values()) > 0
        assert next(v for _, v in samples["kubeproxy_sync_proxy_rules_last_timestamp_seconds"]) > 0
        configz = json.loads(fetch(ns, "http://127.0.0.1:10249/configz"))["kubeproxy.config.k8s.io"]
        assert configz["HostnameOverride"] == lab.state.plan.nodes[0].name
        assert configz["HealthzBindAddress"] == "0.0.0.0:10256"
