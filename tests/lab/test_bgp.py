"""The bgp backend in a whole lab: 4 nodes over 2 segments (two nodes each) behind a router
that runs BIRD as their route reflector (``clew lab up --backend bgp --underlay routed``), and
a second lab where the router is an external (eBGP) peer and every session has BFD.

Shown with real agents, real BIRDs and real packets: pod-to-pod within and across segments
without NAT, MTU 1500 (a don't-fragment probe of 1472 bytes passes: nothing encapsulates), a
ClusterIP reaching pods on every node, routes that are BIRD's (``proto bird``; on a shared
segment straight to the owner, across segments through the router), BIRD left running (and
forwarding) while an agent restarts (a long-lived TCP connection across the restarted nodes sees
no error and no stall), a BIRD that died started again by its agent's per-turn check, a rogue
BIRD's announcements (0.0.0.0/0, a prefix outside the cluster network, a more specific prefix,
an unassigned subnet, another node's subnet) never installed on any node, a node taken down
withdrawn everywhere within the hold time (≤ 1 s with BFD) while a stream between two other
nodes never stops, and ``clew lab down`` ending every BIRD. Withdrawal times are measured by
polling every namespace's routes (printed; run with ``-s`` to see them).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from labkit import PORT, Lab, app, assert_matrix, df_ping, pids_alive, pod_mtu, poll_until, reap, sweep

from clew.kernel import bird, netns
from clew.lab import build, supervisor
from clew.lab.bgp import ExtraPeer, reconfigure_router
from clew.lab.plan import LabConfig, prefix
from clew.lab.state import LabState, Pod, state_dir
from clew.lab.status import lab_status, render_status

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("bird") is None, reason="bird (Debian bird2) is not installed"),
]
WEB = "web"
STREAM_PORT = 5201  # a netperf echo server in a pod (the app's servers use PORT)
ECHO_CLIENT = """
import json, signal, socket, sys, time
stop = False
def on_term(signum, frame):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
sock.sendall(b"R")  # netperf: echo every byte until EOF
sock.settimeout(float(sys.argv[3]))
echoes, worst, error = 0, 0.0, None
print("ready", flush=True)
try:
    while not stop:
        sent = time.monotonic()
        sock.sendall(b"x")
        if sock.recv(1) != b"x":
            raise OSError("the echo stopped")
        worst, echoes = max(worst, time.monotonic() - sent), echoes + 1
        time.sleep(0.01)
except OSError as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"echoes": echoes, "worst_s": worst, "error": error}), flush=True)
"""
ROGUE = ("0.0.0.0/0", "10.99.0.0/16", "10.244.1.128/25", "10.244.7.0/24", "10.244.2.0/24")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    name = next(n for n in (f"bg{secrets.token_hex(2)}" for _ in range(100))
                if not netns.list_names(prefix(n)) and not state_dir(n).exists())  # fmt: skip
    lab = Lab(LabState(LabConfig(name=name, nodes=4, underlay="routed", backend="bgp")))
    try:
        build.up(lab.state, lab.root)
        lab.apply(app(WEB, 4))
        yield lab
    finally:
        lab.close()  # also checks that no process of the lab (BIRDs included) is left


def bird_routes(ns: str) -> dict[str, str | None]:
    """dst → gateway of the ``proto bird`` routes in ``ns``."""
    out = netns.run(ns, ["ip", "-j", "-4", "route", "show", "proto", "bird"]).stdout
    return {r["dst"]: r.get("gateway") for r in json.loads(out or "[]")}


def expected_routes(lab: Lab, node: str) -> dict[str, str | None]:
    """Another node's subnet: straight to it on a shared segment, else through the router."""
    plan = lab.state.plan
    me = plan.node(node)
    same = {n.name for n in plan.nodes if plan.segment_of(n.name) == plan.segment_of(node)}
    return {n.pod_cidr: (n.ip if n.name in same else me.gateway) for n in plan.nodes if n.name != node}


def all_routes_learned(lab: Lab) -> bool:
    return all(bird_routes(n.netns) == expected_routes(lab, n.name) for n in lab.state.plan.nodes)


def bird_pid(lab: Lab, node: str) -> int | None:
    return bird.running_pid(lab.root / "nodes" / node / "bird.pid", lab.state.plan.node(node).netns)


