"""Make truncated.iptables from a good dump: what a colleague pastes after a bad copy.

* an unknown table (``*broute``, an ebtables table) pasted between two iptables tables;
* inside ``*filter``, the line ``iptables-save ... 2>&1`` leaves when another program holds
  the xtables lock;
* the dump ends in the middle of the nat table's last KUBE-SERVICES rule (no newline, no
  COMMIT): the NodePort dispatch rule and everything after it are lost.

usage: python truncate.py docker_kube_proxy.iptables > truncated.iptables
"""

import sys
from pathlib import Path

UNKNOWN_TABLE = ["*broute", ":BROUTING ACCEPT [0:0]", "-A BROUTING -p IPv4 -j ACCEPT", "COMMIT"]
GARBAGE = "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?"
CUT = '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the la'


def main(path: str) -> None:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    table = ""
    for line in lines:
        if line.startswith("*"):
            table = line[1:]
            if table == "filter":
                out.extend(UNKNOWN_TABLE)
        if table == "nat" and line.startswith(CUT):
            out.append(CUT)
            break
        out.append(line)
        if table == "filter" and line == "-A FORWARD -j DOCKER-USER":
            out.append(GARBAGE)
    else:
        raise SystemExit(f"{path}: the line to cut at was not found")
    sys.stdout.write("\n".join(out))  # no newline at the end: cut mid-line


if __name__ == "__main__":
    main(sys.argv[1])
