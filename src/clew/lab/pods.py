"""Pods in the lab: a network namespace wired by ``clew-cni`` exactly as a container runtime
does it, running the built-in echo server.

ADD: the runtime (here, this module) creates the pod's namespace, then execs the plugin inside
the *node's* namespace with ``CNI_COMMAND=ADD``, ``CNI_NETNS=/run/netns/<pod>``, ``CNI_IFNAME``
and the network config on stdin, and reads the address from the result. DEL is the reverse,
before the namespace goes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clew.kernel import netns
from clew.lab.procs import identify
from clew.lab.state import Pod

IFNAME = "eth0"
NETWORK_NAME = "clew-lab"


class PodError(Exception):
    """A pod that could not be created; the message names it and the CNI error."""


def cni_plugin() -> list[str]:
    """The plugin executable next to this interpreter (the venv's ``clew-cni``)."""
    exe = Path(sys.executable).parent / "clew-cni"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("clew-cni")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from clew.cni.plugin import main; sys.exit(main())"]


def cni_config(node_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.1.0",
        "name": NETWORK_NAME,
        "type": "clew",
        "subnetFile": str(node_dir / "subnet.env"),
        "dataDir": str(node_dir / "ipam"),
        "bridge": "cni0",
        "hairpinMode": True,
        "agentSocket": str(node_dir / "cni.sock"),  # the node's agent does the work (clew.cni.client)
    }


def _cni(command: str, node_netns: str, node_dir: Path, container_id: str, pod_netns: str | None) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_IFNAME": IFNAME,
        "CNI_PATH": str(Path(cni_plugin()[0]).parent),
    }
    if pod_netns is not None:
        env["CNI_NETNS"] = f"/run/netns/{pod_netns}"
    proc = subprocess.run(
        netns.exec_argv(node_netns, cni_plugin()),
        input=json.dumps(cni_config(node_dir)),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        try:
            err = json.loads(proc.stdout)
            detail = f"{err.get('msg', '')} {err.get('details', '')}".strip()
        except json.JSONDecodeError:
            detail = (proc.stdout + proc.stderr).strip()
        raise PodError(f"clew-cni {command} for {container_id} failed: {detail}")
    return proc.stdout


def create(pod: Pod, node_netns: str, node_dir: Path, log_dir: Path) -> Pod:
    """Namespace, CNI ADD, echo server; returns the pod with its IP and server pid."""
    netns.create(pod.netns)
    try:
        out = json.loads(_cni("ADD", node_netns, node_dir, pod.container_id, pod.netns))
        pod.ip = out["ips"][0]["address"].split("/")[0]
        pod.pid = _start_echo(pod, log_dir)
        found = identify(pod.pid)
        pod.start = found.start if found else 0
    except BaseException:
        delete(pod, node_netns, node_dir)
        raise
    return pod


def delete(pod: Pod, node_netns: str, node_dir: Path) -> None:
    """CNI DEL (releases the IP even if the namespace is already gone), then the namespace."""
    try:
        _cni("DEL", node_netns, node_dir, pod.container_id, pod.netns if netns.exists(pod.netns) else None)
    finally:
        netns.delete(pod.netns)


def _start_echo(pod: Pod, log_dir: Path) -> int:
    ports = sorted(set(pod.ports.values())) or [8080]
    argv = [sys.executable, "-m", "clew.lab.echo", "serve", "--name", pod.name]
    for port in ports:
        argv += ["--port", str(port)]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{pod.name}.log"
    with open(log_path, "wb") as log:
        proc = netns.spawn(pod.netns, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 10.0
    while True:  # the server prints "ready" once its sockets are bound
        if log_path.read_bytes().startswith(b"ready"):
            return proc.pid
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            text = log_path.read_text(errors="replace").strip()
            raise PodError(f"echo server in pod {pod.name} did not start: {text or 'no output'}")
        time.sleep(0.01)
