"""Which proxy modes clew can run: one check, shared by ``clew render`` and ``clew agent``.

A KubeProxyConfiguration may name any of kube-proxy's modes. ``ipvs`` (and anything unknown)
is already refused while the file is read (`clew.model.proxy_config`); a mode kube-proxy has
and clew has not built yet is refused here, with the same line from every command, so that
``clew render`` never prints iptables rules for a configuration the agent would not run.
"""

from __future__ import annotations

from clew.cli.errors import UserError

RUNNABLE = ("iptables", "nftables")


def require_runnable(mode: str) -> None:
    """`UserError` unless clew can program ``mode`` (the effective mode: flag or config file)."""
    if mode not in RUNNABLE:
        raise UserError(f"mode {mode!r}: clew runs the iptables and nftables modes")
