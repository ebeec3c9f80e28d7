"""``clew explain service`` on an older kube-proxy layout (before 1.24: KUBE-XLB for Local traffic,
the masquerade mark set by a frontend rule in KUBE-SERVICES), with the port given by number, and
exit 1 when no rule names the Service."""

from __future__ import annotations

from pathlib import Path

import pytest

from clew.cli.main import main
from clew.netfilter.iptables_save import parse
from clew.trace.explain import explain_service

OLD = (Path(__file__).parent / "data" / "kube_proxy_before_1_24.iptables").read_text()


def test_older_layout_with_the_port_by_number() -> None:
    ex = explain_service(parse(OLD), "default/web:80")
    assert ex.query == "default/web:80" and [p.spn for p in ex.ports] == ["default/web:http"]
    (port,) = ex.ports
    assert [(f["kind"], f["address"], f["chain"]) for f in port.frontends] == [
        ("cluster IP", "10.96.0.5:80", "KUBE-SVC-X"),
        ("nodePort", "any local address:30080", "KUBE-XLB-X"),
    ]
    assert any("masquerade mark for sources not in 10.244.0.0/16" in text for text in port.external)
    chains = {c.chain: c for c in port.chains}
    assert [(b.endpoint, round(b.share, 3)) for b in chains["KUBE-SVC-X"].branches] == [
        ("10.244.1.5:8080", 0.5),
        ("10.244.2.7:8080", 0.5),
    ]
    xlb = chains["KUBE-XLB-X"]
    assert "KUBE-XLB" in xlb.kind and [(b.endpoint, b.share) for b in xlb.branches] == [("10.244.1.5:8080", 1.0)]


def test_cli_exits_1_when_the_service_is_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.txt"
    rules.write_text(OLD)
    with pytest.raises(SystemExit) as e:
        main(["explain", "service", "default/nothing", "--ruleset", str(rules)])
    assert e.value.code == 1
    assert "no rule names Service default/nothing" in capsys.readouterr().out
    main(["explain", "service", "default/web:80", "--ruleset", str(rules)])  # found: exit 0
