"""Read the files of a ``clew dump`` folder (the doctor's offline reader)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clew.doctor import facts

TRACE_FILES = ("iptables-save.txt", "ip-addr.json", "ip-route.json", "ip-link.json", "ip-neigh.json",
               "bridge-fdb.json", "ipset.txt")  # fmt: skip
DOCTOR_FILES = (
    facts.SYSCTL_FILE,
    facts.LEGACY_FILE,
    facts.NFT_SAVE_FILE,
    facts.NFT_RULESET_FILE,
    facts.NFT_JSON_FILE,
    facts.CONNTRACK_STAT_FILE,
    facts.CONNTRACK_AFTER_FILE,
    facts.CONNTRACK_UDP_FILE,
    facts.SAMPLE_FILE,
    facts.HOST_FILE,
    facts.METRICS_FILE,
    facts.ETHTOOL_FILE,
    facts.POD_LINKS_FILE,
    facts.HEALTHZ_FILE,
    facts.BIRD_FILE,
)


def read(folder: Path) -> tuple[str, dict[str, str]]:
    """(the node's name as the dump recorded it, the files found). ValueError: not a dump."""
    if not folder.is_dir():
        raise ValueError(f"--from-dump {folder}: not a folder")
    files = {n: (folder / n).read_text(encoding="utf-8") for n in TRACE_FILES + DOCTOR_FILES if (folder / n).is_file()}
    if "ip-link.json" not in files:
        raise ValueError(f"--from-dump {folder}: no ip-link.json in it (written by clew dump?)")
    meta: dict[str, Any] = {}
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        meta = {}
    return str(meta.get("netns") or folder.name), files