def test_routes_are_birds_and_pods_talk_natively(lab: Lab) -> None:
    poll_until(lambda: all_routes_learned(lab), 30, "every node learns the others' subnets via its router")
    pods = lab.pods(WEB)
    assert len({p.node for p in pods}) == 4
    assert_matrix(pods)  # within and across segments, the receiver sees the sender's own address
    by_node = {p.node: p for p in pods}
    src = by_node["node-1"]
    assert pod_mtu(src.netns) == 1500
    for dst in (by_node["node-2"], by_node["node-3"]):  # same segment, across the router
        fits = df_ping(src.netns, dst.ip, 1472)  # 1472 + 8 ICMP + 20 IP = 1500: no encapsulation
        assert fits.returncode == 0, fits.stdout + fits.stderr
        assert df_ping(src.netns, dst.ip, 1473).returncode != 0


def test_lab_status_shows_each_nodes_bgp_sessions(lab: Lab) -> None:
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned")
    doc = lab_status(lab.state, lab.root)
    for node in doc["nodes"]:
        (session,) = node["bgp"]  # its one session: to its router
        assert session["state"] == "up" and session["info"] == "Established", node
    text = render_status(doc)
    assert "BGP SESSION" in text and text.count("Established") == 4


def test_cluster_ip_reaches_pods_on_every_node(lab: Lab) -> None:
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned")
    pods = lab.pods(WEB)
    vip = f"{lab.cluster_ip(WEB)}:80"
    (result,) = sweep(pods[0].netns, [vip], count=30)
    assert all(a["ok"] for a in result["attempts"]), result["summary"]
    node_of = {p.name: p.node for p in pods}
    assert {node_of[a["server"]] for a in result["attempts"]} == {p.node for p in pods}


def test_bird_keeps_running_and_forwarding_while_the_agent_restarts(lab: Lab) -> None:
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned")
    before = {n.name: bird_pid(lab, n.name) for n in lab.state.plan.nodes}
    assert all(before.values()), before
    lab.kill_agents()  # the supervisor starts new ones after a back-off
    assert {n: bird_pid(lab, n) for n in before} == before
    assert all_routes_learned(lab)  # nothing withdrawn while no agent runs
    pods = lab.pods(WEB)
    assert_matrix(pods)
    build.wait_synced(lab.state, lab.root, converged=True)
    status = json.loads((lab.root / "nodes" / "node-1" / "status.json").read_text())
    assert status["podnet"]["bgp"] == {"pid": before["node-1"], "action": "unchanged", "sessions": 1}


