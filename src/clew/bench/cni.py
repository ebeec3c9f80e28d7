"""``clew bench cni``: ADD and DEL latency of ``clew-cni`` beside the reference plugins.

The reference is what flannel delegates to: containernetworking-plugins' ``bridge`` with
``host-local`` IPAM (Debian's ``containernetworking-plugins``, in ``/usr/lib/cni``), configured
to do the same work — bridge with the gateway address, veth with hairpin, one address, one route
via the gateway (``0.0.0.0/1``: the pod's default route is clew's).

Both run in one throwaway node namespace into the same N throwaway pod namespaces (clew-cni
adds ``eth0`` on bridge ``cni0``, the reference ``eth1`` on ``cni1``, each with its own subnet and
store). Each plugin is exec'ed the way a runtime does it, from a driver process already inside
the node namespace, so the figures are the plugins' own: process start, imports and kernel work,
nothing of ``ip netns exec``. The calls interleave (clew first for even pods, the reference first
for odd ones) so machine noise hits both alike; one warm-up ADD/DEL of each is not counted.
Target: clew's p50 ≤ 2× the reference's.

By default clew-cni runs as in production: the node agent serves CNI requests on a unix socket
(`clew.agent.cni_server`, here a separate process in the node namespace) and ``clew-cni`` is
the thin client of `clew.cni.client`. ``standalone=True`` measures the plugin doing all the work
in its own process instead.
"""

from __future__ import annotations

import compileall
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import clew
from clew.kernel import netns

REFERENCE_DIR = Path("/usr/lib/cni")
CNI_VERSION = "1.0.0"  # the newest both speak (Debian's plugins are 1.1.1)
SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"


@dataclass(frozen=True)
class CniBench:
    pods: int
    clew_add_p50_ms: float
    clew_add_p95_ms: float
    clew_del_p50_ms: float
    clew_del_p95_ms: float
    ref_add_p50_ms: float
    ref_add_p95_ms: float
    ref_del_p50_ms: float
    ref_del_p95_ms: float
    add_ratio: float  # clew p50 / reference p50
    del_ratio: float
    reference: str
    mode: str = "via the node agent's socket"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _plugin_path() -> str:
    beside = Path(sys.executable).with_name("clew-cni")
    found = str(beside) if beside.exists() else shutil.which("clew-cni")
    if not found:
        raise RuntimeError("clew-cni is not installed (pip install -e . puts it beside python)")
    return found


def _reference_version() -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else "unknown version"


def _configs(state: Path, standalone: bool) -> tuple[str, str]:
    (state / "subnet.env").write_text(SUBNET_ENV)
    clew_conf = {
        "cniVersion": CNI_VERSION,
        "name": "clewnet",
        "type": "clew",
        "subnetFile": str(state / "subnet.env"),
        "dataDir": str(state / "clew"),
    }
    if not standalone:
        clew_conf["agentSocket"] = str(state / "cni.sock")
    ref_conf = {
        "cniVersion": CNI_VERSION,
        "name": "refnet",
        "type": "bridge",
        "bridge": "cni1",
        "isGateway": True,
        "hairpinMode": True,
        "mtu": 1450,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.2.0/24"}]],
            "routes": [{"dst": "0.0.0.0/1"}],  # one route via the gateway, as clew's default route
            "dataDir": str(state / "ref"),
        },
    }
    return json.dumps(clew_conf), json.dumps(ref_conf)


def _job(plugin: str, command: str, conf: str, pod_ns: str, container: str, ifname: str) -> dict[str, object]:
    return {
        "argv": [plugin],
        "stdin": conf,
        "env": {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": f"/run/netns/{pod_ns}",
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(REFERENCE_DIR),
        },
    }


def _drive_in(node_ns: str, jobs: list[dict[str, object]], socket: Path | None) -> list[float]:
    """Run the jobs in order from a driver inside ``node_ns``; their wall times in seconds."""
    doc = {"jobs": jobs, "socket": str(socket) if socket else None}
    proc = netns.run(node_ns, [sys.executable, "-m", "clew.bench.cni"], input=json.dumps(doc), timeout=600)
    times = json.loads(proc.stdout)
    if not isinstance(times, list) or len(times) != len(jobs):
        raise RuntimeError(f"bench driver returned {proc.stdout[:200]!r}")
    return [float(t) for t in times]


