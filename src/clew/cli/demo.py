"""Render the bundled example, load it into a throwaway network namespace, and show the rules.

Needs root (it creates a network namespace, and only that). Everything it makes is removed
before it returns, also on failure or Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from importlib import resources

from clew.cli.errors import UserError
from clew.kernel import iptables, netns
from clew.proxy.inputs import load_snapshot, make_config
from clew.proxy.iptables.apply import full_sync
from clew.proxy.iptables.render import render
from clew.proxy.policy import decide


def demo_command() -> None:
    """Render the bundled example, load it into a throwaway netns with iptables-restore, show it."""
    if os.geteuid() != 0:
        raise UserError("clew demo creates a network namespace: run it as root")
    example = resources.files("clew") / "examples" / "demo.yaml"
    with resources.as_file(example) as path:
        snapshot = load_snapshot(path)
    config = make_config(snapshot, node_name="node-a", cluster_cidr="10.244.0.0/16")
    policies = decide(snapshot, config)
    rendered = render(policies, config)
    name = f"clew-demo-{os.getpid()}"
    say = print
    say(
        f"clew demo: {len(policies)} Service ports from {example.name}, node {config.node_name} "
        f"({', '.join(config.node_ips)}), pods {config.cluster_cidrs[0]}"
    )
    for p in policies:
        verdict = p.internal_verdict or p.external_verdict
        say(
            f"  {p.spn:<22} {p.cluster_ip}:{p.port:<5} endpoints: cluster {len(p.cluster_endpoints)}, "
            f"local {len(p.local_endpoints)}" + (f", filter {verdict.value}" if verdict else "")
        )
    netns.create(name)
    try:
        full_sync(name, rendered)
        saved = iptables.save(name)
        chains = [line for line in saved.splitlines() if line.startswith(":KUBE-")]
        rules = [line for line in saved.splitlines() if line.startswith("-A ")]
        say(
            f"\nLoaded into network namespace {name}: {len(chains)} KUBE-* chains, {len(rules)} rules. "
            "iptables-save shows:\n"
        )
        sys.stdout.write(saved)
        say(f"\nTry: clew render --objects {example} --node-name node-a --cluster-cidr 10.244.0.0/16")
    finally:
        netns.delete(name)
        say(f"Removed network namespace {name}.")