def _started(proc: subprocess.Popen[bytes], what: str, deadline_s: float = 10.0) -> None:
    """Wait for ``proc``'s ``ready`` line (a deadline, not a sleep)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(deadline_s) or not proc.stdout.readline().startswith(b"ready"):
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"{what} did not start")


@contextlib.contextmanager
def echo_stream(src: Pod, dst: Pod, stall_s: float = 2.0) -> Iterator[Callable[[], dict[str, Any]]]:
    """One TCP connection from ``src`` to ``dst`` echoing a byte every 10 ms; yields ``stop()``,
    which ends it and returns ``{"echoes", "worst_s", "error"}`` (a round trip longer than
    ``stall_s`` is an error)."""
    server = netns.spawn(dst.netns, [sys.executable, "-m", "clew.bench.netperf", "serve", "--port", str(STREAM_PORT)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    client: subprocess.Popen[bytes] | None = None
    try:
        _started(server, f"netperf server in {dst.name}")
        client = netns.spawn(src.netns, [sys.executable, "-c", ECHO_CLIENT, dst.ip, str(STREAM_PORT), str(stall_s)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        _started(client, f"echo client in {src.name}")
        running = client

        def stop() -> dict[str, Any]:
            running.send_signal(signal.SIGTERM)
            out, _ = running.communicate(timeout=10)
            result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
            return result

        yield stop
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait(10)


def test_a_tcp_stream_across_nodes_survives_their_agents_restarting(lab: Lab) -> None:
    """One TCP connection from a pod on node-1 to a pod on node-3 (across the router) echoes a
    byte every 10 ms while node-1's agent and then node-3's are restarted (``clew lab restart``'s
    way): BIRD keeps running, the new agents' first syncs keep BIRD's routes, so the connection
    sees no error and no round trip stalls as long as the client's 2 s timeout. (On this
    underlay the router would forward a node's pod packets even without the node's own routes,
    so the routes are checked as well: an agent deleting ``proto bird`` routes fails that check.)"""
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned")
    pods = {p.node: p for p in lab.pods(WEB)}
    birds = {n: bird_pid(lab, n) for n in ("node-1", "node-3")}
    with echo_stream(pods["node-1"], pods["node-3"]) as stop:
        restarts = [build.restart_agent(lab.state, lab.root, node) for node in ("node-1", "node-3")]
        assert all(old != new for old, new in restarts), restarts
        assert {n: bird_pid(lab, n) for n in birds} == birds  # BIRD itself never restarted
        routes_kept = all_routes_learned(lab)
        result = stop()
    print(f"stream across 2 agent restarts: {result}")
    assert result["error"] is None, result
    assert result["echoes"] > 10, result
    assert routes_kept, "a new agent's first sync touched BIRD's routes"


def test_a_crashed_bird_is_started_again_by_its_running_agent(lab: Lab) -> None:
    """node-1's BIRD dies (SIGKILL) under a running agent: its kernel keeps its routes and the
    router keeps node-1's subnet (graceful restart: stale for up to 5 s), pods still talk, and
    the agent's per-turn check starts a new BIRD well before the next sync (logged); the
    routes are fresh again."""
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned")
    old = bird_pid(lab, "node-1")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    new = poll_until(lambda: (pid := bird_pid(lab, "node-1")) != old and pid, 5, "the agent starts BIRD again")
    print(f"BIRD restarted by its agent after {time.monotonic() - killed:.2f}s")
    assert all_routes_learned(lab)  # nothing was lost meanwhile
    log = (lab.root / "nodes" / "node-1" / "agent.log").read_text()
    assert f"bird (pid {old}) was not running; started it again (pid {new})" in log
    assert_matrix(lab.pods(WEB))
    poll_until(lambda: all_routes_learned(lab) and session_established(lab, "node-1"), 30, "routes learned again")


def session_established(lab: Lab, node: str) -> bool:
    text = bird.show(lab.state.plan.node(node).netns, lab.root / "nodes" / node / "bird.ctl", "protocols")
    return "Established" in text


def test_rogue_announcements_are_never_installed(lab: Lab) -> None:
    """A rogue BIRD peers with a router that trusts it (and prefers its routes); every node's
    import filter still refuses all it announces."""
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned")
    plan, root = lab.state.plan, lab.root
    assert plan.router_netns is not None
    rogue_ns = f"{plan.prefix}rogue"  # a lab namespace: clew lab down removes it and its BIRD
    netns.create(rogue_ns)
    netns.run_batch(plan.router_netns, [f"link add rogue type veth peer name eth0 netns {rogue_ns}",
                                        "addr add 192.168.99.1/24 dev rogue", "link set rogue up"])  # fmt: skip
    netns.run_batch(rogue_ns, ["link set lo up", "addr add 192.168.99.2/24 dev eth0", "link set eth0 up"])
    folder = root / "rogue"
    folder.mkdir()
    statics = "".join(f"  route {p} blackhole;\n" for p in ROGUE)
    (folder / "bird.conf").write_text(
        "router id 192.168.99.2;\nprotocol device {}\n"
        f"protocol static {{\n  ipv4;\n{statics}}}\n"
        "protocol bgp {\n  local 192.168.99.2 as 64512;\n  neighbor 192.168.99.1 as 64512;\n  direct;\n"
        "  connect delay time 1;\n  ipv4 { import none; export all; };\n}\n"
    )
    rogue_pid = bird.start(rogue_ns, folder / "bird.conf", folder / "bird.ctl", folder / "bird.pid")
    reconfigure_router(plan, root, (ExtraPeer("rogue", "192.168.99.2", "192.168.99.1", local_pref=200),))

    def refused_everywhere() -> bool:
        for n in plan.nodes:
            session = "n_peer_" + n.gateway.replace(".", "_")  # the node's one session: to its router
            text = bird.show(n.netns, root / "nodes" / n.name / "bird.ctl", "protocols", "all", session)
            updates = next(line.split() for line in text.splitlines() if "Import updates:" in line)
            if int(updates[4]) < len(ROGUE):  # received, rejected, *filtered*, ignored, accepted
                return False
        return True

    poll_until(refused_everywhere, 30, "every node received and filtered the rogue's routes")
    for n in plan.nodes:
        got = bird_routes(n.netns)
        assert not set(got) & (set(ROGUE) - {n.pod_cidr for n in plan.nodes}), (n.name, got)
        want = expected_routes(lab, n.name)
        assert set(got) <= set(want), (n.name, got)  # only real nodes' subnets
        assert all(gw == want[dst] for dst, gw in got.items()), (n.name, got)  # never via the rogue
        assert "192.168.99.2" not in netns.run(n.netns, ["ip", "-4", "route"]).stdout
    assert pids_alive({rogue_pid}) == {rogue_pid}  # ended by lab down, checked by lab.close()
    reconfigure_router(plan, root, ())  # the router forgets the rogue: the real routes come back
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned again without the rogue")


def withdrawal_times(where: dict[str, str], cidr: str, started: float, deadline_s: float) -> dict[str, float]:
    """Poll every namespace of ``where`` (name → namespace) until none routes to ``cidr``; the
    seconds from ``started`` at which each stopped (TimeoutError naming those that still route)."""
    gone: dict[str, float] = {}

    def all_gone() -> bool:
        for name, ns in where.items():
            if name not in gone and cidr not in bird_routes(ns):
                gone[name] = round(time.monotonic() - started, 2)
        return len(gone) == len(where)

    try:
        poll_until(all_gone, deadline_s, f"{cidr} withdrawn everywhere", interval=0.01)
    except TimeoutError:
        raise AssertionError(f"{cidr} still routed after {deadline_s:g}s by {set(where) - set(gone)} "
                             f"(withdrawn: {gone})") from None  # fmt: skip
    return gone


@contextlib.contextmanager
def supervisor_paused(lab: Lab) -> Iterator[None]:
    """The lab's supervisor stopped (SIGSTOP): a killed agent stays dead, as on a node that is off."""
    proc = supervisor.supervisor_proc(lab.root)
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def take_down(lab: Lab, node: str, *, link_first: bool) -> float:
    """Node ``node`` goes away: its agent and its BIRD killed, its link down (``link_first``: the
    link before BIRD, as a power cut — no TCP FIN reaches the peer; else BIRD first, as a
    crash before the link goes). Returns the monotonic time at which it was gone."""
    n = lab.state.plan.node(node)
    agent, pid = lab.agents()[node], bird_pid(lab, node)
    assert pid is not None
    os.kill(agent, signal.SIGKILL)
    reap({agent})
    poll_until(lambda: not pids_alive({agent}), 5, f"{node}'s agent killed")
    if link_first:
        netns.run_batch(n.netns, ["link set eth0 down"])
        gone = time.monotonic()
        os.kill(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)
        gone = time.monotonic()
        netns.run_batch(n.netns, ["link set eth0 down"])
    return gone


