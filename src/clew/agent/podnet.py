"""The agent's pod network half: one node's flannel-like sync, run after each proxy sync.

The order is `clew.podnet`'s (see its package docstring): subnet from the Node, the backend's
device, the lease published as the Node's flannel annotations, ``subnet.env`` for the CNI
plugin, masquerade rules, then routes/neighbours/FDB for every other node's lease, by level.
Against an API server the lease is a PATCH of the Node's status (`KubeSource`); with the folder
source the agent never writes into the user's folder: the lease goes to its state dir as
``node-lease.json`` (`LeaseFile`), for whoever publishes the Node objects to merge (the lab's
control plane does).

With the bgp backend `PodNetAgent.watch` runs every turn of the loop, between syncs: a BIRD that
died is started again at once (its peers keep its routes for the graceful restart time only).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clew.model.objects import Node, Snapshot
from clew.podnet import annotations as flannel_annotations
from clew.podnet import bgp_apply, masquerade, netconf, reconcile, setup, subnets
from clew.podnet.backends.bgp import BgpBackend
from clew.podnet.errors import PodnetError
from clew.podnet.netconf import NetConf
from clew.podnet.subnet_env import SubnetEnv
from clew.sources.files import write_atomic

log = logging.getLogger("clew.podnet")
REVIVE_BACKOFF = 1.0  # seconds between attempts to start a BIRD that will not start
LEASE_FILE = "node-lease.json"  # a contract with the lab: {"node": NAME, "annotations": {...}}


@dataclass(frozen=True)
class LeaseFile:
    """Publishes a lease as ``{"node": NAME, "annotations": {...}}`` in one file; returns
    whether it changed (a publish callback, like `KubeSource.patch_node_annotations`)."""

    path: Path

    def __call__(self, node_name: str, annotations: dict[str, str]) -> bool:
        text = json.dumps({"node": node_name, "annotations": annotations}, indent=2, sort_keys=True) + "\n"
        try:
            if self.path.read_text(encoding="utf-8") == text:
                return False
        except (OSError, UnicodeDecodeError):
            pass
        write_atomic(self.path, text)
        return True


@dataclass
class PodNetAgent:
    conf: NetConf
    netns: str
    node_name: str
    state_dir: Path
    publish: Callable[[str, dict[str, str]], bool]  # (node, annotations) → changed? (the source's)
    underlay_dev: str = "eth0"  # the device holding the node's InternalIP
    bird_files: bgp_apply.BirdFiles | None = None  # set by the first bgp sync: BIRD to watch
    revive_failed_at: float | None = None  # monotonic time of the last failed restart (back-off)

    @classmethod
    def from_files(
        cls,
        net_conf: Path,
        *,
        netns: str,
        node_name: str,
        state_dir: Path,
        publish: Callable[[str, dict[str, str]], bool],
    ) -> PodNetAgent:
        return cls(netconf.load(net_conf), netns, node_name, state_dir, publish)

    @property
    def subnet_file(self) -> Path:
        return self.state_dir / "subnet.env"

    def _me(self, snapshot: Snapshot) -> Node:
        me = next((n for n in snapshot.nodes if n.name == self.node_name), None)
        if me is None:
            raise PodnetError(f'node "{self.node_name}" not found among the Node objects')
        return me

    def sync(self, snapshot: Snapshot) -> dict[str, Any]:
        me = self._me(snapshot)
        subnet = subnets.node_subnet(me, self.conf.network)
        public = ipaddress.IPv4Address(me.internal_ips[0]) if me.internal_ips else None
        underlay = setup.read_underlay(self.netns, self.underlay_dev, public)
        mine = flannel_annotations.lease_from_node(me, self.conf.network) if me.annotations else None
        node = setup.setup_node(self.netns, self.conf, me.name, subnet, underlay,
                                vtep_mac=mine.vtep_mac if mine else None)  # fmt: skip
        if self.publish(me.name, flannel_annotations.lease_annotations(node.lease)):
            log.info("published lease of %s: %s via %s", me.name, subnet, node.lease.public_ip)
        env = SubnetEnv.for_subnet(self.conf.network, subnet, node.pod_mtu, ipmasq=True)
        if not self.subnet_file.exists() or self.subnet_file.read_text() != env.render():
            env.write(self.subnet_file)
        masquerade.apply(self.netns, self.conf.network, subnet)
        found = flannel_annotations.leases(snapshot.nodes, self.conf.network)
        for problem in found.problems:
            log.warning("lease skipped: %s", problem)
        changes = reconcile.reconcile(self.netns, node.backend.desired(node.lease, found.leases, underlay))
        if changes:
            log.info("pod network: %s", changes)
        bgp: dict[str, Any] | None = None
        if isinstance(node.backend, BgpBackend):
            files = self.bird_files = bgp_apply.BirdFiles(self.state_dir)
            inp = node.backend.bird_input(node.lease, found.leases, underlay, str(files.log))
            bgp = bgp_apply.ensure_bird(self.netns, files, inp)
            if bgp["action"] != "unchanged":
                log.info("bird %s (pid %s, %d sessions)", bgp["action"], bgp["pid"], bgp["sessions"])
        return {
            "subnet": str(subnet),
            "mtu": node.pod_mtu,
            "backend": self.conf.backend_type,
            "peers": sum(1 for lease in found.leases if lease.node != me.name),
            "changes": len(changes),
            "problems": list(found.problems),
            **({"bgp": bgp} if bgp is not None else {}),
        }

    def watch(self) -> dict[str, Any] | None:
        """Between syncs: start BIRD again if it died. ``{"old", "pid"}`` when it was restarted,
        ``{"error"}`` when that failed (tried again after `REVIVE_BACKOFF` seconds), else None."""
        if self.bird_files is None:
            return None
        now = time.monotonic()
        if self.revive_failed_at is not None and now - self.revive_failed_at < REVIVE_BACKOFF:
            return None
        try:
            graceful = self.conf.bgp is None or self.conf.bgp.graceful_restart
            revived = bgp_apply.revive(self.netns, self.bird_files, graceful)
        except Exception as e:  # any failure is reported, the loop goes on
            self.revive_failed_at = now
            return {"error": str(e)}
        self.revive_failed_at = None
        if revived is None:
            return None
        old, pid = revived
        return {"old": old, "pid": pid}
