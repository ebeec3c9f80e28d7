"""The cluster objects the doctor compares a node with (``--objects PATH``): Nodes and Services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clew.doctor.facts import NodeObject, Objects
from clew.sources.manifests import load_objects


def from_list(items: list[Any]) -> Objects:
    """Nodes (name, podCIDR, InternalIP) and the Services that get rules (a ClusterIP, not
    headless, not ExternalName), from objects as the API serves them."""
    nodes: list[NodeObject] = []
    services: set[str] = set()
    for obj in items:
        if not isinstance(obj, dict):
            continue
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        if obj.get("kind") == "Node":
            addresses = (obj.get("status") or {}).get("addresses") or []
            internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
            nodes.append(NodeObject(str(meta.get("name", "")), spec.get("podCIDR"), internal))
        elif obj.get("kind") == "Service":
            if spec.get("type") == "ExternalName" or spec.get("clusterIP") in (None, "", "None"):
                continue
            services.add(f"{meta.get('namespace', 'default')}/{meta.get('name', '')}")
    return Objects(nodes=tuple(nodes), services=frozenset(services))


def load(path: str | Path) -> Objects:
    """`from_list` over every manifest under ``path`` (ManifestError: one line naming the file)."""
    return from_list(load_objects(path))


def from_cluster(kubeconfig: str | Path, *, timeout: float = 10.0) -> Objects:
    """`from_list` over the Nodes and Services the API server lists (pages of 500)."""
    from clew.sources.apiclient import ApiClient
    from clew.sources.kubeconfig import load_kubeconfig

    client = ApiClient(load_kubeconfig(kubeconfig), timeout=timeout)
    conn = client.connect()
    items: list[Any] = []
    try:
        for path, kind in (("/api/v1/nodes", "Node"), ("/api/v1/services", "Service")):
            query = {"limit": "500"}
            while True:
                page = client.json(conn, "GET", path, query)
                items.extend({**obj, "kind": kind} for obj in page.get("items") or [])
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
                query = {"limit": "500", "continue": token}
    finally:
        conn.close()
    return from_list(items)