def everywhere_but(lab: Lab, node: str) -> dict[str, str]:
    """Every namespace with BIRD routes except ``node``'s: the other nodes and the router."""
    plan = lab.state.plan
    where = {n.name: n.netns for n in plan.nodes if n.name != node}
    assert plan.router_netns is not None
    return {**where, "router": plan.router_netns}


def test_a_node_taken_down_is_withdrawn_everywhere_while_the_others_talk(lab: Lab) -> None:
    """node-4 goes (agent killed and kept dead, BIRD killed, then its link down): within the
    hold time (≤ 10 s) no node and not the router routes to its subnet, while one TCP stream
    from node-1 to node-3 (across the router) and connections from node-2 to node-3 never fail.
    BIRD's session to the router ended with a FIN, so the router keeps node-4's routes for the
    graceful restart time (5 s) plus up to one reconnection attempt (3 s): 5-8 s.
    Runs last in this lab: node-4 stays down."""
    poll_until(lambda: all_routes_learned(lab) and session_established(lab, "node-4"), 30, "routes learned")
    down = lab.state.plan.node("node-4")
    pods = {p.node: p for p in lab.pods(WEB)}
    probes: list[dict[str, Any]] = []
    stop_probes = threading.Event()

    def probe() -> None:
        while not stop_probes.is_set():
            probes.extend(sweep(pods["node-2"].netns, [f"{pods['node-3'].ip}:{PORT}"], count=5))

    with supervisor_paused(lab), echo_stream(pods["node-1"], pods["node-3"], stall_s=1.0) as stop:
        prober = threading.Thread(target=probe)
        prober.start()
        try:
            started = take_down(lab, "node-4", link_first=False)
            gone = withdrawal_times(everywhere_but(lab, "node-4"), down.pod_cidr, started, 10.0)
        finally:
            stop_probes.set()
            prober.join(60)
        result = stop()
    print(f"node-4 withdrawn after (s): {gone}; stream {result}")
    assert result["error"] is None and result["echoes"] > 10, result
    attempts = [a for r in probes for a in r["attempts"]]
    assert attempts and all(a["ok"] for a in attempts), [a for a in attempts if not a["ok"]]
    assert max(gone.values()) <= 10, gone


