"""The plugin's network configuration (stdin) and its CNI version.

Keys are flannel's and host-local's names, so their users recognise them::

    {"cniVersion": "1.1.0", "name": "cbr0", "type": "clew",
     "subnetFile": "/run/flannel/subnet.env",   # flannel's subnet.env
     "dataDir": "/var/lib/cni/networks",        # IPAM store root (host-local's layout)
     "bridge": "cni0", "hairpinMode": true,
     "mtu": 1450}                               # optional; overrides FLANNEL_MTU

plus the spec's ``prevResult``, ``runtimeConfig``, ``args`` and (GC) ``cni.dev/valid-attachments``.
Unknown keys are ignored, as every reference plugin does. Bad JSON is error 6, a bad value 7, an
unsupported version 1.

Versions: the spec's 0.3.0 and 0.3.1 share 0.4.0's result shape (``ips[].version``) and flannel's
stock conflist still says 0.3.1, so they are accepted too; CHECK needs ≥ 0.4.0, STATUS and GC
1.1.0. A config that lists ``cniVersions`` and no usable ``cniVersion`` gets the highest listed
version this plugin supports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from clew.cni.errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, CniError

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
DEFAULT_BRIDGE = "cni0"
VALID_ATTACHMENTS = "cni.dev/valid-attachments"
OLD_ATTACHMENTS = "cni.dev/attachments"  # the pre-1.1 name libcni still sends alongside

# The spec's rule for container IDs and network names (the name is also a directory under
# dataDir), checked without a regex: compiling one costs the plugin's every run ~0.3 ms.
ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$"
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")


def version_key(version: str) -> tuple[int, ...]:
    """``"1.0.0"`` → ``(1, 0, 0)``; a malformed version sorts first."""
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (-1,)


def at_least(version: str, minimum: str) -> bool:
    return version_key(version) >= version_key(minimum)


class Attachment(NamedTuple):
    """One container's interface on this network: the key of everything the plugin keeps."""

    container_id: str
    ifname: str


class NetConf(NamedTuple):
    cni_version: str
    name: str
    type: str
    subnet_file: str = DEFAULT_SUBNET_FILE
    data_dir: str = DEFAULT_DATA_DIR
    bridge: str = DEFAULT_BRIDGE
    hairpin_mode: bool = True
    mtu: int | None = None
    prev_result: Mapping[str, object] | None = None
    valid_attachments: tuple[Attachment, ...] | None = None


def valid_id(text: str) -> bool:
    """Whether ``text`` matches :data:`ID_PATTERN` (container IDs, network names)."""
    return bool(text) and text[0] in _ALNUM and all(c in _ID_CHARS for c in text)


# Characters an interface name must not carry: the kernel's ``/`` and ``:``; and what ``ip -batch``
# (the plugin's way to the kernel) reads specially — ``#`` starts a comment, quotes and ``\``
# quote. Whitespace and control characters are checked apart (the kernel refuses whitespace; a
# newline would end a batch line).
IFNAME_FORBIDDEN = frozenset("/:#\"'\\")


def valid_ifname(name: str) -> bool:
    """Linux's rule for interface names (1-15 bytes, not ``.``/``..``, no ``/``, ``:`` or whitespace),
    plus no character ``ip -batch`` would read specially (:data:`IFNAME_FORBIDDEN`, control characters)."""
    return (
        0 < len(name.encode(errors="replace")) <= 15
        and name not in (".", "..")
        and not any(c in IFNAME_FORBIDDEN or c.isspace() or not c.isprintable() for c in name)
    )


def decode(stdin: bytes | str) -> dict[str, object]:
    """The JSON object on stdin, or error 6."""
    try:
        obj = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODING_FAILURE, "decoding failure", f"network config is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CniError(DECODING_FAILURE, "decoding failure", "network config is not a JSON object")
    return obj


def negotiate(obj: Mapping[str, object]) -> str:
    """The version to speak: ``cniVersion`` if supported, else the highest of ``cniVersions``."""
    version = obj.get("cniVersion", "0.1.0")
    versions = obj.get("cniVersions")
    if not isinstance(version, str):
        raise CniError(INVALID_CONFIG, "invalid network config", "cniVersion must be a string")
    if version in SUPPORTED_VERSIONS:
        return version
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise CniError(INVALID_CONFIG, "invalid network config", "cniVersions must be a list of strings")
        usable: list[str] = [v for v in versions if v in SUPPORTED_VERSIONS]
        if usable:
            return max(usable, key=version_key)
    raise CniError(
        INCOMPATIBLE_VERSION,
        "incompatible CNI versions",
        f"config is {version!r}; plugin supports {', '.join(SUPPORTED_VERSIONS)}",
    )


def version_hint(stdin: bytes | str) -> str:
    """The version to write an early error in: the config's if it is supported, else the latest."""
    try:
        return negotiate(decode(stdin))
    except CniError:
        return LATEST


def _bad(key: str, why: str) -> CniError:
    return CniError(INVALID_CONFIG, "invalid network config", f"{key}: {why}")


def _str(obj: Mapping[str, object], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or not value:
        raise _bad(key, "required, a non-empty string" if default is None else "must be a non-empty string")
    return value


def _attachments(raw: object) -> tuple[Attachment, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _bad(VALID_ATTACHMENTS, "must be a list of {containerID, ifname}")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str):
            raise _bad(VALID_ATTACHMENTS, f"bad entry {json.dumps(item)}")
        ifname = item.get("ifname")
        if not isinstance(ifname, str):
            raise _bad(VALID_ATTACHMENTS, f"bad entry {json.dumps(item)}")
        out.append(Attachment(item["containerID"], ifname))
    return tuple(out)


def parse(stdin: bytes | str) -> NetConf:
    """Decode and validate the config; :class:`CniError` 6, 7 or 1 otherwise."""
    obj = decode(stdin)
    version = negotiate(obj)
    name = _str(obj, "name")
    if not valid_id(name):
        raise _bad("name", f"{name!r} must match {ID_PATTERN}")
    bridge = _str(obj, "bridge", DEFAULT_BRIDGE)
    if not valid_ifname(bridge):
        raise _bad("bridge", f"{bridge!r} is not an interface name")
    hairpin = obj.get("hairpinMode", True)
    if not isinstance(hairpin, bool):
        raise _bad("hairpinMode", "must be true or false")
    mtu = obj.get("mtu")
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
        raise _bad("mtu", f"{mtu!r} is not an MTU (68-65535)")
    prev = obj.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _bad("prevResult", "must be an object")
    for key in ("runtimeConfig", "args"):
        if obj.get(key) is not None and not isinstance(obj.get(key), dict):
            raise _bad(key, "must be an object")
    return NetConf(
        cni_version=version,
        name=name,
        type=_str(obj, "type"),
        subnet_file=_str(obj, "subnetFile", DEFAULT_SUBNET_FILE),
        data_dir=_str(obj, "dataDir", DEFAULT_DATA_DIR),
        bridge=bridge,
        hairpin_mode=hairpin,
        mtu=mtu,
        prev_result=prev,
        valid_attachments=_attachments(obj.get(VALID_ATTACHMENTS, obj.get(OLD_ATTACHMENTS))),
    )
