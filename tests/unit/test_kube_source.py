"""KubeSource against a fake kube-apiserver that speaks the real wire format (kube_fake_server):
lists in pages, chunked watches with bookmarks, 410 Gone both ways, dropped streams, an API
server that goes away and returns, PATCH of nodes/status; and kubeconfig / in-cluster config.

Nothing sleeps to synchronise: tests poll the source (or wait on the server's request log)
until a deadline."""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import ssl
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kube_fake_server import FakeApiServer, Request

import clew
from clew.model.from_kube import TRIGGER_TIME_ANNOTATION, build_snapshot
from clew.model.objects import Snapshot
from clew.sources import kube
from clew.sources.apiclient import ApiError
from clew.sources.kube import PROXY_SELECTOR, KubeSource
from clew.sources.kubeconfig import ClusterConfig, KubeconfigError, in_cluster_config, load_kubeconfig
from clew.sources.manifests import ManifestError, parse_text
from clew.sources.reflector import Backoff, Resource, slim

SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
SERVICES = "/api/v1/services"
NODES = "/api/v1/nodes"
KINDS = ("Service", "EndpointSlice", "Node")


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, cap=0.05)


def svc(name: str, ip: str, port: int = 80, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "demo", "labels": labels or {}},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": port, "protocol": "TCP"}]},
    }


