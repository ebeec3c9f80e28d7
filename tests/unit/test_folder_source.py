"""The folder source: a folder that vanishes is not "no Services", and an idle folder is not
re-listed (inotify tells what changed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from clew.sources import files
from clew.sources.files import FolderSource, folder_version, write_atomic


def service(name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}  # fmt: skip


def names(src: FolderSource) -> list[str]:
    return sorted(s.name for s in src.snapshot().services)


@pytest.fixture(params=[True, False], ids=["inotify", "listing"])
def watch(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_a_missing_folder_is_a_problem_not_an_empty_set(tmp_path: Path, watch: bool) -> None:
    src = FolderSource(tmp_path / "typo", watch=watch)
    assert src.poll() is None
    assert src.problem == f"{tmp_path / 'typo'}: cannot read the objects folder: No such file or directory"


def test_an_existing_empty_folder_is_zero_objects(tmp_path: Path, watch: bool) -> None:
    src = FolderSource(tmp_path, watch=watch)
    snap = src.poll()
    assert snap is not None and snap.services == () and src.problem is None


def test_a_folder_that_goes_away_keeps_the_last_snapshot_until_it_returns(tmp_path: Path, watch: bool) -> None:
    root = tmp_path / "objects"
    write_atomic(root / "services" / "web.json", json.dumps(service("web", "10.96.0.10")))
    src = FolderSource(root, watch=watch)
    assert src.poll() is not None and names(src) == ["web"]
    shutil.rmtree(root)
    assert src.poll() is None and "No such file or directory" in (src.problem or "")
    assert names(src) == ["web"]  # what the agent would sync is still the last good content
    write_atomic(root / "services" / "db.json", json.dumps(service("db", "10.96.0.11")))
    snap = src.poll()
    assert snap is not None and [s.name for s in snap.services] == ["db"] and src.problem is None


def test_a_folder_that_cannot_be_listed_keeps_the_last_snapshot(
    tmp_path: Path, watch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_atomic(tmp_path / "services" / "web.json", json.dumps(service("web", "10.96.0.10")))
    src = FolderSource(tmp_path, watch=watch)
    assert src.poll() is not None
    real = os.scandir

    def denied(path: Any) -> Any:
        if Path(path) == tmp_path / "services":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    write_atomic(tmp_path / "slices" / "x.json", "{}")  # something changed: a listing is due
    (tmp_path / "services" / "a").mkdir()
    assert src.poll() is None
    assert src.problem == f"{tmp_path}: cannot read the objects folder: Permission denied"
    assert names(src) == ["web"]
    assert folder_version(tmp_path) != src.version  # the lab never mistakes this for "synced"


def test_an_idle_watched_folder_is_not_listed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(50):
        write_atomic(tmp_path / "services" / f"s{i}.json", json.dumps(service(f"s{i}", f"10.96.1.{i}")))
    src = FolderSource(tmp_path)
    assert src.poll() is not None
    listings, reads = [], []
    real_list, real_parse = files.list_files, files.parse_text
    monkeypatch.setattr(files, "list_files", lambda root: listings.append(root) or real_list(root))
    monkeypatch.setattr(files, "parse_text", lambda text, origin: reads.append(origin) or real_parse(text, origin))
    for _ in range(20):
        assert src.poll() is None
    assert listings == [] and reads == []
    write_atomic(tmp_path / "services" / "s7.json", json.dumps(service("s7", "10.96.2.7")))
    snap = src.poll()
    assert snap is not None and listings == [] and reads == [str(tmp_path / "services" / "s7.json")]
    assert next(s for s in snap.services if s.name == "s7").cluster_ip == "10.96.2.7"
    assert src.version == folder_version(tmp_path)


def test_watched_changes_of_every_kind_are_seen(tmp_path: Path) -> None:
    src = FolderSource(tmp_path)
    src.poll()
    write_atomic(tmp_path / "a" / "b" / "web.json", json.dumps(service("web", "10.96.0.10")))  # new folders
    assert src.poll() is not None and names(src) == ["web"]
    write_atomic(tmp_path / "a" / "b" / "db.yaml", json.dumps(service("db", "10.96.0.11")))  # a watched new folder
    assert src.poll() is not None and names(src) == ["db", "web"]
    (tmp_path / "a" / "b" / "db.yaml").rename(tmp_path / "db.txt")  # away from the manifest names
    assert src.poll() is not None and names(src) == ["web"]
    (tmp_path / "a").rename(tmp_path / "c")  # a folder moved: the same file under a new name
    assert src.poll() is not None and names(src) == ["web"] and src.version == folder_version(tmp_path)
    (tmp_path / "c" / "b" / "web.json").write_text(json.dumps(service("web", "10.96.0.12")))  # in place
    snap = src.poll()
    assert snap is not None and snap.services[0].cluster_ip == "10.96.0.12"
    shutil.rmtree(tmp_path / "c")
    snap = src.poll()
    assert snap is not None and snap.services == ()
    assert src.poll() is None


def test_a_configmap_volume_swap_is_seen(tmp_path: Path) -> None:
    """kubelet's atomic writer: files are links through ``..data``, which is swapped to a new folder."""
    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "svc.yaml.txt").write_text(json.dumps(service("web", "10.96.0.10")))
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/svc.yaml.txt", tmp_path / "svc.yaml")
    src = FolderSource(tmp_path)
    snap = src.poll()
    assert snap is not None and snap.services[0].cluster_ip == "10.96.0.10"
    (tmp_path / "..v2").mkdir()
    (tmp_path / "..v2" / "svc.yaml.txt").write_text(json.dumps(service("web", "10.96.0.99")))
    os.symlink("..v2", tmp_path / "..data_tmp")
    os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
    snap = src.poll()
    assert snap is not None and snap.services[0].cluster_ip == "10.96.0.99"


def test_without_inotify_the_folder_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clew.sources import watch

    def refused(root: Path) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(watch, "TreeWatch", refused)
    src = FolderSource(tmp_path)
    assert src.poll() is not None and not src.watch
    write_atomic(tmp_path / "web.json", json.dumps(service("web", "10.96.0.10")))
    assert src.poll() is not None and names(src) == ["web"]
