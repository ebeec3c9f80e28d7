"""The agent in production conditions: restarted under traffic, and iptables flushed under it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from labkit import app, pids_alive, poll_until, running_lab, sweep

from clew.kernel import iptables, netns
from clew.lab import build

pytestmark = pytest.mark.lab


def _start_stream(ns: str, dst: str, count: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "clew.lab.echo", "probe", "--dst", dst, "--port", "80",
            "--count", str(count), "--timeout", "1"]  # fmt: skip
    return netns.spawn(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_connection_stream_sees_no_failure_while_the_agent_restarts() -> None:
    with running_lab(nodes=2) as lab:
        lab.apply(app("web", 4))
        client = lab.pods("web")[0]
        node = lab.state.plan.node(client.node)
        cip = lab.cluster_ip("web")
        stream = _start_stream(client.netns, cip, 4000)
        # wait until the stream is under way, then restart that node's agent (SIGTERM, start again)
        poll_until(lambda: netns.pids(client.netns) and True, 5.0, "stream started")
        old, new = build.restart_agent(lab.state, lab.root, node.name)  # returns once the new one synced
        assert old != new and not pids_alive({old})
        out, err = stream.communicate(timeout=120)
        result = json.loads(out)
        errors = result["summary"]["errors"]
        assert not errors, f"{errors} during the restart ({err})"
        assert sum(result["summary"]["by_server"].values()) == 4000


def test_rules_are_back_within_two_seconds_after_a_flush() -> None:
    with running_lab(nodes=2) as lab:
        lab.apply(app("web", 2))
        client = lab.pods("web")[0]
        node = lab.state.plan.node(client.node)
        cip = lab.cluster_ip("web")
        assert all(r["attempts"][0]["ok"] for r in sweep(client.netns, [f"{cip}:80"]))
        iptables.iptables(node.netns, ["-t", "nat", "-F"])
        flushed = time.monotonic()
        assert not iptables.save(node.netns, "nat").count("-A KUBE-SERVICES")

        def working() -> bool:
            return "-A KUBE-SERVICES" in iptables.save(node.netns, "nat") and all(
                r["attempts"][0]["ok"] for r in sweep(client.netns, [f"{cip}:80"])
            )

        poll_until(working, 2.0, "rules back after iptables -t nat -F")
        assert time.monotonic() - flushed <= 2.0


def test_stale_udp_conntrack_entries_go_with_their_endpoint() -> None:
    """kube-proxy's UDP cleanup: a flow DNATed to a pod that went away must not keep its mapping."""
    with running_lab(nodes=1) as lab:
        objects = app("dns", 2)
        objects[1]["spec"]["ports"] = [{"name": "dns", "port": 53, "targetPort": "http", "protocol": "UDP"}]
        lab.apply(objects)
        node = lab.state.plan.nodes[0]
        cip = lab.cluster_ip("dns")
        first, second = lab.pods("dns")
        # UDP from the node to the Service: one conntrack entry per endpoint reached
        probe = netns.run(node.netns, [sys.executable, "-m", "clew.lab.echo", "probe", "--dst", cip, "--port", "53",
                                       "--proto", "udp", "--count", "20", "--timeout", "1"], check=False)  # fmt: skip
        reached = set(json.loads(probe.stdout)["summary"]["by_server"])
        assert reached == {first.name, second.name}

        def entries_to(ip: str) -> int:
            out = netns.run(node.netns, ["conntrack", "-L", "-p", "udp", "--orig-dst", cip], check=False)
            return sum(f"src={ip} " in line for line in out.stdout.splitlines())

        assert entries_to(second.ip) > 0
        objects[0]["spec"]["replicas"] = 1  # dns-1 goes away
        lab.apply(objects)
        assert [p.name for p in lab.pods("dns")] == [first.name]
        poll_until(lambda: entries_to(second.ip) == 0, 5.0, f"conntrack entries to the removed {second.ip}")
        assert entries_to(first.ip) > 0  # the live endpoint's flows are kept