def test_mesh_on_the_l2_underlay_and_lab_down_ends_every_bird() -> None:
    """On one segment the nodes form a full iBGP mesh (no router): each learns the others'
    subnets with the owner as next hop; ``clew lab down`` ends every BIRD."""
    name = f"bg{secrets.token_hex(2)}"
    lab = Lab(LabState(LabConfig(name=name, nodes=3, underlay="l2", backend="bgp")))
    try:
        build.up(lab.state, lab.root)
        nodes = lab.state.plan.nodes
        want = {n.name: {m.pod_cidr: m.ip for m in nodes if m != n} for n in nodes}
        poll_until(lambda: all(bird_routes(n.netns) == want[n.name] for n in nodes), 30, "the mesh converges")
        status = json.loads((lab.root / "nodes" / "node-1" / "status.json").read_text())
        assert status["podnet"]["bgp"]["sessions"] == 2
        lab.apply(app(WEB, 3))
        assert_matrix(lab.pods(WEB))
        pids = {bird_pid(lab, n.name) for n in nodes}
        assert None not in pids
    finally:
        lab.close()  # fails if any process of the lab's namespaces (a BIRD) is left
    assert not pids_alive({p for p in pids if p})


def test_mesh_withdraws_a_dead_node_and_a_hung_bird_within_the_hold_time() -> None:
    """On one shared segment (full mesh) node-2's BIRD is killed and its link taken down, node-3's
    BIRD hangs (SIGSTOP) with its link up. node-1 drops both subnets within 10 s: node-2's session
    ended with a closed socket, so its peers keep its routes stale for the graceful restart time
    (5 s by default; with the former 120 s this fails), plus up to 3 s when a reconnection
    attempt is under way as the restart timer ends (``connect retry time 3``); node-3's hold
    timer (6 s) expires, which BIRD does not treat as a restart."""
    name = f"bg{secrets.token_hex(2)}"
    lab = Lab(LabState(LabConfig(name=name, nodes=3, underlay="l2", backend="bgp")))
    hung: int | None = None
    try:
        build.up(lab.state, lab.root)
        nodes = lab.state.plan.nodes
        poll_until(lambda: all(len(bird_routes(n.netns)) == 2 for n in nodes), 30, "the mesh converges")
        observer, dead, stuck = (lab.state.plan.node(f"node-{i}") for i in (1, 2, 3))
        killed, hung = bird_pid(lab, "node-2"), bird_pid(lab, "node-3")
        assert killed is not None and hung is not None
        started = time.monotonic()
        os.kill(killed, signal.SIGKILL)
        netns.run_batch(dead.netns, ["link set eth0 down"])
        os.kill(hung, signal.SIGSTOP)
        gone: dict[str, float] = {}

        def withdrawn() -> bool:
            routes = bird_routes(observer.netns)
            for n in (dead, stuck):
                if n.pod_cidr not in routes:
                    gone.setdefault(n.name, round(time.monotonic() - started, 2))
            return len(gone) == 2

        poll_until(withdrawn, 30, "node-1 withdraws node-2's and node-3's subnets", interval=0.01)
        print(f"withdrawn after (s): {gone}")
        assert max(gone.values()) <= 10, gone  # 120 s with BIRD's default restart time
    finally:
        if hung is not None and pids_alive({hung}):
            os.kill(hung, signal.SIGCONT)
        lab.close()


