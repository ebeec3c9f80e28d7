"""A real runtime: containerd + runc run a busybox container whose network comes from clew-cni.

::

    PREFIX-node   containerd, its shims, ctr and clew-cni run here; clew-cni makes cni0 10.244.7.1/24
      veth ⇄ eth0 10.244.7.2   PREFIX-peer: a pod made by calling clew-cni directly
      veth ⇄ eth0 10.244.7.3   the container: ``ctr run --rm --cni`` (netns made by runc)

The container prints its ``eth0`` and pings the gateway and the peer pod; afterwards clew-cni's
DEL (which ``ctr run --rm`` sends after the container's netns is already gone) must have released
the address and the cached result, leaving the peer's alone.

How the machine stays clean:

* **Network.** Every process runs in the throwaway ``PREFIX-node`` namespace via ``nsenter
  --net=`` (not ``ip netns exec``: it remounts ``/sys`` and runc then finds no cgroup mount).
* **Filesystem.** ctr 1.6 has no flag for CNI paths: ``ctr run --cni`` reads
  ``/etc/cni/net.d``, execs plugins from ``/opt/cni/bin`` and caches results in
  ``/var/lib/cni``; and containerd keeps shim sockets, runc state and IO fifos under
  ``/run/containerd`` whatever its config says. So containerd runs in a private mount namespace
  (``unshare --mount --propagation private``) in which ``/etc``, ``/opt``, ``/var/lib`` and
  ``/run`` are overlayfs mounts: lower layer the real directory (read as usual), upper layer in
  the test's temp dir (every write lands there). The conflist and the ``clew`` plugin symlink
  are put into the upper layers before mounting. ctr joins that mount namespace, the node's
  netns and containerd's PID namespace with ``nsenter --target PID --mount --net --pid``.
  containerd reads its own config (not ``/etc/containerd/config.toml``; CRI plugin off) with
  root, state, socket and opt dir in the temp dir, so the image content lives there too.
* **cgroups.** ctr's default cgroup ``/default/ID`` leaves a ``default`` cgroup behind in every
  hierarchy; ``--cgroup /PREFIX-c1`` is one level, which runc removes itself.
* **Processes.** containerd is PID 1 of a PID namespace of its own (``unshare --pid --fork
  --kill-child --mount-proc``): the shims and containers it starts live in it, and when
  containerd exits the kernel kills and reaps all of them, so not even a zombie shim is handed
  to the machine's init.
* **Teardown, also on failure:** force-delete any task and container left, stop containerd
  (SIGTERM, then SIGKILL after a deadline), kill anything still in the private mount namespace
  or the container's cgroup, delete the network namespaces, remove the temp dir. The mount
  namespace, with the overlays and the container's rootfs mount, goes away with its last
  process; the test then asserts that no process of it is left, no cgroup, and that
  ``/etc/cni``, ``/opt/cni``, ``/var/lib/cni``, ``/run/containerd`` are as they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci import BUSYBOX, build_busybox_image
from poll import poll_until
from topology import unique_prefix

from clew.kernel import netns

PLUGIN = str(Path(sys.executable).with_name("clew-cni"))
TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "nsenter", "unshare", "mount", "ip", "iptables")
PORTMAP = "/usr/lib/cni/portmap"  # Debian 12's containernetworking-plugins 1.1.1
IMAGE = "eco.local/busybox:1"
APPLETS = ("sh", "ip", "ping", "cat", "echo")
NETWORK = "cbr0"
GATEWAY = "10.244.7.1"
SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
OVERLAID = ("/etc", "/opt", "/var/lib", "/run")
ROOT_PATHS = ("/etc/cni", "/opt/cni", "/var/lib/cni", "/run/containerd")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _is_static_elf(path: str) -> bool:
    """Whether ``path`` is an ELF executable without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only; enough for the packaged busybox
            return False
        end = "<" if head[5] == 1 else ">"
        (phoff,) = struct.unpack(end + "Q", head[32:40])
        phentsize, phnum = struct.unpack(end + "HH", head[54:58])
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack(end + "I", table[i : i + 4])[0] != 3 for i in range(0, len(table), phentsize))


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces, containerd)"
    missing = [t for t in TOOLS if shutil.which(t, path=PATH) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install containerd runc busybox-static; or bash scripts/install)"
    if not os.access(PORTMAP, os.X_OK):
        return f"needs {PORTMAP} (apt-get install containernetworking-plugins)"
    if not os.path.exists(BUSYBOX) or not _is_static_elf(BUSYBOX):
        return f"needs a static {BUSYBOX} (apt-get install busybox-static)"
    if not Path(PLUGIN).exists():
        return f"needs {PLUGIN} (pip install -e .)"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "needs overlayfs"
    return None


