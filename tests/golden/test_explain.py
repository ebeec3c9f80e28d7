"""``clew explain service`` and ``clew trace`` stories on the bundled example, as reviewed text."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from clew.cli.main import main
from clew.model.from_kube import build_snapshot
from clew.netfilter.iptables_save import parse
from clew.proxy.inputs import make_config
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide
from clew.sources.manifests import load_objects
from clew.trace.explain import explain_service, format_explanation

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "clew" / "examples" / "demo.yaml"
STORIES = Path(__file__).parent / "stories"


@pytest.fixture(scope="module")
def ruleset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    snapshot = build_snapshot(load_objects(EXAMPLE))
    config = make_config(snapshot, node_name="node-a", cluster_cidr="10.244.0.0/16")
    path = tmp_path_factory.mktemp("explain") / "node-a.rules"
    path.write_text(render(decide(snapshot, config), config).text(standalone=True))
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        main(args)
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    return capsys.readouterr().out


def check_golden(name: str, text: str, request: pytest.FixtureRequest) -> None:
    path = STORIES / name
    if request.config.getoption("--update-golden"):
        STORIES.mkdir(exist_ok=True)
        path.write_text(text)
    want = path.read_text() if path.exists() else ""
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), "golden", "now"))
        pytest.fail(f"{name} differs (review, then --update-golden):\n{diff}")


CASES = [
    ("explain-web.txt", ["explain", "service", "demo/web", "--objects", str(EXAMPLE), "--node-name", "node-a"]),
    ("explain-shop.txt", ["explain", "service", "demo/shop:http", "--objects", str(EXAMPLE), "--node-name", "node-a"]),
    ("explain-api.txt", ["explain", "service", "demo/api"]),
    ("explain-broken.txt", ["explain", "service", "demo/broken", "--objects", str(EXAMPLE), "--node-name", "node-a"]),
    ("trace-pod-clusterip.txt", ["trace", "-v", "--src", "10.244.1.5", "--dst", "10.96.0.80", "--iif", "cni0"]),
    (
        "trace-nodeport-local.txt",
        [
            "trace",
            "-v",
            "--src",
            "203.0.113.7",
            "--dst",
            "192.168.50.2",
            "--dport",
            "30080",
            "--iif",
            "eth0",
            "--local-ip",
            "192.168.50.2",
        ],
    ),
    (
        "trace-lb-outside-range.txt",
        ["trace", "-v", "--src", "192.0.2.9", "--dst", "198.51.100.10", "--dport", "443", "--iif", "eth0"],
    ),
    ("trace-no-endpoints.txt", ["trace", "-v", "--src", "10.244.1.5", "--dst", "10.96.0.83", "--iif", "cni0"]),
]


@pytest.mark.parametrize(("name", "args"), CASES, ids=[c[0] for c in CASES])
def test_story(
    name: str, args: list[str], ruleset_file: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    check_golden(name, run([*args, "--ruleset", str(ruleset_file)], capsys), request)


def test_explain_shares_and_reasons(ruleset_file: Path) -> None:
    snapshot = build_snapshot(load_objects(EXAMPLE))
    policies = decide(snapshot, make_config(snapshot, node_name="node-a", cluster_cidr="10.244.0.0/16"))
    ex = explain_service(parse(ruleset_file.read_text()), "demo/shop", policies)
    (port,) = ex.ports
    svc, svl = port.chains
    assert [round(b.share, 4) for b in svc.branches] == [0.5, 0.5]
    assert [(b.endpoint, b.share) for b in svl.branches] == [("10.244.1.11:8080", 1.0)]
    assert {f["kind"] for f in port.frontends} == {"cluster IP", "nodePort"}
    reasons = {e["endpoint"]: e["why"] for e in port.endpoints}
    assert "Local policy" in reasons["10.244.1.11:8080"]
    assert "Local policy" not in reasons["10.244.2.11:8080"]
    broken = explain_service(parse(ruleset_file.read_text()), "demo/broken", policies)
    assert broken.ports[0].endpoints[0]["why"] == "not used: not ready"
    assert "REJECT" in format_explanation(broken)


def test_unknown_service_warns(ruleset_file: Path) -> None:
    ex = explain_service(parse(ruleset_file.read_text()), "demo/nothing", None)
    assert ex.ports == [] and "no rule names Service demo/nothing" in ex.warnings[0]


def test_bad_service_name_is_one_line(ruleset_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["explain", "service", "Not A Name", "--ruleset", str(ruleset_file)])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "clew: error: 'Not A Name' is not NS/NAME or NS/NAME:PORT"
