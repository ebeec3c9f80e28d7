"""This node's proxy settings from its Node object: the one function ``clew render`` and the agent
both call, so that what ``render`` prints is what the agent loads.

kube-proxy reads from its own Node object:

* **its IPs** — client-go's ``GetNodeHostIPs``: the InternalIPs, or the ExternalIPs when the Node
  has no InternalIP. clew uses them where kube-proxy uses the node's local addresses: the
  ``-d IP -j KUBE-NODEPORTS`` rules under ``nodePortAddresses`` (kube-proxy accepts NodePorts on
  *every* local address inside those CIDRs) and the load balancer source-range check. Addresses
  given explicitly (``clew render --node-ip``) are *added* to the Node's, first, never replace
  them: a node with InternalIPs 192.168.0.2 and 192.168.1.2 keeps NodePorts on both when
  ``--node-ip 192.168.0.2`` is given. (Without ``nodePortAddresses`` NodePorts match
  ``--dst-type LOCAL`` and the IPs do not matter.)
* **its pod CIDRs** (``spec.podCIDRs``), for ``detectLocalMode: NodeCIDR``; without them pod
  traffic cannot be told apart, which is said in a warning and rendered as no detection.
* **its zone** (the ``topology.kubernetes.io/zone`` label), for topology hints: `policy.node_zone`,
  which reads it from the snapshot for both as well.

Pure: the same base configuration and snapshot give the same result. The base is what the flags and
the configuration file say; it is kept apart from the result, so that a Node whose addresses or
pod CIDRs change is read again on the next sync.
"""

from __future__ import annotations

from dataclasses import replace

from clew.model.objects import Node, Snapshot
from clew.model.proxy_config import DetectLocal, ProxyConfig


def find_node(snapshot: Snapshot, name: str) -> Node | None:
    return next((n for n in snapshot.nodes if n.name == name), None)


def node_ips(node: Node | None, given: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``given`` first, then the Node's InternalIPs (or its ExternalIPs when it has none), once each."""
    from_node = (node.internal_ips or node.external_ips) if node is not None else ()
    return tuple(dict.fromkeys((*given, *from_node)))


def node_config(base: ProxyConfig, snapshot: Snapshot) -> ProxyConfig:
    """``base`` (flags and configuration file) completed with this node's Node object."""
    node = find_node(snapshot, base.node_name)
    config = replace(base, node_ips=node_ips(node, base.node_ips))
    if node is not None and node.pod_cidrs:
        config = replace(config, node_pod_cidrs=node.pod_cidrs)
    if config.detect_local is DetectLocal.NODE_CIDR and not config.node_pod_cidrs:
        note = f"detectLocalMode NodeCIDR but Node {config.node_name} has no podCIDR: pod traffic cannot be told apart"
        config = replace(config, detect_local=DetectLocal.NONE, warnings=(*config.warnings, note))
    return config