SKIP = _skip_reason()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]


def _mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _pid_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class Runtime:
    """A node namespace with its own containerd in a private mount namespace; see the module doc."""

    def __init__(self, cni_version: str = "1.0.0", *, conflist: str | None = None, base: str = "clewr") -> None:
        """``conflist``: the text to install as is (else one of ``cni_version`` with paths in the temp dir).

        Its clew plugin's ``subnetFile`` and ``dataDir`` must lie under an overlaid folder: the
        subnet file is put there (in the upper layer) and the store is read from there.
        """
        self.cni_version = cni_version
        self.conflist = conflist
        self.prefix = unique_prefix(base)
        self.node = f"{self.prefix}-node"
        self.tmp = Path(tempfile.mkdtemp(prefix="clewctr-"))
        self.sock = self.tmp / "containerd.sock"
        self.subnet_env = self.tmp / "subnet.env"
        self.data = self.tmp / "data"
        if conflist is not None:
            clew = next(p for p in json.loads(conflist)["plugins"] if p["type"] == "clew")
            self.subnet_env = self.upper_path(clew["subnetFile"])
            self.data = self.upper_path(clew["dataDir"])
        self.log = self.tmp / "containerd.log"
        self.cgroup = f"/{self.prefix}-c1"
        self.proc: subprocess.Popen[bytes] | None = None  # unshare, the PID namespace's parent
        self.pid: int | None = None  # containerd: PID 1 inside, this pid outside
        self.mnt_ns: str | None = None
        self.pid_ns: str | None = None
        self.pid_ns_fd: int | None = None
        self.env = {"PATH": PATH}

    # -- setup -------------------------------------------------------------------------------

    def _upper(self, root: str) -> Path:
        return self.tmp / "overlay" / root.strip("/").replace("/", "_") / "upper"

    def upper_path(self, path: str) -> Path:
        """Where ``path`` (under an overlaid folder) lands in the upper layer, seen from outside."""
        root = next((r for r in OVERLAID if path.startswith(r + "/")), None)
        assert root is not None, f"{path} is not under one of {OVERLAID}"
        return self._upper(root) / path[len(root) + 1 :]

    def _write_files(self) -> None:
        for root in OVERLAID:
            self._upper(root).mkdir(parents=True)
            self._upper(root).with_name("work").mkdir()
        self.subnet_env.parent.mkdir(parents=True, exist_ok=True)
        self.subnet_env.write_text(SUBNET_ENV)
        bin_dir = self._upper("/opt") / "cni" / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "clew").symlink_to(PLUGIN)
        (bin_dir / "portmap").symlink_to(PORTMAP)  # as deploy/install-cni.sh does on a host without one
        conf_dir = self._upper("/etc") / "cni" / "net.d"
        conf_dir.mkdir(parents=True)
        if self.conflist is None:
            plugin = {"type": "clew", "subnetFile": str(self.subnet_env), "dataDir": str(self.data)}
            conflist = json.dumps({"cniVersion": self.cni_version, "name": NETWORK, "plugins": [plugin]})
        else:
            conflist = self.conflist
        (conf_dir / "10-clew.conflist").write_text(conflist)
        root_dir, state_dir = self.tmp / "root", self.tmp / "state"
        (self.tmp / "config.toml").write_text(
            "version = 2\n"
            f'root = "{root_dir}"\nstate = "{state_dir}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",'
            ' "io.containerd.snapshotter.v1.aufs"]\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.tmp / "opt"}"\n'
        )

    def start(self) -> None:
        self._write_files()
        netns.create(self.node)
        netns.run_batch(self.node, ["link set lo up"])
        host_ns = _mount_ns("self")
        mounts = [
            f"mount -t overlay overlay -o lowerdir={d},upperdir={self._upper(d)},"
            f"workdir={self._upper(d).with_name('work')} {d}"
            for d in OVERLAID
        ]
        script = "\n".join(
            [
                "set -e",
                f'[ "$(readlink /proc/self/ns/mnt)" != "{host_ns}" ] || exit 97  # never mount in the host\'s',
                *mounts,
                f"exec containerd --config {self.tmp / 'config.toml'}",
            ]
        )
        argv = ["nsenter", f"--net=/run/netns/{self.node}", "unshare", "--mount", "--propagation", "private"]
        argv += ["--pid", "--kill-child", "--mount-proc"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*argv, "sh", "-c", script], stdout=log, stderr=log, env=self.env)
        poll_until(self._serving, 10, what=f"containerd socket {self.sock}")
        assert self.pid is not None
        self.mnt_ns = _mount_ns(self.pid)
        assert self.mnt_ns not in (None, host_ns), "containerd is not in a mount namespace of its own"
        # containerd and its shims live in a PID namespace of their own (unshare --pid). Held open
        # until the leftover check, that namespace cannot die, so its inode cannot be reused by a
        # new namespace (every `ip netns exec` elsewhere on the machine makes mount namespaces):
        # a process found in it after close is a real leftover.
        self.pid_ns = _pid_ns(self.pid)
        assert self.pid_ns not in (None, _pid_ns("self")), "containerd is not in a PID namespace of its own"
        self.pid_ns_fd = os.open(f"/proc/{self.pid}/ns/pid", os.O_RDONLY)

    def _serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"containerd exited {self.proc.returncode}:\n{self.log_tail()}")
        if self.pid is None:
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                return False
            self.pid = int(children[0]) if children else None
        return self.sock.is_socket()

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    # -- use ---------------------------------------------------------------------------------

    def ctr_argv(self, *args: str) -> list[str]:
        """The argv of ``ctr ARGS`` in containerd's mount and PID namespaces and the node's netns."""
        assert self.pid is not None
        return ["nsenter", f"--target={self.pid}", "--mount", "--net", "--pid", "ctr", "-a", str(self.sock), *args]

    def ctr(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``ctr ARGS`` in containerd's mount and PID namespaces and the node's netns."""
        argv = self.ctr_argv(*args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ctr {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}\n"
                f"containerd log:\n{self.log_tail()}"
            )
        return proc

    def cni(self, command: str, container: str, pod: str) -> dict[str, object] | None:
        """Exec clew-cni in the node namespace like a runtime would (for the peer pod)."""
        env = {
            "PATH": PATH,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_IFNAME": "eth0",
            "CNI_NETNS": f"/run/netns/{pod}",
            "CNI_PATH": "/opt/cni/bin",
        }
        conf = {
            "cniVersion": self.cni_version,
            "name": NETWORK,
            "type": "clew",
            "subnetFile": str(self.subnet_env),
            "dataDir": str(self.data),
        }
        proc = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.node}", PLUGIN],
            input=json.dumps(conf),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, f"clew-cni {command}: {proc.stdout} {proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def store(self) -> dict[str, str]:
        """The IPAM store: address → "containerID ifname"."""
        folder = self.data / NETWORK
        if not folder.is_dir():
            return {}
        return {p.name: " ".join(p.read_text().split()) for p in folder.iterdir() if p.name[0].isdigit()}

    def cached_results(self) -> list[str]:
        folder = self.data / NETWORK / "results"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        errors: list[str] = []
        for step in (self._remove_tasks, self._stop_containerd, self._kill_leftovers, self._reap_cgroup):
            try:
                step()
            except Exception as exc:  # carry on: every later step still has to run
                errors.append(f"{step.__name__}: {exc}")
        for name in netns.list_names(self.prefix + "-"):
            try:
                netns.delete(name)
            except Exception as exc:
                errors.append(f"netns {name}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("teardown: " + "; ".join(errors))

    def _remove_tasks(self) -> None:
        if self.pid is None or self.proc is None or self.proc.poll() is not None or not self.sock.is_socket():
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _stop_containerd(self) -> None:
        """SIGTERM containerd; unshare exits once the kernel has killed and reaped its PID namespace.

        Without a containerd pid (it never started) or past the deadline, SIGKILL unshare:
        ``--kill-child`` takes containerd, and with it the namespace, along.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait(timeout=10)

    def _ns_pids(self) -> list[int]:
        """Processes in containerd's PID namespace (its shims and containers included)."""
        if self.pid_ns is None:
            return []
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _pid_ns(p) == self.pid_ns]

    def release_ns(self) -> None:
        if self.pid_ns_fd is not None:
            os.close(self.pid_ns_fd)
            self.pid_ns_fd = None

    def _kill_leftovers(self) -> None:
        """SIGKILL any process still in containerd's mount namespace (shims), by pid."""
        for pid in self._ns_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        poll_until(lambda: not self._ns_pids(), 10, what="processes of the private mount namespace gone")

    def cgroup_dirs(self) -> list[Path]:
        base = Path("/sys/fs/cgroup")
        candidates = [base / self.cgroup.lstrip("/"), *(d / self.cgroup.lstrip("/") for d in base.iterdir())]
        return [d for d in candidates if d.is_dir()]

    def _reap_cgroup(self) -> None:
        """Kill what is left in the container's cgroup (only after a failure) and remove it."""
        for folder in self.cgroup_dirs():
            for pid in (folder / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            procs = folder / "cgroup.procs"

            def empty(procs: Path = procs) -> bool:
                return not procs.read_text().split()

            poll_until(empty, 10, what=f"{folder} empty")
            folder.rmdir()


# ctr's libcni (containerd 1.6) speaks up to 1.0.0 and rejects a 1.1.0 result; 0.3.1 is what
# flannel's stock conflist says, and there libcni's DEL carries no prevResult (clew's cache must do)
@pytest.fixture(params=["0.3.1", "1.0.0"])
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    yield from running(Runtime(request.param))


def running(rt: Runtime) -> Iterator[Runtime]:
    """Start ``rt``, yield it, close it and check that it left nothing behind."""
    before = {p: os.path.lexists(p) for p in ROOT_PATHS}
    try:
        try:
            rt.start()
            yield rt
        finally:
            rt.close()
        assert rt.proc is None or rt.proc.poll() is not None, "containerd still running"
        assert rt._ns_pids() == [], "processes left in containerd's PID namespace"
    finally:
        rt.release_ns()
    assert rt.cgroup_dirs() == [], "container cgroup left behind"
    assert netns.list_names(rt.prefix + "-") == []
    assert not rt.tmp.exists()
    assert {p: os.path.lexists(p) for p in ROOT_PATHS} == before, "the root filesystem changed"


def test_ctr_run_gets_its_network_from_clew_cni(runtime: Runtime) -> None:
    image = runtime.tmp / "busybox-oci.tar"
    build_busybox_image(image, IMAGE, APPLETS)
    runtime.ctr("images", "import", str(image))

    # a second pod on the node's bridge, attached by calling clew-cni directly
    peer = f"{runtime.prefix}-peer"
    netns.create(peer)
    peer_res = runtime.cni("ADD", "peer", peer)
    assert peer_res is not None
    ips = peer_res["ips"]
    assert isinstance(ips, list)
    peer_ip = str(ips[0]["address"]).split("/")[0]

    container = f"{runtime.prefix}-c1"
    script = (
        "ip -o -4 addr show dev eth0; ip -o link show dev eth0; "
        f"ping -c 1 -W 2 {GATEWAY} >/dev/null && echo gateway-ok; "
        f"ping -c 1 -W 2 {peer_ip} >/dev/null && echo peer-ok; true"
    )
    run = runtime.ctr("run", "--rm", "--cni", "--cgroup", runtime.cgroup, IMAGE, container, "sh", "-c", script)
    out = run.stdout

    # eth0 came from clew-cni: an address of the node's subnet.env /24, at its MTU
    addr_lines = [line.split() for line in out.splitlines() if " inet " in line]
    assert len(addr_lines) == 1, out
    address = addr_lines[0][3]
    ip = address.split("/")[0]
    assert address.startswith("10.244.7.") and address.endswith("/24") and ip not in (GATEWAY, peer_ip), out
    assert "mtu 1450" in out, out
    assert (runtime.data / NETWORK / "last_reserved_ip.0").read_text().strip() == ip  # clew's IPAM handed it out
    assert "gateway-ok" in out, f"the container could not ping the bridge gateway {GATEWAY}:\n{out}"
    assert "peer-ok" in out, f"the container could not ping the peer pod {peer_ip}:\n{out}"

    # ``run --rm`` sent DEL (after the container's netns was gone): the address and cache entry are
    # released, the peer's are not, and no veth but the peer's is left on the node
    assert runtime.store() == {peer_ip: "peer eth0"}
    assert runtime.cached_results() == ["peer-eth0.json"]
    links = netns.run(runtime.node, ["ip", "-o", "link", "show", "type", "veth"]).stdout
    assert len(links.splitlines()) == 1, links
    # libcni's own cache (in the /var/lib overlay) was cleared by the same DEL
    assert list((runtime._upper("/var/lib") / "cni" / "results").iterdir()) == []

    assert runtime.cni("DEL", "peer", peer) is None
    assert runtime.store() == {}


# -- the conflist deploy/configmap.yaml ships, through the same runtime ---------------------------

CONFIGMAP = Path(__file__).resolve().parents[2] / "deploy" / "configmap.yaml"
HOST_PORT, CONTAINER_PORT = 8080, 80
CLIENT_ADDR, NODE_ADDR = "192.168.77.2", "192.168.77.1"  # a link between a client netns and the node


def shipped_conflist() -> str:
    """``10-clew.conflist`` exactly as the ConfigMap holds it (what install-cni.sh copies to the host)."""
    import yaml

    text = yaml.safe_load(CONFIGMAP.read_text())["data"]["10-clew.conflist"]
    assert isinstance(text, str)
    return text


def with_port_mapping(conflist: str) -> str:
    """The conflist with the ``runtimeConfig`` the CRI plugin injects for a hostPort.

    libcni adds ``runtimeConfig: {portMappings: […]}`` to each plugin declaring the capability
    when the runtime passes it (the kubelet does, for a pod's hostPort); ``ctr run`` 1.6 has no
    flag for capability arguments, and libcni leaves a static ``runtimeConfig`` as it is, so the
    test writes what libcni would have. Nothing else changes.
    """
    conf = json.loads(conflist)
    mapping = {"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
    (portmap,) = [p for p in conf["plugins"] if p.get("capabilities", {}).get("portMappings")]
    portmap["runtimeConfig"] = {"portMappings": [mapping]}
    return json.dumps(conf)


@pytest.fixture
def shipped() -> Iterator[Runtime]:
    yield from running(Runtime(conflist=shipped_conflist(), base="hcn-ctr"))


@pytest.fixture
def shipped_with_port() -> Iterator[Runtime]:
    yield from running(Runtime(conflist=with_port_mapping(shipped_conflist()), base="hcn-ctr"))


def _assert_released(rt: Runtime) -> None:
    """After ``run --rm``'s DEL: no address, cached result or veth left; libcni's cache empty."""
    assert rt.store() == {}
    assert rt.cached_results() == []
    assert netns.run(rt.node, ["ip", "-o", "link", "show", "master", "cni0"]).stdout == ""
    assert list((rt._upper("/var/lib") / "cni" / "results").iterdir()) == []


def test_the_shipped_conflist_brings_a_pod_up(shipped: Runtime) -> None:
    """Before: cniVersion 1.1.0, which portmap 1.1.1 and containerd 1.6's libcni refuse."""
    rt = shipped
    assert (rt._upper("/etc") / "cni/net.d/10-clew.conflist").read_text() == shipped_conflist()
    image = rt.tmp / "busybox-oci.tar"
    build_busybox_image(image, IMAGE, APPLETS)
    rt.ctr("images", "import", str(image))
    script = f"ip -o -4 addr show dev eth0; ping -c 1 -W 2 {GATEWAY} >/dev/null && echo gateway-ok; true"
    out = rt.ctr("run", "--rm", "--cni", "--cgroup", rt.cgroup, IMAGE, f"{rt.prefix}-c1", "sh", "-c", script).stdout
    assert " 10.244.7." in out and "/24 " in out, out
    assert "gateway-ok" in out, out
    _assert_released(rt)


def _client_attempt(client: str) -> str:
    """One TCP connection from the client netns to the node's hostPort; what came back ('' if refused)."""
    code = (
        "import socket,sys\n"
        "try:\n"
        f"    s = socket.create_connection(({NODE_ADDR!r}, {HOST_PORT}), timeout=3)\n"
        "except OSError as e:\n"
        "    sys.exit(0)\n"
        "s.settimeout(5)\n"
        "data = b''\n"
        "while chunk := s.recv(4096):\n"
        "    data += chunk\n"
        "sys.stdout.write(data.decode(errors='replace'))\n"
    )
    return netns.run(client, [sys.executable, "-c", code], timeout=30).stdout


def test_a_host_port_reaches_the_pod_through_the_shipped_portmap(shipped_with_port: Runtime) -> None:
    rt = shipped_with_port
    client = f"{rt.prefix}-client"
    netns.create(client)
    netns.run_batch(
        client,
        [
            "link set lo up",
            f"link add c0 type veth peer name n0 netns {rt.node}",
            f"addr add {CLIENT_ADDR}/24 dev c0",
            "link set c0 up",
        ],
    )
    netns.run_batch(rt.node, [f"addr add {NODE_ADDR}/24 dev n0", "link set n0 up"])
    image = rt.tmp / "busybox-oci.tar"
    build_busybox_image(image, IMAGE, [*APPLETS, "nc"])
    rt.ctr("images", "import", str(image))
    # the pod answers one connection on its port 80 with its address, then exits (and run --rm sends DEL)
    script = f"echo pod-reply $(ip -o -4 addr show dev eth0) | nc -l -p {CONTAINER_PORT}"
    argv = rt.ctr_argv("run", "--rm", "--cni", "--cgroup", rt.cgroup, IMAGE, f"{rt.prefix}-c1", "sh", "-c", script)
    ctr = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=rt.env)
    try:
        reply = poll_until(lambda: _client_attempt(client), 30, interval=0.2, what=f"{NODE_ADDR}:{HOST_PORT} answers")
        out, err = ctr.communicate(timeout=30)
    finally:
        if ctr.poll() is None:
            ctr.kill()
            ctr.communicate()
    assert ctr.returncode == 0, f"ctr run: {out}\n{err}\n{rt.log_tail()}"
    assert reply.startswith("pod-reply ") and " 10.244.7." in reply, reply
    # portmap's DNAT was in the node's namespace only, and its DEL took it away again
    nat = netns.run(rt.node, ["iptables-save", "-t", "nat"]).stdout
    assert f"--dport {HOST_PORT}" not in nat, nat
    _assert_released(rt)