@pytest.fixture(scope="module")
def ebgp_lab() -> Iterator[Lab]:
    """4 nodes over 2 segments; the router is an external peer (AS 64513); BFD on every session;
    the Service proxy in nftables mode (the reflector lab above runs iptables mode)."""
    name = next(n for n in (f"bg{secrets.token_hex(2)}" for _ in range(100))
                if not netns.list_names(prefix(n)) and not state_dir(n).exists())  # fmt: skip
    cfg = LabConfig(
        name=name, nodes=4, underlay="routed", backend="bgp", bgp_router="ebgp", bfd=True, proxy_mode="nftables"
    )
    lab = Lab(LabState(cfg))
    try:
        build.up(lab.state, lab.root)
        lab.apply(app(WEB, 4))
        yield lab
    finally:
        lab.close()


def bfd_up(lab: Lab) -> bool:
    plan = lab.state.plan
    assert plan.router_netns is not None
    text = bird.show(plan.router_netns, lab.root / "router" / "bird.ctl", "bfd", "sessions")
    return sum(" Up " in f" {line} " for line in text.splitlines()) == len(plan.nodes)


def test_an_ebgp_router_with_bfd_routes_natively(ebgp_lab: Lab) -> None:
    """The external peer puts itself as next hop across segments and keeps the owner on a shared
    segment; the nodes accept exactly the other nodes' subnets (AS path through 64513, our own AS
    in it: ``allow local as``); BFD is up on every session."""
    lab = ebgp_lab
    poll_until(lambda: all_routes_learned(lab), 30, "every node learns the others' subnets from its eBGP peer")
    poll_until(lambda: bfd_up(lab), 10, "BFD up on the router's 4 sessions")
    plan = lab.state.plan
    assert plan.router_netns is not None
    sessions = bird.show(plan.router_netns, lab.root / "router" / "bird.ctl", "protocols", "all", "node_1")
    assert "Neighbor AS:      64512" in sessions and "Local AS:         64513" in sessions, sessions
    pods = lab.pods(WEB)
    assert_matrix(pods)
    by_node = {p.node: p for p in pods}
    fits = df_ping(by_node["node-1"].netns, by_node["node-4"].ip, 1472)
    assert fits.returncode == 0, fits.stdout + fits.stderr


def test_cluster_ip_in_nftables_mode_reaches_pods_across_segments(ebgp_lab: Lab) -> None:
    """Services over the bgp backend in nftables mode: a ClusterIP from a pod on node-1 reaches
    endpoints on every node (both segments), through clew's nftables table (no KUBE-* chains)."""
    lab = ebgp_lab
    poll_until(lambda: all_routes_learned(lab), 30, "routes learned")
    pods = lab.pods(WEB)
    client = next(p for p in pods if p.node == "node-1")
    vip = f"{lab.cluster_ip(WEB)}:80"
    (result,) = sweep(client.netns, [vip], count=40)
    assert all(a["ok"] for a in result["attempts"]), result["summary"]
    node_of = {p.name: p.node for p in pods}
    assert {node_of[a["server"]] for a in result["attempts"]} == {p.node for p in pods}
    node_ns = lab.state.plan.node("node-1").netns
    assert "table ip clew" in netns.run(node_ns, ["nft", "list", "tables"]).stdout
    assert "KUBE-SERVICES" not in netns.run(node_ns, ["iptables-save", "-t", "nat"]).stdout


def test_with_bfd_a_node_taken_down_is_withdrawn_within_a_second(ebgp_lab: Lab) -> None:
    """node-4 loses its link (then its agent and BIRD): BFD (5 × 100 ms) ends the router's
    session with it, the router withdraws node-4's subnet from the other nodes: everywhere within
    1 s, while a stream between node-1 and node-3 goes on. Runs last in this lab."""
    lab = ebgp_lab
    poll_until(lambda: all_routes_learned(lab) and bfd_up(lab), 30, "routes learned, BFD up")
    down = lab.state.plan.node("node-4")
    pods = {p.node: p for p in lab.pods(WEB)}
    with supervisor_paused(lab), echo_stream(pods["node-1"], pods["node-3"], stall_s=1.0) as stop:
        started = take_down(lab, "node-4", link_first=True)
        gone = withdrawal_times(everywhere_but(lab, "node-4"), down.pod_cidr, started, 1.0)
        result = stop()
    print(f"with BFD node-4 withdrawn after (s): {gone}; stream {result}")
    assert result["error"] is None and result["echoes"] > 10, result
