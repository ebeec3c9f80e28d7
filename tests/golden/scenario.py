"""Golden scenarios: Kubernetes objects + node settings → clew's render, and how to compare renders.

A scenario folder holds ``objects.yaml`` (API objects), ``scenario.yaml`` (node name and IPs, a
KubeProxyConfiguration body, features of the proxy that wrote the expectation) and, for the
scenarios taken from kube-proxy's unit tests, ``expected.iptables`` (kube-proxy's expected
restore input, verbatim).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from clew.model.from_kube import build_snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig, from_kube_proxy_config
from clew.proxy.iptables.render import Rendered, render
from clew.proxy.policy import decide
from clew.sources.manifests import load_objects

HERE = Path(__file__).parent
UPSTREAM = HERE / "upstream"
OWN = HERE / "scenarios"
RENDERED = HERE / "rendered"


@dataclass(frozen=True)
class Scenario:
    name: str
    folder: Path
    doc: dict[str, Any]

    @property
    def expected(self) -> Path | None:
        path = self.folder / "expected.iptables"
        return path if path.exists() else None

    def config(self) -> ProxyConfig:
        features = self.doc.get("upstream_features") or {}
        config = from_kube_proxy_config(
            self.doc.get("config") or {},
            node_name=self.doc.get("node_name", "test-node"),
            node_ips=tuple(self.doc.get("node_ips") or ()),
            nfacct=bool(features.get("nfacct", False)),
            random_fully=bool(features.get("random_fully", True)),
        )
        if self.doc.get("node_pod_cidr"):
            config = replace(config, node_pod_cidrs=(self.doc["node_pod_cidr"],))
        elif config.detect_local is DetectLocal.NODE_CIDR:
            raise ValueError(f"{self.name}: NodeCIDR detection needs node_pod_cidr")
        return config

    def comparable_render(self) -> str:
        """The render as the proxy that wrote ``expected.iptables`` would have: kube-proxy
        before v1.28 left the KUBE-FIREWALL chain to kubelet."""
        text = self.render().text()
        if (self.doc.get("upstream_features") or {}).get("kube_firewall_chain", True):
            return text
        return "".join(line for line in text.splitlines(True) if "KUBE-FIREWALL " not in line)

    def render(self) -> Rendered:
        snapshot = build_snapshot(load_objects(self.folder / "objects.yaml"))
        assert snapshot.rejections == (), f"{self.name}: {snapshot.rejections}"
        config = self.config()
        return render(decide(snapshot, config), config)


def scenarios() -> list[Scenario]:
    found = []
    for root in (UPSTREAM, OWN):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / "scenario.yaml").exists()):
            doc = yaml.safe_load((folder / "scenario.yaml").read_text()) or {}
            if doc.get("ip_family", "IPv4") != "IPv4":
                continue  # clew proxies IPv4 only for now
            prefix = "upstream-" if root == UPSTREAM else ""
            found.append(Scenario(prefix + folder.name, folder, doc))
    return found


@dataclass
class Table:
    chains: set[str] = field(default_factory=set)
    rules: dict[str, list[str]] = field(default_factory=dict)


def parse_restore(text: str) -> dict[str, Table]:
    """Restore input → per table: declared chains, and each chain's rules in order.

    Whitespace is collapsed and the ``-A CHAIN`` prefix removed; rule order across chains is
    ignored (it means nothing to the kernel), order within a chain is kept. ``-X`` lines are kept
    as pseudo-rules of a ``-X`` key.
    """
    tables: dict[str, Table] = {}
    current: Table | None = None
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], Table())
        elif line == "COMMIT":
            current = None
        elif current is None:
            raise ValueError(f"line outside a table: {raw!r}")
        elif line.startswith(":"):
            current.chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            current.rules.setdefault(chain, []).append(rest[0] if rest else "")
        elif line.startswith("-X "):
            current.rules.setdefault("-X", []).append(line[3:])
        else:
            raise ValueError(f"unexpected restore line: {raw!r}")
    return tables


def differences(expected: str, actual: str) -> list[str]:
    """Human-readable differences between two restore inputs, ignoring cross-chain order."""
    exp, act = parse_restore(expected), parse_restore(actual)
    out: list[str] = []
    for table in sorted(set(exp) | set(act)):
        e, a = exp.get(table, Table()), act.get(table, Table())
        for chain in sorted(e.chains - a.chains):
            out.append(f"{table}: chain {chain} missing")
        for chain in sorted(a.chains - e.chains):
            out.append(f"{table}: unexpected chain {chain}")
        for chain in sorted(set(e.rules) | set(a.rules)):
            er, ar = e.rules.get(chain, []), a.rules.get(chain, [])
            if er != ar:
                out.append(f"{table}: chain {chain} differs:")
                out.extend(f"    - {r}" for r in er if r not in ar)
                out.extend(f"    + {r}" for r in ar if r not in er)
                if sorted(er) == sorted(ar):
                    out.append("    (same rules, different order)")
    return out


QUOTED = re.compile(r'"[^"]*"')


def split_rule(rule: str) -> list[str]:
    """A restore rule's words, quotes grouping (for tests that inspect single options)."""
    return shlex.split(rule)
