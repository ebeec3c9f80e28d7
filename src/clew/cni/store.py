"""The IPAM store on disk, in host-local's layout, behind one ``flock``.

``<dataDir>/<network>/`` holds (exactly host-local's ``backend/disk``, so operators' habits
and scripts — ``ls /var/lib/cni/networks/cbr0`` — keep working)::

    lock                  flock(LOCK_EX) held around every read-modify-write
    last_reserved_ip.0    the address handed out last (round robin continues after it)
    10.244.1.2            one file per address, 0600, created O_EXCL,
                          content "<containerID>\\r\\n<ifname>"

Every plugin process (ADD, DEL, GC of any pod on the node) takes the lock, so concurrent ADDs never
hand out one address twice. The lock is an ``flock`` on an open file: the kernel drops it when
the process dies, so a killed plugin never wedges the node. Taking it waits up to ``timeout``
seconds, then gives up with :class:`StoreBusy` (the plugin's "try again later").

Methods other than :meth:`DiskStore.locked` require the lock (they raise ``RuntimeError``
otherwise): a read outside it could be stale by the time it is used.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from ipaddress import IPv4Address
from types import TracebackType

from clew.cni.config import Attachment

LOCK_FILE = "lock"
LAST_RESERVED = "last_reserved_ip.0"
LINE_BREAK = "\r\n"


class StoreBusy(Exception):
    """Another process held the lock for the whole timeout."""


def _as_ip(name: str) -> IPv4Address | None:
    if not name[:1].isdigit():
        return None
    try:
        return IPv4Address(name)
    except ValueError:
        return None


class DiskStore:
    """The store in ``directory`` (``<dataDir>/<network>``); created on first lock."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return os.path.isdir(self.directory)

    def locked(self, timeout: float = 30.0) -> _Locked:
        """``with store.locked() as s:`` holds the store's lock for the block (not re-entrant).

        Polls a non-blocking ``flock`` with a short backoff until ``timeout``; raises
        :class:`StoreBusy` then.
        """
        return _Locked(self, timeout)

    def _need_lock(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"store {self.directory} used without its lock")

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def reserve(self, ip: IPv4Address, owner: Attachment) -> bool:
        self._need_lock()
        try:
            fd = os.open(self._path(str(ip)), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(f"{owner.container_id.strip()}{LINE_BREAK}{owner.ifname}")
        return True

    def last_reserved(self) -> IPv4Address | None:
        self._need_lock()
        try:
            with open(self._path(LAST_RESERVED), encoding="utf-8") as f:
                return _as_ip(f.read().strip())
        except FileNotFoundError:
            return None

    def set_last_reserved(self, ip: IPv4Address) -> None:
        self._need_lock()
        fd = os.open(self._path(LAST_RESERVED), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(str(ip))

    def allocations(self) -> dict[IPv4Address, Attachment]:
        self._need_lock()
        out: dict[IPv4Address, Attachment] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return out
        for entry in entries:
            ip = _as_ip(entry.name)
            if ip is None or not entry.is_file():
                continue
            try:
                with open(entry.path, encoding="utf-8", newline="") as f:
                    content = f.read().strip()
            except FileNotFoundError:
                continue
            container_id, _, ifname = content.partition(LINE_BREAK)
            out[ip] = Attachment(container_id.strip(), ifname.strip())
        return out

    def release(self, ip: IPv4Address) -> None:
        self._need_lock()
        try:
            os.unlink(self._path(str(ip)))
        except FileNotFoundError:
            return


class _Locked:
    """The context manager behind :meth:`DiskStore.locked` (no ``contextlib``: import cost)."""

    def __init__(self, store: DiskStore, timeout: float) -> None:
        self.store = store
        self.timeout = timeout

    def __enter__(self) -> DiskStore:
        store = self.store
        if store._lock_fd is not None:
            raise RuntimeError(f"store {store.directory} is already locked by this object")
        os.makedirs(store.directory, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(store.directory, LOCK_FILE), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _flock(fd, self.timeout, store.directory)
        except BaseException:
            os.close(fd)
            raise
        store._lock_fd = fd
        return store

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, self.store._lock_fd = self.store._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock


def _flock(fd: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreBusy(f"the IPAM store {what} stayed locked for {timeout:g}s")
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.01)
