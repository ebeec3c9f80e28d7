"""A one-layer OCI image tarball of busybox-static, built in Python for ``ctr images import``.

No registry and no network: the layer holds ``/bin/busybox`` (Debian's ``busybox-static``), a
symlink per applet asked for, ``/etc/passwd`` and ``/etc/group`` and the empty mount points; the
tarball is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) whose index
carries the ``io.containerd.image.name`` annotation containerd imports the image under.
Timestamps are fixed, so the same busybox always gives the same digests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

BUSYBOX = "/bin/busybox"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
_MTIME = 1_700_000_000


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, link: str = "", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = _MTIME, mode
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _layer(busybox: bytes, applets: Iterable[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "dev", "proc", "sys", "tmp", "root", "run"):
            _add(tar, d)
        _add(tar, "bin/busybox", data=busybox, mode=0o755)
        for applet in sorted(set(applets) - {"busybox"}):
            _add(tar, f"bin/{applet}", link="busybox")
        _add(tar, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        _add(tar, "etc/group", data=b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes, media_type: str) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    _add(tar, f"blobs/sha256/{digest}", data=data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def build_busybox_image(path: Path, image_name: str, applets: Iterable[str], busybox: str = BUSYBOX) -> None:
    """Write the image layout tarball to ``path``; ``image_name`` is e.g. ``eco.local/busybox:1``."""
    layer = _layer(Path(busybox).read_bytes(), applets)
    arch = _ARCH.get(os.uname().machine, os.uname().machine)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "blobs")
        _add(tar, "blobs/sha256")
        layer_desc = _blob(tar, layer, "application/vnd.oci.image.layer.v1.tar")
        config_desc = _blob(tar, _json(config), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = _blob(tar, _json(manifest), "application/vnd.oci.image.manifest.v1+json")
        tag = image_name.rpartition(":")[2]
        manifest_desc |= {
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": image_name, "org.opencontainers.image.ref.name": tag},
        }
        _add(tar, "oci-layout", data=_json({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", data=_json({"schemaVersion": 2, "manifests": [manifest_desc]}))


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