def eps(name: str, service: str, *ips: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "demo",
            "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "x"},
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}],
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "n1"} for ip in ips],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def node(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}], "images": [{"names": ["x"]}]},
    }


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.put(svc("web", "10.96.0.10"))
    server.put(eps("web-abc", "web", "10.244.1.5"))
    server.put(node("n1", "192.168.0.11"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def source(api: FakeApiServer) -> Iterator[KubeSource]:
    with KubeSource(ClusterConfig(server=api.url, token="s3cret"), backoff=fast_backoff) as s:
        yield s


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError("condition not met before the deadline")


def poll_until(source: KubeSource, check: Callable[[Snapshot], bool], timeout: float = 5.0) -> Snapshot:
    seen: list[Snapshot] = []

    def ready() -> Snapshot | None:
        snap = source.poll()
        if snap is not None:
            seen.append(snap)
            return snap if check(snap) else None
        return None

    try:
        return wait_for(ready, timeout)  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(f"no matching snapshot; last: {seen[-1:]}") from None


def endpoints(snap: Snapshot) -> dict[str, list[str]]:
    return {s.name: [e.address for e in s.endpoints] for s in snap.slices}


def is_watch(path: str) -> Callable[[Request], bool]:
    return lambda r: r.method == "GET" and r.path == path and r.watch


def is_list(path: str) -> Callable[[Request], bool]:
    return lambda r: r.method == "GET" and r.path == path and not r.watch


# -- list and watch ----------------------------------------------------------------------------


def test_initial_list_is_a_snapshot_then_quiet(api: FakeApiServer, source: KubeSource) -> None:
    snap = poll_until(source, lambda s: True)
    assert [s.name for s in snap.services] == ["web"]
    assert endpoints(snap) == {"web-abc": ["10.244.1.5"]}
    assert [n.name for n in snap.nodes] == ["n1"] and snap.rejections == ()
    assert source.synced and source.connected and source.errors == {}
    assert source.version == "services=1003,endpointslices=1003,nodes=1003"  # the lists were at RV 1003
    assert source.poll() is None  # nothing changed
    assert api.wait_request(is_list(SERVICES)).headers["authorization"] == "Bearer s3cret"
    node_obj = source.objects()[-1]
    assert node_obj["kind"] == "Node" and "images" not in node_obj["status"]  # list items lack kind
    assert "managedFields" not in source.objects()[1]["metadata"]


def test_nothing_before_all_three_lists(api: FakeApiServer) -> None:
    api.fail_next(is_list(NODES), code=403, count=1000)  # until told otherwise
    with KubeSource(ClusterConfig(server=api.url), backoff=fast_backoff) as source:
        api.wait_request(is_watch(SLICES))  # services and slices are listed and watched
        wait_for(lambda: sum(is_list(NODES)(r) for r in api.requests) >= 3)
        assert not source.synced and source.poll() is None
        assert "Forbidden" in source.errors["nodes"]
        with api.cond:
            api._failures.clear()  # RBAC fixed
        snap = poll_until(source, lambda s: True)
        assert [n.name for n in snap.nodes] == ["n1"] and source.errors == {}


def test_watch_events_change_the_snapshot(api: FakeApiServer, source: KubeSource) -> None:
    poll_until(source, lambda s: True)
    api.put(svc("db", "10.96.0.20", 5432))
    snap = poll_until(source, lambda s: len(s.services) == 2)
    assert sorted(s.name for s in snap.services) == ["db", "web"]
    api.put(eps("web-abc", "web", "10.244.1.5", "10.244.2.7"))
    snap = poll_until(source, lambda s: endpoints(s)["web-abc"] == ["10.244.1.5", "10.244.2.7"])
    api.delete("Service", "web", "demo")
    snap = poll_until(source, lambda s: [x.name for x in s.services] == ["db"])
    assert source.poll() is None
    # converting only what changed is the same (less the note on the service range, which the
    # API server enforced already)
    assert snap == replace(build_snapshot(source.objects()), notes=())


def test_slim_objects_convert_as_the_full_ones() -> None:
    """What the store drops is nothing the model reads (checked on the bundled examples and on
    every golden scenario's objects too)."""
    objects = [svc("web", "10.96.0.10"), eps("web-abc", "web", "10.244.1.5"), node("n1", "192.168.0.11")]
    objects[1]["endpoints"][0]["targetRef"] = {"kind": "Pod", "namespace": "demo", "name": "web-1"}
    objects[1]["metadata"]["annotations"] = {TRIGGER_TIME_ANNOTATION: "2024-05-01T10:00:05Z"}
    examples = Path(clew.__file__).parent / "examples"
    golden = Path(__file__).parents[1] / "golden"
    for path in [*sorted(examples.glob("*.yaml")), *sorted(golden.rglob("objects.yaml"))]:
        try:
            found = parse_text(path.read_text(), str(path))
        except ManifestError:
            continue
        objects += [
            o for o in found if isinstance(o, dict) and o.get("kind") in KINDS and isinstance(o.get("metadata"), dict)
        ]
    assert len(objects) > 50
    for obj in objects:
        kind, api_version = obj["kind"], obj["apiVersion"]
        slimmed = slim(copy.deepcopy(obj), Resource("/x", kind, api_version))
        assert build_snapshot([slimmed]) == build_snapshot([obj]), obj["metadata"]["name"]
    assert "targetRef" not in slim(copy.deepcopy(objects[1]), Resource("/x", "EndpointSlice", "v1"))["endpoints"][0]


def test_bookmark_moves_the_resource_version_only(api: FakeApiServer, source: KubeSource) -> None:
    poll_until(source, lambda s: True)
    api.wait_request(is_watch(SLICES))
    rv = api.bookmark("EndpointSlice")
    wait_for(lambda: source.resource_versions["endpointslices"] == rv)
    assert source.poll() is None
    seen = len(api.requests)
    api.drop_watches()
    again = api.wait_request(is_watch(SLICES), after=seen)
    assert again.query["resourceVersion"] == rv


def test_dropped_stream_rewatches_from_the_last_resource_version(api: FakeApiServer, source: KubeSource) -> None:
    poll_until(source, lambda s: True)
    rv = api.put(svc("db", "10.96.0.20"))
    poll_until(source, lambda s: len(s.services) == 2)
    seen = len(api.requests)
    api.drop_watches()  # half an event, then the connection goes
    again = api.wait_request(is_watch(SERVICES), after=seen)
    assert again.query["resourceVersion"] == rv
    api.put(svc("cache", "10.96.0.30"))
    snap = poll_until(source, lambda s: len(s.services) == 3)
    assert snap.rejections == ()
    assert not any(is_list(SERVICES)(r) for r in api.requests[seen:])  # no relist needed


def test_a_watch_that_times_out_is_renewed_from_the_last_resource_version(api: FakeApiServer) -> None:
    with KubeSource(ClusterConfig(server=api.url), backoff=fast_backoff, watch_timeout=lambda: 1) as source:
        poll_until(source, lambda s: True)
        first = api.wait_request(is_watch(NODES))
        assert first.query["timeoutSeconds"] == "1"
        rv = api.put(node("n2", "192.168.0.12"))
        poll_until(source, lambda s: len(s.nodes) == 2)
        again = api.wait_request(lambda r: is_watch(NODES)(r) and r is not first)  # the server ended it
        assert again.query["resourceVersion"] == rv
    assert sum(is_list(NODES)(r) for r in api.requests) == 1


def test_error_event_410_relists_and_drops_what_vanished(api: FakeApiServer, source: KubeSource) -> None:
    api.put(eps("web-def", "web", "10.244.3.3"))
    poll_until(source, lambda s: len(s.slices) == 2)
    seen = len(api.requests)
    api.delete("EndpointSlice", "web-def", "demo", silently=True)  # in the compacted gap: no event
    api.expire("EndpointSlice")  # ERROR {"code": 410, "reason": "Expired"} on the open watch
    snap = poll_until(source, lambda s: list(endpoints(s)) == ["web-abc"])
    api.wait_request(is_list(SLICES), after=seen)
    assert source.reflectors[1].stats["gone"] == 1 and snap.rejections == ()


def test_http_410_on_rewatch_relists(api: FakeApiServer, source: KubeSource) -> None:
    api.gone_as_http = True
    poll_until(source, lambda s: True)
    api.wait_request(is_watch(SLICES))
    old_rv = source.resource_versions["endpointslices"]
    api.put(eps("web-xyz", "web", "10.244.4.4"), silently=True)  # happens in the gap
    api.expire("EndpointSlice", notify=False)
    seen = len(api.requests)
    api.drop_watches()
    stale = api.wait_request(is_watch(SLICES), after=seen)
    assert stale.query["resourceVersion"] == old_rv  # answered 410 Gone
    snap = poll_until(source, lambda s: len(s.slices) == 2)
    assert "web-xyz" in endpoints(snap)
    assert api.wait_request(is_list(SLICES), after=seen)


def test_repeated_410_backs_off_instead_of_looping_hot(api: FakeApiServer) -> None:
    """A watch refused with 410 right after each list waits longer each time (kr8s loops hot)."""
    delays: list[float] = []

    class Recording(Backoff):
        def next(self) -> float:
            delays.append(super().next())
            return delays[-1]

    api.fail_next(is_watch(SERVICES), code=410, count=4)
    with KubeSource(ClusterConfig(server=api.url), backoff=lambda: Recording(0.01, 0.05, rand=lambda: 0.0)) as source:
        poll_until(source, lambda s: True)
        wait_for(lambda: sum(is_watch(SERVICES)(r) for r in api.requests) >= 5)
    assert delays[:4] == [0.01, 0.02, 0.04, 0.05]
    assert sum(is_list(SERVICES)(r) for r in api.requests) == 5  # 410 on a watch: list again


def test_server_away_keeps_the_snapshot_and_resyncs_on_return(api: FakeApiServer, source: KubeSource) -> None:
    poll_until(source, lambda s: True)
    api.stop()
    wait_for(lambda: not any(r.connected for r in source.reflectors))  # each was refused once
    assert source.poll() is None  # the last snapshot stands: rules stay as they were
    api.delete("Service", "web", "demo")
    api.put(svc("db", "10.96.0.20"))
    seen = len(api.requests)
    api.start()  # same port
    snap = poll_until(source, lambda s: [x.name for x in s.services] == ["db"])
    assert [s.name for s in snap.slices] == ["web-abc"]
    wait_for(lambda: source.connected)
    api.wait_request(is_list(SERVICES), after=seen)


def test_list_in_pages_with_continue(api: FakeApiServer) -> None:
    for i in range(4):
        api.put(svc(f"s{i}", f"10.96.1.{i}"))
    with KubeSource(ClusterConfig(server=api.url), backoff=fast_backoff, page_size=2) as source:
        snap = poll_until(source, lambda s: True)
    assert len(snap.services) == 5
    pages = [r.query for r in api.requests if is_list(SERVICES)(r)]
    assert [p["limit"] for p in pages] == ["2", "2", "2"]
    assert "continue" not in pages[0] and all(p["continue"] for p in pages[1:])


def test_an_expired_continue_token_starts_the_list_again(api: FakeApiServer) -> None:
    for i in range(3):
        api.put(svc(f"s{i}", f"10.96.1.{i}"))
    api.fail_next(lambda r: is_list(SERVICES)(r) and "continue" in r.query, code=410)
    with KubeSource(ClusterConfig(server=api.url), backoff=fast_backoff, page_size=2) as source:
        snap = poll_until(source, lambda s: True)
    assert len(snap.services) == 4
    pages = [r.query for r in api.requests if is_list(SERVICES)(r)]
    assert ["continue" in p for p in pages] == [False, True, False, True]


def test_malformed_objects_are_rejections_and_the_stream_goes_on(api: FakeApiServer, source: KubeSource) -> None:
    poll_until(source, lambda s: True)
    api.put(eps("web-bad", "web", "not-an-ip"))
    nameless = eps("x", "web", "10.244.9.9")
    api.put(nameless)
    with api.cond:  # an object the API would never send: no metadata.name
        del api.history[-1].object["metadata"]["name"]
    api.put(eps("web-good", "web", "10.244.5.5"))
    snap = poll_until(source, lambda s: "web-good" in endpoints(s))
    assert [(r.object, r.field) for r in snap.rejections] == [
        ("EndpointSlice demo/web-bad", "endpoints[0].addresses[0]")
    ]
    assert sorted(endpoints(snap)) == ["web-abc", "web-good"]


def test_an_object_the_model_trips_over_is_a_rejection(
    api: FakeApiServer, source: KubeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    poll_until(source, lambda s: True)
    real = build_snapshot

    def fragile(objects: list[Any], **options: Any) -> Snapshot:
        if objects[0]["metadata"]["name"] == "boom":
            raise TypeError("unhashable type: 'dict'")
        return real(objects, **options)

    monkeypatch.setattr(kube, "build_snapshot", fragile)
    api.put(svc("boom", "10.96.0.66"))
    api.put(svc("fine", "10.96.0.67"))
    snap = poll_until(source, lambda s: len(s.services) == 2)
    assert [str(r) for r in snap.rejections] == [
        "Service demo/boom: : could not be read: TypeError(\"unhashable type: 'dict'\")"
    ]


def test_label_selectors_like_kube_proxy(api: FakeApiServer) -> None:
    api.put(svc("other", "10.96.0.99", labels={"service.kubernetes.io/service-proxy-name": "cilium"}))
    headless = eps("hl-1", "hl", "10.244.7.7")
    headless["metadata"]["labels"]["service.kubernetes.io/headless"] = ""
    api.put(headless)
    with KubeSource(ClusterConfig(server=api.url), backoff=fast_backoff) as source:
        snap = poll_until(source, lambda s: True)
        for path in (SERVICES, SLICES, NODES):
            api.wait_request(is_watch(path))
    assert [s.name for s in snap.services] == ["web"] and list(endpoints(snap)) == ["web-abc"]
    for path in (SERVICES, SLICES):
        for r in (api.wait_request(is_list(path)), api.wait_request(is_watch(path))):
            assert r.query["labelSelector"] == PROXY_SELECTOR
            assert set(PROXY_SELECTOR.split(",")) == {
                "!service.kubernetes.io/headless",
                "!service.kubernetes.io/service-proxy-name",
            }
    watch = api.wait_request(is_watch(NODES))
    assert "labelSelector" not in watch.query and watch.query["allowWatchBookmarks"] == "true"
    assert int(watch.query["timeoutSeconds"]) >= 300


def test_patch_node_annotations(api: FakeApiServer, source: KubeSource) -> None:
    poll_until(source, lambda s: True)
    lease = {"flannel.alpha.coreos.com/public-ip": "192.168.0.11", "flannel.alpha.coreos.com/backend-type": "vxlan"}
    assert source.patch_node_annotations("n1", lease) is True
    patch = api.wait_request(lambda r: r.method == "PATCH")
    assert patch.path == "/api/v1/nodes/n1/status"
    assert patch.headers["content-type"] == "application/strategic-merge-patch+json"
    assert json.loads(patch.body) == {"metadata": {"annotations": lease}}
    snap = poll_until(source, lambda s: s.nodes[0].annotations.get("flannel.alpha.coreos.com/backend-type") == "vxlan")
    assert snap.nodes[0].annotations == lease
    assert source.patch_node_annotations("n1", lease) is False  # already there: no request
    assert sum(r.method == "PATCH" for r in api.requests) == 1
    with pytest.raises(ApiError) as err:
        source.patch_node_annotations("missing", lease)
    assert err.value.code == 404 and err.value.reason == "NotFound"


def test_close_stops_every_thread(api: FakeApiServer) -> None:
    source = KubeSource(ClusterConfig(server=api.url), backoff=fast_backoff)
    source.wait_synced(5)
    started = time.monotonic()
    source.close()
    assert all(not r._thread or not r._thread.is_alive() for r in source.reflectors)
    assert time.monotonic() - started < 2


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    b = Backoff(initial=0.1, cap=1.0, jitter=0.5, rand=lambda: 1.0)
    assert [round(b.next(), 3) for _ in range(6)] == [0.15, 0.3, 0.6, 1.0, 1.0, 1.0]
    b.reset()
    b.rand = lambda: 0.0
    assert b.next() == 0.1


# -- TLS, kubeconfig and in-cluster config -----------------------------------------------------


def _self_signed(folder: Path, name: str, cn: str, san: str | None = None) -> tuple[Path, Path]:
    crt, key = folder / f"{name}.crt", folder / f"{name}.key"
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    cmd += ["-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", f"/CN={cn}"]
    if san:
        cmd += ["-addext", f"subjectAltName={san}"]
    subprocess.run(cmd, check=True, capture_output=True)
    return crt, key


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_kubeconfig_with_embedded_certificates_over_mutual_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server_crt, server_key = _self_signed(tmp_path, "server", "kube-apiserver", "IP:127.0.0.1")
    client_crt, client_key = _self_signed(tmp_path, "client", "system:node:n1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(server_crt, server_key)
    tls.verify_mode = ssl.CERT_REQUIRED  # the API server insists on our client certificate
    tls.load_verify_locations(client_crt)
    api = FakeApiServer(tls=tls)
    api.put(node("n1", "192.168.0.11"))
    api.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
current-context: node
contexts:
- {{name: other, context: {{cluster: nowhere, user: nobody}}}}
- {{name: node, context: {{cluster: lab, user: n1}}}}
clusters:
- name: lab
  cluster: {{server: "{api.url}", certificate-authority-data: {_b64(server_crt)}}}
users:
- name: n1
  user: {{client-certificate-data: {_b64(client_crt)}, client-key-data: {_b64(client_key)}}}
""")
    modes: list[tuple[int, int]] = []
    real = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, keyfile: str | None = None, password: Any = None) -> None:
        modes.append((stat.S_IMODE(os.stat(certfile).st_mode), stat.S_IMODE(os.stat(str(keyfile)).st_mode)))
        modes.append((stat.S_IMODE(os.stat(os.path.dirname(certfile)).st_mode), 0))
        real(self, certfile, keyfile, password)
        files.append(certfile)

    files: list[str] = []
    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    cfg = load_kubeconfig(kubeconfig)
    assert cfg.cert_data and cfg.key_data and cfg.ca_data and cfg.cert_file is None
    try:
        with KubeSource(cfg, backoff=fast_backoff) as source:
            snap = poll_until(source, lambda s: True)
            started = time.monotonic()
        assert time.monotonic() - started < 2  # close() wakes TLS reads, even mid-handshake
    finally:
        api.stop()
    assert [n.name for n in snap.nodes] == ["n1"]
    assert modes == [(0o600, 0o600), (0o700, 0)]
    assert not os.path.exists(files[0])  # removed once loaded


def test_kubeconfig_paths_token_file_and_insecure(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "token").write_text("abc\n")
    cfg_file = tmp_path / "kubeconfig"
    cfg_file.write_text("""
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "https://10.0.0.1:6443/prefix/", certificate-authority: pki/ca.crt,
            tls-server-name: kubernetes}}]
users: [{name: u, user: {tokenFile: pki/token, client-certificate: /etc/n.crt, client-key: n.key}}]
""")
    cfg = load_kubeconfig(cfg_file)
    assert (cfg.host, cfg.port, cfg.prefix, cfg.scheme) == ("10.0.0.1", 6443, "/prefix", "https")
    assert cfg.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert cfg.cert_file == "/etc/n.crt" and cfg.key_file == str(tmp_path / "n.key")
    assert not cfg.insecure and cfg.tls_server_name == "kubernetes"
    assert cfg.bearer_token() == "abc"
    (tmp_path / "pki" / "token").write_text("rotated")
    assert cfg.bearer_token() == "rotated"
    with_token = ClusterConfig(server="http://127.0.0.1:1", token="t")
    assert with_token.bearer_token() == "t" and with_token.port == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("current-context: nope\ncontexts: []", "no entry named 'nope'"),
        ("contexts: []", "no current-context"),
        (
            "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
            "clusters: [{name: k, cluster: {server: 'https://x'}}]\n"
            "users: [{name: u, user: {exec: {command: aws}}}]",
            "user.exec is not supported",
        ),
        (
            "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
            "clusters: [{name: k, cluster: {server: 'x:1'}}]",
            "not an http(s) URL",
        ),
        (
            "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
            "clusters: [{name: k, cluster: {server: 'https://x', certificate-authority-data: '!!'}}]",
            "not base64",
        ),
        ("[1, 2", "not YAML"),
    ],
)
def test_kubeconfig_errors_say_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(body)
    with pytest.raises(KubeconfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_kubeconfig(path)


def test_in_cluster_config(tmp_path: Path) -> None:
    folder = tmp_path / "var/run/secrets/kubernetes.io/serviceaccount"
    folder.mkdir(parents=True)
    (folder / "token").write_text("sa-token\n")
    (folder / "ca.crt").write_text("PEM")
    cfg = in_cluster_config(tmp_path, {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    assert cfg.server == "https://10.96.0.1:443"
    assert cfg.ca_file == str(folder / "ca.crt") and cfg.bearer_token() == "sa-token"
    v6 = in_cluster_config(tmp_path, {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"})
    assert v6.server == "https://[fd00::1]:6443" and v6.host == "fd00::1"
    with pytest.raises(KubeconfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_config(tmp_path, {})
    (folder / "token").unlink()
    with pytest.raises(KubeconfigError, match="token is missing"):
        in_cluster_config(tmp_path, {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})


def test_cross_object_refusals_follow_the_watch_with_the_change_hint(api: FakeApiServer, source: KubeSource) -> None:
    """A second Service with web's clusterIP is refused (web was created first); once web goes
    away the other one gets the IP, and the change hint names it so an O(changed) sync sees it."""
    poll_until(source, lambda s: True)
    web = svc("web", "10.96.0.10")
    web["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    api.put(web)
    twin = svc("twin", "10.96.0.10")
    twin["metadata"]["creationTimestamp"] = "2024-02-01T00:00:00Z"
    api.put(twin)
    snap = poll_until(source, lambda s: bool(s.rejections))
    assert [x.name for x in snap.services] == ["web"]
    assert [(r.object, r.field) for r in snap.rejections] == [("Service demo/twin", "spec.clusterIP")]
    api.delete("Service", "web", "demo")
    snap = poll_until(source, lambda s: [x.name for x in s.services] == ["twin"])
    assert snap.rejections == () and snap.changes is not None and "demo/twin" in snap.changes.services
    api.put(node("n2", "10.96.0.10"))  # a Node with twin's clusterIP as its address
    snap = poll_until(source, lambda s: bool(s.rejections))
    assert snap.services == () and "Node n2's address" in snap.rejections[0].reason
    assert snap.changes is not None and "demo/twin" in snap.changes.services
