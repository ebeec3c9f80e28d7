"""The lab's control plane: what kube-controller-manager, the scheduler and the kubelet would do.

* Deployments become pods ``<name>-<i>``, placed round-robin over the nodes, each created by
  calling ``clew-cni`` as a runtime does and running the echo server on the container ports.
* Services get a cluster IP from the service range and NodePorts from 30000–32767 when they
  need them (values set in the manifest are kept).
* EndpointSlices list the pods each Service selects, ready while their echo server runs.

All of it is written as API objects into the folder the node agents watch. Each agent writes
its flannel lease to its own state dir (``node-lease.json``); `publish_leases` (`clew.lab.leases`)
merges them into the Node objects, as the API server would store their PATCHes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from clew.lab import inputs
from clew.lab import pods as lab_pods
from clew.lab.admit import admit
from clew.lab.inputs import ApplyError
from clew.lab.leases import publish_leases
from clew.lab.procs import pod_running
from clew.lab.state import LabState, Pod, save, save_pods
from clew.sources.files import write_atomic

__all__ = ["ApplyError", "Progress", "apply", "endpoint_slice", "publish_leases"]
Progress = Callable[[str, int, int], None]  # (what, done, total): for a progress display


def _quiet(what: str, done: int, total: int) -> None:
    """No progress display."""


def apply(state: LabState, root: Path, objects: Iterable[Any], progress: Progress = _quiet) -> list[str]:
    """Apply Deployments and Services; returns what changed, in words.

    Every object is admitted first (`clew.lab.admit`): one bad object raises `ApplyError` and
    changes nothing. Then pods are created or deleted and the objects folder is written, also
    when a pod fails to start (the pods made so far are in the state and the folder, as a
    cluster would show them)."""
    admitted = admit(state, objects)
    state.deployments, state.services = admitted.deployments, admitted.services
    try:
        return _reconcile_pods(state, root, progress)
    finally:
        _write_objects(state, root, progress)
        save(state)


def _reconcile_pods(state: LabState, root: Path, progress: Progress) -> list[str]:
    said = []
    plan = state.plan
    wanted_by: dict[str, tuple[set[str], dict[str, str], dict[str, int]]] = {}
    for key, dep in sorted(state.deployments.items()):
        ns, name, replicas, labels, ports = inputs.deployment(dep)
        wanted_by[key] = ({f"{name}-{i}" for i in range(replicas)}, labels, ports)
    todo = sum(len(w[0] ^ {p.name for p in state.pods.values() if p.deployment == k}) for k, w in wanted_by.items())
    done = 0
    for key, (wanted, labels, ports) in wanted_by.items():
        ns = key.split("/", 1)[0]
        have = {p.name for p in state.pods.values() if p.deployment == key}
        for pod_name in sorted(have - wanted, key=lambda n: int(n.rsplit("-", 1)[1]), reverse=True):
            pod = state.pods.pop(pod_name)
            node = plan.node(pod.node)
            lab_pods.delete(pod, node.netns, root / "nodes" / node.name)
            save_pods(state)
            said.append(f"deleted pod {pod_name}")
            done += 1
            progress("pods", done, todo)
        for pod_name in sorted(wanted - have, key=lambda n: int(n.rsplit("-", 1)[1])):
            node = plan.nodes[state.placed % len(plan.nodes)]
            state.placed += 1
            pod = Pod(pod_name, ns, key, labels, node.name, plan.pod_netns(pod_name), "", ports,
                      container_id=f"{pod_name}-{uuid.uuid4().hex[:12]}")  # fmt: skip
            state.pods[pod_name] = lab_pods.create(pod, node.netns, root / "nodes" / node.name, root / "pods")
            save_pods(state)
            said.append(f"pod {pod_name} on {node.name} at {pod.ip}")
            done += 1
            progress("pods", done, todo)
    return said


def endpoint_slice(
    state: LabState, key: str, svc: dict[str, Any], ready_pods: Mapping[str, bool] | None = None
) -> dict[str, Any] | None:
    """The EndpointSlice of Service ``key``; ``ready_pods``: pod name → running (read once per apply)."""
    ns, name = key.split("/", 1)
    selector = (svc.get("spec") or {}).get("selector")
    if not selector:
        return None
    members = [p for p in sorted(state.pods.values(), key=lambda p: p.name)
               if p.namespace == ns and all(p.labels.get(k) == v for k, v in selector.items())]  # fmt: skip
    ports = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        target = sp.get("targetPort", sp.get("port"))
        number = target if isinstance(target, int) else None
        if number is None and members:
            number = members[0].ports.get(str(target))
        if number is not None:
            ports.append({"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol", "TCP")})
    endpoints = []
    for p in members:
        ready = ready_pods[p.name] if ready_pods is not None and p.name in ready_pods else pod_running(p)
        endpoints.append({
            "addresses": [p.ip],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "nodeName": p.node,
            "targetRef": {"kind": "Pod", "namespace": ns, "name": p.name},
        })  # fmt: skip
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-lab", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def service_cidr(state: LabState) -> dict[str, Any]:
    """The service range as the API server (1.33+) serves it: the ServiceCIDR ``kubernetes``.
    Agents refuse a clusterIP outside it, as the API server would (`clew.model.admission`)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": "kubernetes"},
        "spec": {"cidrs": [state.config.service_cidr]},
    }


def _write_objects(state: LabState, root: Path, progress: Progress = _quiet) -> None:
    objects = root / "objects"
    keep: set[Path] = set()
    _write_if_changed(objects / "servicecidrs" / "kubernetes.json", service_cidr(state))
    total = len(state.services)
    ready = {p.name: pod_running(p) for p in state.pods.values()}
    for done, (key, svc) in enumerate(sorted(state.services.items()), 1):
        base = key.replace("/", "-")
        path = objects / "services" / f"{base}.json"
        _write_if_changed(path, svc)
        keep.add(path)
        sl = endpoint_slice(state, key, svc, ready)
        if sl is not None:
            path = objects / "slices" / f"{base}.json"
            _write_if_changed(path, sl)
            keep.add(path)
        if done % 100 == 0 or done == total:
            progress("objects written", done, total)
    for folder in ("services", "slices"):
        for path in (objects / folder).glob("*.json") if (objects / folder).exists() else []:
            if path not in keep:
                path.unlink()


def _write_if_changed(path: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)
