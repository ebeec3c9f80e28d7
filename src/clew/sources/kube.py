"""The agent's source of Services, EndpointSlices and Nodes from a kube-apiserver.

`KubeSource` has FolderSource's interface: ``poll()`` returns a new `Snapshot` when anything
changed since the last poll (None otherwise, and None until all three initial lists are done,
so that a half-listed cluster never empties the rules), and ``patch_node_annotations`` publishes
the pod network's lease on the Node. Three `Reflector` threads (list + watch, see
`sources/reflector.py`) keep the objects as plain dicts; bad objects become `Rejection`s in
`build_snapshot`, never exceptions. While the API server is away the last snapshot stands;
when it returns the reflectors list again and the next poll reports what changed.

Like kube-proxy, Services and EndpointSlices are listed with the label selector
``!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name``: Services that
another proxy owns and the slices of headless Services are never sent to us.

Why no client library: the standard library's ``http.client`` speaks everything a node agent
needs (list, a chunked watch, one PATCH) in a few hundred lines, and environment.md §6 measured
the candidates: the official client costs 188 MB installed, 142 MB for 10k EndpointSlices and
hides 410 Gone after one retry; lightkube crashes decoding an EndpointSlice BOOKMARK; kr8s loops
hot on 410. A reflector of our own was needed with any of them. Ours holds 10k EndpointSlices
(3 endpoints each) in 28 MiB, and a poll after one change converts only that object (~10 ms
at 10k slices instead of ~0.35 s for the whole set).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from clew.model.admission import Admission, node_addresses
from clew.model.from_kube import HEADLESS_LABEL, PROXY_NAME_LABEL, build_snapshot, object_name
from clew.model.objects import Changes, EndpointSlice, Rejection, Snapshot
from clew.sources.apiclient import ApiClient
from clew.sources.kubeconfig import ClusterConfig
from clew.sources.reflector import Backoff, Reflector, Resource

PROXY_SELECTOR = f"!{HEADLESS_LABEL},!{PROXY_NAME_LABEL}"  # kube-proxy's, on Services and slices
SERVICES = Resource("/api/v1/services", "Service", "v1", PROXY_SELECTOR)
ENDPOINT_SLICES = Resource(
    "/apis/discovery.k8s.io/v1/endpointslices", "EndpointSlice", "discovery.k8s.io/v1", PROXY_SELECTOR
)
NODES = Resource("/api/v1/nodes", "Node", "v1")
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
log = logging.getLogger("clew.sources.kube")


def _convert(obj: dict[str, Any]) -> Snapshot:
    """One object's `build_snapshot`; should the model trip over it, a rejection (a bad object
    must never stop the agent)."""
    try:
        return build_snapshot([obj], admit=False)  # across objects: the source's own `Admission`
    except Exception as e:
        log.error("%s: the model could not read it: %r", object_name(obj), e)
        return Snapshot(rejections=(Rejection(object_name(obj), "", f"could not be read: {e!r}"),))


class KubeSource:
    """List + watch Services, EndpointSlices and Nodes; snapshots on demand. Thread-safe."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        backoff: Callable[[], Backoff] = Backoff,
        watch_timeout: Callable[[], int] | None = None,
        page_size: int = 500,
        request_timeout: float = 30.0,
        start: bool = True,
    ) -> None:
        self.config = config
        self.client = ApiClient(config, timeout=request_timeout)
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._generation = 0
        self._polled = -1
        self._version = ""
        self._parts: dict[tuple[str, str, str], tuple[dict[str, Any], Snapshot]] = {}  # see _snapshot
        self._admission = Admission()  # duplicate clusterIPs/NodePorts, a Node's IP as clusterIP
        self._synced = threading.Event()
        extra: dict[str, Any] = {"watch_timeout": watch_timeout} if watch_timeout else {}
        self.reflectors = [
            Reflector(self.client, r, self._lock, self._changed, backoff(), page_size, **extra)
            for r in (SERVICES, ENDPOINT_SLICES, NODES)
        ]
        self._started = False
        if start:
            self.start()

    def start(self) -> KubeSource:
        if not self._started:
            self._started = True
            if (warning := self.config.security_warning()) is not None:
                log.warning("%s", warning)
            for r in self.reflectors:
                r.start()
        return self

    def close(self) -> None:
        """Stop the reflectors (the objects held stay readable)."""
        for r in self.reflectors:
            r.request_stop()
        for r in self.reflectors:
            r.join()

    def __str__(self) -> str:
        return f"kube-apiserver {self.config.server}"

    def __enter__(self) -> KubeSource:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _changed(self) -> None:  # called by a reflector holding self._lock
        self._generation += 1
        if all(r.synced for r in self.reflectors):
            self._synced.set()

    @property
    def synced(self) -> bool:
        """All three initial lists are done."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    @property
    def connected(self) -> bool:
        """The API server answered the last request of every reflector."""
        return all(r.connected for r in self.reflectors)

    @property
    def problem(self) -> str | None:
        """Why the API server cannot be read now: a reflector's last request failed to connect
        or broke (None while connecting for the first time, and once every one works again)."""
        down = [r.error for r in self.reflectors if not r.connected and r.error]
        return f"{self}: {down[0]}" if down else None

    @property
    def errors(self) -> dict[str, str]:
        """The current problem of each resource that has one (cleared once it works again)."""
        return {r.resource.name: r.error for r in self.reflectors if r.error}

    @property
    def resource_versions(self) -> dict[str, str]:
        with self._lock:
            return {r.resource.name: r.rv for r in self.reflectors}

    @property
    def version(self) -> str:
        """The resourceVersions the last snapshot was taken at (``services=…,endpointslices=…,nodes=…``)."""
        return self._version

    def objects(self) -> list[dict[str, Any]]:
        """Every object held, Services then EndpointSlices then Nodes, each sorted by namespace/name."""
        with self._lock:
            return [r.store[k] for r in self.reflectors for k in sorted(r.store)]

    def poll(self) -> Snapshot | None:
        """A new snapshot if anything changed since the last poll (the first once synced)."""
        with self._poll_lock:
            if not self.synced:
                return None
            with self._lock:
                generation = self._generation
                if generation == self._polled:
                    return None
                held = [((r.resource.kind, *k), r.store[k]) for r in self.reflectors for k in sorted(r.store)]
                self._version = ",".join(f"{r.resource.name}={r.rv}" for r in self.reflectors)
            self._polled = generation
            return self._snapshot(held)

    def _snapshot(self, held: list[tuple[tuple[str, str, str], dict[str, Any]]]) -> Snapshot:
        """`build_snapshot` of the objects, converting only those that changed since the last
        poll (a stored object is replaced, never mutated, so identity tells). The same value as
        ``build_snapshot(objects)``: the API's names are unique, so no duplicate rule applies."""
        parts: dict[tuple[str, str, str], tuple[dict[str, Any], Snapshot]] = {}
        touched: list[Snapshot] = []  # parts converted anew, and parts gone: the change hint
        fresh: list[Snapshot] = []  # parts converted anew
        for key, obj in held:
            cached = self._parts.get(key)
            if cached is not None and cached[0] is obj:
                parts[key] = cached
            else:
                parts[key] = (obj, _convert(obj))
                touched.append(parts[key][1])
                fresh.append(parts[key][1])
                if cached is not None:
                    touched.append(cached[1])
        touched += [snap for key, (_, snap) in self._parts.items() if key not in parts]
        first = not self._parts
        self._parts = parts
        snaps = [snap for _, snap in parts.values()]
        snapshot = Snapshot(
            tuple(x for s in snaps for x in s.services),
            tuple(x for s in snaps for x in s.slices),
            tuple(x for s in snaps for x in s.nodes),
            tuple(x for s in snaps for x in s.rejections),
            tuple(x for s in snaps for x in s.notes),
        )
        # Across objects, in time proportional to the change (`model.admission`). The service
        # range is not checked: the API server allocated every clusterIP from it already.
        nodes = node_addresses(snapshot.nodes) if first or any(t.nodes for t in touched) else None
        removed = [x.key for t in touched for x in t.services]
        standing = self._admission.update(removed, [x for t in fresh for x in t.services], nodes)
        if self._admission.rejected:
            out = self._admission.rejected
            snapshot = replace(
                snapshot,
                services=tuple(x for x in snapshot.services if x.key not in out),
                rejections=(*snapshot.rejections, *out.values()),
            )
        if first:
            return snapshot
        return replace(snapshot, changes=_changes(snapshot, touched, standing))

    def patch_node_annotations(self, node_name: str, annotations: dict[str, str]) -> bool:
        """Merge ``annotations`` into the Node with a strategic-merge PATCH of ``nodes/<name>/status``
        (flannel's way of publishing a lease). False without a request when the Node we hold has
        them already; raises `ApiError` or `OSError` when the PATCH fails."""
        with self._lock:
            node = self.reflectors[2].store.get(("", node_name))
            meta = node.get("metadata") if node else None
            current = meta.get("annotations") if isinstance(meta, dict) else None
            if isinstance(current, dict) and all(current.get(k) == v for k, v in annotations.items()):
                return False
        conn = self.client.connect()
        try:
            body = json.dumps({"metadata": {"annotations": annotations}}).encode()
            path = f"/api/v1/nodes/{quote(node_name, safe='')}/status"
            self.client.send(conn, "PATCH", path, body=body, content_type=STRATEGIC_MERGE).read()
        finally:
            conn.close()
        return True


def _changes(snapshot: Snapshot, touched: list[Snapshot], standing: set[str]) -> Changes:
    """The change hint for the sync engine: Services whose object or slices were touched, or
    that were let in or refused because another Service changed (``standing``)."""
    keys = {x.key for t in touched for x in t.services} | {x.service_key for t in touched for x in t.slices}
    keys |= standing
    nodes_changed = any(t.nodes for t in touched)
    services = {s.key: s for s in snapshot.services}
    slices: dict[str, tuple[EndpointSlice, ...]] = {}
    for sl in snapshot.slices:
        slices[sl.service_key] = (*slices.get(sl.service_key, ()), sl)
    return Changes(frozenset(keys), nodes_changed, services, slices)