def run(pods: int = 20, standalone: bool = False) -> CniBench:
    plugin = _plugin_path()
    for name in ("bridge", "host-local"):
        if not (REFERENCE_DIR / name).exists():
            raise RuntimeError(f"{REFERENCE_DIR / name} missing: apt-get install containernetworking-plugins")
    # Measure the plugin as installed, with its bytecode cached (PYTHONDONTWRITEBYTECODE would
    # otherwise make every run compile every module).
    compileall.compile_dir(str(Path(clew.__file__).parent), quiet=2)
    prefix = f"clewc-{secrets.token_hex(2)}"
    node = f"{prefix}-node"
    pod_names = [f"{prefix}-p{i}" for i in range(pods + 1)]  # p0 is the warm-up
    state = Path(tempfile.mkdtemp(prefix="clew-bench-cni-"))
    try:
        netns.run_batch(None, [f"netns add {n}" for n in (node, *pod_names)])
        clew_conf, ref_conf = _configs(state, standalone)
        adds: list[dict[str, object]] = []
        dels: list[dict[str, object]] = []
        for i, pod in enumerate(pod_names):
            pair_add = [_job(plugin, "ADD", clew_conf, pod, f"c{i}", "eth0")]
            pair_add.append(_job(str(REFERENCE_DIR / "bridge"), "ADD", ref_conf, pod, f"r{i}", "eth1"))
            pair_del = [{**j, "env": {**j["env"], "CNI_COMMAND": "DEL"}} for j in pair_add]  # type: ignore[dict-item]
            if i % 2:
                pair_add.reverse()
                pair_del.reverse()
            adds += pair_add
            dels += pair_del
        times = _drive_in(node, adds + dels, None if standalone else state / "cni.sock")
    finally:
        for name in (node, *pod_names):
            netns.delete(name)
        shutil.rmtree(state, ignore_errors=True)
    return _summarise(pods, times, "standalone" if standalone else "via the node agent's socket")


def _summarise(pods: int, times: list[float], mode: str) -> CniBench:
    n = pods + 1
    add_t, del_t = times[: 2 * n], times[2 * n :]

    def split(ts: list[float]) -> tuple[list[float], list[float]]:
        clew_t, ref_t = [], []
        for i in range(1, n):  # skip the warm-up pod
            a, b = ts[2 * i], ts[2 * i + 1]
            first_is_clew = i % 2 == 0
            clew_t.append(a if first_is_clew else b)
            ref_t.append(b if first_is_clew else a)
        return clew_t, ref_t

    (ca, ra), (cd, rd) = split(add_t), split(del_t)

    def ms(values: list[float], q: float) -> float:
        return round(_quantile(values, q) * 1000, 1)

    return CniBench(
        pods=pods,
        clew_add_p50_ms=ms(ca, 0.5),
        clew_add_p95_ms=ms(ca, 0.95),
        clew_del_p50_ms=ms(cd, 0.5),
        clew_del_p95_ms=ms(cd, 0.95),
        ref_add_p50_ms=ms(ra, 0.5),
        ref_add_p95_ms=ms(ra, 0.95),
        ref_del_p50_ms=ms(rd, 0.5),
        ref_del_p95_ms=ms(rd, 0.95),
        add_ratio=round(_quantile(ca, 0.5) / _quantile(ra, 0.5), 2),
        del_ratio=round(_quantile(cd, 0.5) / _quantile(rd, 0.5), 2),
        reference=f"{REFERENCE_DIR}/bridge + host-local (containernetworking-plugins {_reference_version()})",
        mode=mode,
    )


def _drive() -> None:
    """Driver, run inside the node namespace: exec each job, print the wall times as JSON.

    A failing job stops the run with its output on stderr, so a broken plugin is never timed.
    """
    doc = json.load(sys.stdin)
    jobs, socket = doc["jobs"], doc["socket"]
    server = None
    if socket:  # the node agent's CNI server, a process of its own as in production
        server = subprocess.Popen([sys.executable, "-m", "clew.agent.cni_server", socket], stdout=subprocess.PIPE)
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the CNI server did not start")
    try:
        _run_jobs(jobs)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


def _run_jobs(jobs: list[dict[str, Any]]) -> None:
    times = []
    for job in jobs:
        env = {**os.environ, **job["env"]}
        start = time.perf_counter()
        proc = subprocess.run(job["argv"], input=job["stdin"], env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            what = f"{job['env']['CNI_COMMAND']} {job['argv'][0]} {job['env']['CNI_CONTAINERID']}"
            sys.stderr.write(f"{what} failed (exit {proc.returncode}): {proc.stdout.strip()} {proc.stderr.strip()}\n")
            raise SystemExit(1)
    json.dump(times, sys.stdout)


if __name__ == "__main__":
    _drive()
