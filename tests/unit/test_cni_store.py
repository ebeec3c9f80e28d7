"""The on-disk IPAM store: host-local's layout, its flock, and the ADD result cache."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from clew.cni import ipam
from clew.cni.cache import ResultCache
from clew.cni.config import Attachment
from clew.cni.store import DiskStore, StoreBusy

POOL = ipam.Pool(IPv4Network("10.244.1.0/24"), IPv4Address("10.244.1.1"))
C1 = Attachment("c1", "eth0")


def test_layout_is_host_locals(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path / "cbr0"))
    with store.locked() as s:
        ip = ipam.allocate(s, POOL, C1)
    folder = tmp_path / "cbr0"
    assert sorted(p.name for p in folder.iterdir()) == ["10.244.1.2", "last_reserved_ip.0", "lock"]
    assert (folder / "10.244.1.2").read_bytes() == b"c1\r\neth0"
    assert stat.S_IMODE((folder / "10.244.1.2").stat().st_mode) == 0o600
    assert (folder / "last_reserved_ip.0").read_text() == "10.244.1.2"
    with store.locked() as s:
        assert s.allocations() == {ip: C1}
        ipam.release(s, C1)
    assert sorted(p.name for p in folder.iterdir()) == ["last_reserved_ip.0", "lock"]


def test_reads_files_written_by_host_local(tmp_path: Path) -> None:
    folder = tmp_path / "cbr0"
    folder.mkdir()
    (folder / "10.244.1.7").write_bytes(b"abc\r\neth0\n")
    (folder / "last_reserved_ip.0").write_text("10.244.1.7")
    (folder / "not-an-ip").write_text("ignored")
    with DiskStore(str(folder)).locked() as s:
        assert s.allocations() == {IPv4Address("10.244.1.7"): Attachment("abc", "eth0")}
        assert ipam.allocate(s, POOL, C1) == IPv4Address("10.244.1.8")


def test_methods_need_the_lock(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path / "n"))
    with pytest.raises(RuntimeError, match="without its lock"):
        store.allocations()
    with store.locked(), pytest.raises(RuntimeError, match="already locked"), store.locked():
        pass


def test_a_second_holder_waits_then_gives_up(tmp_path: Path) -> None:
    folder = str(tmp_path / "n")
    with DiskStore(folder).locked():
        start = time.monotonic()
        with pytest.raises(StoreBusy, match="stayed locked"), DiskStore(folder).locked(timeout=0.05):
            pass
        assert time.monotonic() - start >= 0.05
    with DiskStore(folder).locked(timeout=0.05):  # free again
        pass


def test_waiter_gets_the_lock_once_released(tmp_path: Path) -> None:
    folder = str(tmp_path / "n")
    got = threading.Event()

    def waiter() -> None:
        with DiskStore(folder).locked(timeout=5):
            got.set()

    with DiskStore(folder).locked():
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.wait(0.05)  # blocked while we hold it
    thread.join(5)
    assert got.is_set()


def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    folder = str(tmp_path / "n")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom clew.cni.store import DiskStore\n"
         f"with DiskStore({folder!r}).locked():\n    print('held', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StoreBusy), DiskStore(folder).locked(timeout=0.05):
            pass
    finally:
        holder.kill()
        holder.wait()
    with DiskStore(folder).locked(timeout=1):
        pass


def test_concurrent_processes_get_distinct_addresses(tmp_path: Path) -> None:
    folder = str(tmp_path / "n")
    code = (
        "import sys\nfrom ipaddress import IPv4Address, IPv4Network\nfrom clew.cni import ipam\n"
        "from clew.cni.config import Attachment\nfrom clew.cni.store import DiskStore\n"
        "pool = ipam.Pool(IPv4Network('10.244.1.0/24'), IPv4Address('10.244.1.1'))\n"
        "for i in range(10):\n"
        "    with DiskStore(sys.argv[1]).locked() as s:\n"
        "        print(ipam.allocate(s, pool, Attachment(f'{sys.argv[2]}-{i}', 'eth0')))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, folder, f"p{n}"], stdout=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ips = [ip for out in outs for ip in out]
    assert len(ips) == 40 and len(set(ips)) == 40
    assert len([n for n in os.listdir(folder) if n.startswith("10.")]) == 40


def test_result_cache_round_trip(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path / "results"))
    assert cache.load(C1) is None and cache.entries() == []
    cache.save(C1, {"hostInterface": "veth01020304", "result": {"cniVersion": "1.1.0"}})
    entry = cache.load(C1)
    assert entry is not None and entry["hostInterface"] == "veth01020304"
    assert entry["kind"] == "clewCacheV1" and entry["containerId"] == "c1" and entry["ifName"] == "eth0"
    assert stat.S_IMODE((tmp_path / "results" / "c1-eth0.json").stat().st_mode) == 0o600
    assert cache.entries() == [(C1, entry)]
    cache.remove(C1)
    cache.remove(C1)  # idempotent
    assert cache.load(C1) is None and os.listdir(tmp_path / "results") == []


def test_result_cache_trusts_content_not_the_ambiguous_file_name(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.save(Attachment("a-b", "c"), {"hostInterface": "veth1"})
    assert cache.load(Attachment("a", "b-c")) is None  # same file name, another attachment
    cache.remove(Attachment("a", "b-c"))
    assert cache.load(Attachment("a-b", "c")) is not None
    (tmp_path / "junk.json").write_text("{not json")
    evil = {"kind": "clewCacheV1", "containerId": "../../etc", "ifName": "passwd"}
    (tmp_path / "evil.json").write_text(json.dumps(evil))  # never turned into a path
    assert [a for a, _ in cache.entries()] == [Attachment("a-b", "c")]
