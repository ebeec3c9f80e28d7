"""How much CPU an idle agent burns while it watches a large objects folder.

``python -m clew.bench.idle --services 5000`` writes N Service files and N EndpointSlice files
(`synthetic.objects`) into a temporary folder, starts ``clew agent --objects`` for a throwaway
network namespace (the agent itself runs inside it, as the lab's do, so its listeners never touch
the caller's namespace), waits until it has synced every Service, lets it settle, and reads its
``/proc/PID/stat`` utime+stime (and its reaped children's, the iptables processes of the intact
checks) over a window. Prints one JSON line: the share of one core used while nothing changed.

Not a timed test: a measurement to quote in notes (the issue's target is ≤ 1% of a core).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from clew.bench import synthetic
from clew.kernel import netns

CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
hostnameOverride: node-0
clusterCIDR: 10.244.0.0/16
iptables:
  minSyncPeriod: 0s
  syncPeriod: 30s
"""


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) of ``pid``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
    children = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    return own, children


def write_folder(root: Path, services: int) -> int:
    """One file per object; returns how many files were written."""
    count = 0
    for obj in synthetic.objects(services):
        kind = "services" if obj["kind"] == "Service" else "slices"
        name = obj["metadata"]["name"]
        (root / kind).mkdir(parents=True, exist_ok=True)
        (root / kind / f"{name}.json").write_text(json.dumps(obj))
        count += 1
    return count


def measure(services: int, window: float, settle: float, prefix: str = "has-idle") -> dict[str, Any]:
    ns = f"{prefix}-{secrets.token_hex(2)}"
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    proc: subprocess.Popen[bytes] | None = None
    netns.create(ns)
    try:
        files = write_folder(work / "objects", services)
        (work / "kube-proxy.yaml").write_text(CONFIG)
        state = work / "state"
        argv = [sys.executable, "-m", "clew", "agent", "--config", str(work / "kube-proxy.yaml"),
                "--objects", str(work / "objects"), "--netns", ns, "--state-dir", str(state)]  # fmt: skip
        log = open(work / "agent.log", "wb")  # noqa: SIM115 - handed to the child
        proc = netns.spawn(ns, argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        end = time.monotonic() + 300
        while True:
            try:
                status = json.loads((state / "status.json").read_text())
            except (OSError, ValueError):
                status = {}
            if status.get("ok") and status.get("service_ports") == services:
                break
            if proc.poll() is not None or time.monotonic() > end:
                tail = (work / "agent.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the agent did not sync {services} Services: {tail}")
            time.sleep(0.2)
        time.sleep(settle)  # the first sync's garbage collection and the like are not "idle"
        own0, kids0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        time.sleep(window)
        own1, kids1 = cpu_seconds(proc.pid)
        elapsed = time.monotonic() - t0
        return {
            "services": services,
            "files": files,
            "window_s": round(elapsed, 2),
            "agent_cpu_percent": round(100 * (own1 - own0) / elapsed, 2),
            "with_children_cpu_percent": round(100 * (own1 - own0 + kids1 - kids0) / elapsed, 2),
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        netns.delete(ns)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=5000, help="Service files (and as many slice files)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds waited after the first sync")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("clew.bench.idle needs root (a network namespace for the agent)", file=sys.stderr)
        return 2
    print(json.dumps(measure(args.services, args.window, args.settle)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
