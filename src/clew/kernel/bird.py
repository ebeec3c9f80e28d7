"""BIRD 2 (Debian ``bird2``) as a process of a network namespace: start, check, reconfigure, ask.

* `start` — ``bird -c CONF -s SOCKET -P PIDFILE`` inside the namespace. BIRD parses the file,
  then daemonizes (its own session, stdio on /dev/null), so it outlives whoever started it: the
  node agent may stop and start again while BIRD keeps its sessions and the kernel keeps its
  routes. A bad file fails here, before any daemon exists. ``recover`` adds ``-R`` (graceful
  restart recovery): a BIRD started after one died keeps the ``persist``ed kernel routes until
  its peers have re-announced theirs (without it, its first kernel scan deletes them).
* `check_config` — ``bird -p -c FILE``: parse only, nothing started.
* `configure` — ``birdc -s SOCKET configure``: BIRD rereads its file and restarts only the
  protocols whose configuration changed; never a process restart.
* `running_pid` — the daemon of a pid file, if that process is still BIRD in that namespace.
* `show` — ``birdc -s SOCKET show …`` output (text).
* `daemons` — the BIRD processes of a namespace and their control sockets (``-s``, from their
  command lines): how the doctor finds a node's BIRD without knowing the agent's state folder.
* `state_text` — a dump's ``bird.txt``: ``# bird pid P socket S``, then ``# show protocols`` and
  ``# show route all`` each followed by birdc's output (``# error …`` when birdc failed), or
  ``# bird none`` when no BIRD runs in the namespace. Read by the doctor (podnet.bgp) and the
  trace (the node that announced a BGP-learned route).

Each instance has its own control socket and pid file (several nodes of a lab share one host).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from clew.kernel.errors import CommandFailed
from clew.kernel.namespace import Namespace, Where
from clew.kernel.runner import run

BIRD = "bird"
BIRDC = "birdc"
DEFAULT_SOCKET = Path("/run/bird/bird.ctl")  # Debian's, when BIRD was started without -s


def check_config(config: Path) -> None:
    """Raise :class:`CommandFailed` (BIRD's message: file, line, column) unless ``config`` parses."""
    run(None, [BIRD, "-p", "-c", str(config)], what=f"bird -p {config.name}")


def start(ns: Where, config: Path, socket: Path, pidfile: Path, timeout: float = 5.0, recover: bool = False) -> int:
    """Start BIRD in ``ns``; returns the daemon's pid once its pid file names it (the daemon,
    not the process we started, writes the file: after that one has exited)."""
    pidfile.unlink(missing_ok=True)  # a dead BIRD's file must not be read as the new one's
    argv = [BIRD, "-c", str(config), "-s", str(socket), "-P", str(pidfile), *(["-R"] if recover else [])]
    run(ns, argv, what="bird")
    end = time.monotonic() + timeout
    while (pid := running_pid(pidfile, ns)) is None:
        if time.monotonic() > end:
            raise CommandFailed(
                Namespace.of(ns), "bird", argv, 1, f"no BIRD process behind {pidfile} {timeout:g}s after start"
            )
        time.sleep(0.01)
    return pid


def configure(ns: Where, socket: Path) -> str:
    """``birdc configure``: apply the (already written) file; returns BIRD's answer."""
    argv = [BIRDC, "-s", str(socket), "configure"]
    done = run(ns, argv, what="birdc configure", check=False)
    answer = [line for line in done.stdout.splitlines() if line and not line.startswith(("BIRD ", "Reading "))]
    if done.returncode != 0:  # birdc prints BIRD's complaint on stdout
        raise CommandFailed(Namespace.of(ns), "birdc configure", argv, done.returncode, " ".join(answer) or done.stderr)
    return answer[-1] if answer else ""


def show(ns: Where, socket: Path, *what: str, timeout: float = 30.0) -> str:
    """``birdc -s SOCKET show WHAT…`` (``protocols``, ``route``), BIRD's banner line removed."""
    done = run(ns, [BIRDC, "-s", str(socket), "show", *what], what="birdc show", timeout=timeout)
    lines = done.stdout.splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("BIRD ") else lines)


def running_pid(pidfile: Path, ns: Where = None) -> int | None:
    """The pid in ``pidfile`` if that process is BIRD (not a zombie) in ``ns``'s namespace."""
    try:
        pid = int(pidfile.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return pid if _is_bird(stat) and _in_netns(pid, ns) else None


def daemons(ns: Where = None) -> list[tuple[int, Path]]:
    """(pid, control socket) of every BIRD process in ``ns``, by pid."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not _is_bird((proc / "stat").read_text()) or not _in_netns(int(proc.name), ns):
                continue
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        socket = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-s"), None)
        found.append((int(proc.name), Path(socket) if socket else DEFAULT_SOCKET))
    return sorted(found)


def _is_bird(stat: str) -> bool:
    """``/proc/PID/stat`` of a live (not zombie) BIRD."""
    name, rest = stat.split("(", 1)[1].rsplit(")", 1)
    return name == BIRD and rest.split()[0] not in ("Z", "X", "x")


def _in_netns(pid: int, ns: Where) -> bool:
    where = Namespace.of(ns)
    want = where.path if not where.own else "/proc/self/ns/net"
    try:
        mine, theirs = os.stat(f"/proc/{pid}/ns/net"), os.stat(str(want))
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def state_text(ns: Where = None, timeout: float = 5.0) -> str:
    """``bird.txt`` for ``ns`` (see the module docstring); a hung BIRD costs ``timeout`` per question."""
    found = daemons(ns)
    if not found:
        return "# bird none\n"
    pid, socket = found[0]
    parts = [f"# bird pid {pid} socket {socket}\n"]
    for what in ("protocols", "route all"):
        try:
            text = show(ns, socket, *what.split(), timeout=timeout)
        except CommandFailed as e:
            parts.append(f"# error {str(e).splitlines()[0] if str(e) else 'birdc failed'}\n")
            continue
        parts.append(f"# show {what}\n{text.rstrip()}\n")
    return "".join(parts)
