"""Turn command-line inputs (manifests, a KubeProxyConfiguration, flags) into the pure render
inputs: a `Snapshot` and a `ProxyConfig`. Shared by ``clew render``, the agent and the demo."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from clew.model import fields as f
from clew.model.from_kube import build_snapshot
from clew.model.objects import Snapshot
from clew.model.proxy_config import ProxyConfig, from_kube_proxy_config
from clew.proxy.node_settings import node_config
from clew.sources.manifests import ManifestError, load_objects, parse_text

IGNORED_KINDS = ("Deployment", "Pod", "Namespace", "ConfigMap", "ServiceAccount")


def read_config_file(path: str | Path | None) -> dict[str, Any]:
    """The KubeProxyConfiguration document of ``path`` (YAML or JSON), or {} without one."""
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e.reason})") from None
    docs = parse_text(text, str(path))
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") in (None, "KubeProxyConfiguration"):
            return doc
    raise ManifestError(f"{path}: no KubeProxyConfiguration document in it")


def load_snapshot(path: str | Path) -> Snapshot:
    try:
        return build_snapshot(load_objects(path), ignored_kinds=IGNORED_KINDS)
    except yaml.YAMLError as e:  # pragma: no cover - parse_text converts these
        raise ManifestError(f"{path}: {e}") from None


def make_config(
    snapshot: Snapshot,
    *,
    config_file: str | Path | None = None,
    node_name: str | None = None,
    node_ips: list[str] | None = None,
    cluster_cidr: str | None = None,
    mode: str | None = None,
) -> ProxyConfig:
    """Flags win over the config file; the Node object completes them (`node_settings.node_config`,
    the agent's function too): ``--node-ip`` adds to the Node's addresses, pod CIDRs are the Node's."""
    doc = dict(read_config_file(config_file))
    if cluster_cidr is not None:
        doc["clusterCIDR"] = cluster_cidr
    if mode is not None:
        doc["mode"] = mode
    config = from_kube_proxy_config(doc, node_name=node_name)
    ips = tuple(dict.fromkeys(str(f.ip(ip, "--node-ip")) for ip in (node_ips or [])))
    return node_config(replace(config, node_ips=ips), snapshot)
