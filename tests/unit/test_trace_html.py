"""``clew trace --html`` and ``clew explain service --html``: a self-contained page with the path as
a tree — the pure layout here, and what a real browser (headless Chromium, Debian's) drew."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clew.cli.main import main
from clew.model.from_kube import build_snapshot
from clew.proxy.inputs import make_config
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide
from clew.sources.manifests import load_objects

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "clew" / "examples" / "demo.yaml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    snapshot = build_snapshot(load_objects(EXAMPLE))
    config = make_config(snapshot, node_name="node-a", cluster_cidr="10.244.0.0/16")
    path = tmp_path_factory.mktemp("html") / "node-a.rules"
    path.write_text(render(decide(snapshot, config), config).text(standalone=True))
    return path


def run(args: list[str]) -> None:
    try:
        main(args)
    except SystemExit as e:
        assert not e.code


def trace_page(rules: Path, tmp_path: Path) -> str:
    out = tmp_path / "t.html"
    run(["trace", "--ruleset", str(rules), "--src", "10.244.1.5", "--dst", "10.96.0.80", "--iif", "cni0",
         "--html", str(out)])  # fmt: skip
    return out.read_text()


def nodes(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<g class="node (\w+)" data-kind="\w+" data-label="([^"]*)"', page)


def test_trace_page_is_self_contained_and_draws_the_branches(rules: Path, tmp_path: Path) -> None:
    page = trace_page(rules, tmp_path)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched
    drawn = nodes(page)
    dnat = [label for kind, label in drawn if kind == "dnat"]
    assert len(dnat) == 3 and all("DNAT to 10.244." in label for label in dnat)
    leaves = [label for kind, label in drawn if kind in ("accept", "uncertain")]
    assert len(leaves) == 3 and all(label.startswith("IF assumed: delivered") for label in leaves)
    assert page.count(">33.3%<") >= 3  # the three branches of the Service's chain
    assert "<title>-A KUBE-SEP-" in page  # the rule text, shown on hover


def test_explain_page_draws_the_endpoints_with_their_shares(rules: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.html"
    run(["explain", "service", "demo/web", "--ruleset", str(rules), "--html", str(out)])
    page = out.read_text()
    endpoints = [label for kind, label in nodes(page) if kind == "dnat"]
    assert sorted(endpoints) == ["10.244.1.10:8080", "10.244.2.10:8080", "10.244.3.10:8080"]
    assert page.count(">33.3%<") == 3


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_a_real_browser_draws_every_node(rules: Path, tmp_path: Path) -> None:
    page = trace_page(rules, tmp_path)
    path = tmp_path / "t.html"
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    count = len(nodes(page))
    assert f'data-nodes="{count}"' in dom
    # the page's script ran and found every node laid out with a non-empty box
    assert re.search(rf'data-drawn="{count}"', dom), dom[:500]
