"""The node agent: programs Services (iptables or nftables mode) and the pod network for one node,
and keeps them; ``--cleanup`` removes what either mode and the pod network installed, and exits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clew.agent.loop import Agent
from clew.cli.errors import UserError
from clew.cli.modes import require_runnable
from clew.proxy.inputs import read_config_file
from clew.proxy.runner import SyncRunner
from clew.proxy.syncer import syncer_for
from clew.sources.files import FolderSource

if TYPE_CHECKING:
    from clew.sources.kube import KubeSource


def agent_command(
    config: Annotated[Path | None, typer.Option("--config", help="KubeProxyConfiguration file.")] = None,
    objects: Annotated[Path | None, typer.Option("--objects", help="Folder of manifests to watch.")] = None,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="A kube-apiserver to watch.")] = None,
    netns: Annotated[str | None, typer.Option("--netns", help="The node's network namespace to program.")] = None,
    node_name: Annotated[str | None, typer.Option("--node-name", help="This node (default: hostnameOverride).")] = None,
    net_conf: Annotated[
        Path | None, typer.Option("--net-conf", help="flannel net-conf.json: run the pod network.")
    ] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="Where subnet.env and status go.")] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Sync once and exit; exit 1 if the sync failed or there was nothing to sync.")
    ] = False,
    cni_socket: Annotated[
        Path | None, typer.Option("--cni-socket", help="Serve clew-cni requests here (default <state-dir>/cni.sock).")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="iptables or nftables (default: the config file's mode, else iptables)."),
    ] = None,
    cleanup: Annotated[
        bool,
        typer.Option("--cleanup", help="Remove every rule clew installed (both modes, pod network) and exit."),
    ] = False,
) -> None:
    """The node agent: programs Services (iptables or nftables mode) and the pod network for one node,
    and keeps them; ``--cleanup`` removes what either mode and the pod network installed, and exits."""
    from clew.model.proxy_config import from_kube_proxy_config

    if cleanup:
        _cleanup(netns or "")
        return
    if config is None:
        raise UserError("--config FILE is required (a KubeProxyConfiguration)")
    if objects is not None and kubeconfig is not None:
        raise UserError("give one of --objects PATH and --kubeconfig FILE (neither: in-cluster config)")
    from clew.agent.logs import setup as setup_logs

    setup_logs()
    doc = read_config_file(config)
    if mode is not None:
        doc = {**doc, "mode": mode}
    cfg = from_kube_proxy_config(doc, node_name=node_name)
    require_runnable(cfg.mode)
    for warning in cfg.warnings:
        logging.getLogger("clew.agent").warning("config: %s", warning)
    state = state_dir or Path("/run/clew") / cfg.node_name
    target = netns or ""  # without --netns: the namespace the agent runs in (hostNetwork; Namespace.of)
    source = _source(objects, kubeconfig or (Path(cfg.kubeconfig) if cfg.kubeconfig else None))
    podnet = None
    if net_conf is not None:
        from clew.agent.podnet import LEASE_FILE, LeaseFile, PodNetAgent

        # the folder is the user's: the lease goes to the state dir (the lab merges it into the Node)
        publish = LeaseFile(state / LEASE_FILE) if isinstance(source, FolderSource) else source.patch_node_annotations
        podnet = PodNetAgent.from_files(
            net_conf, netns=target, node_name=cfg.node_name, state_dir=state, publish=publish
        )
    from clew.agent.metrics import Observer
    from clew.agent.servers import BindError, Servers

    obs = Observer(node_name=cfg.node_name, sync_period=cfg.sync_period, mode=cfg.mode)
    agent = Agent(
        source=source,
        proxy=syncer_for(target, cfg),
        runner=SyncRunner(cfg.min_sync_period, cfg.sync_period, cfg.sync_period),
        status_file=state / "status.json",
        podnet=podnet,
        obs=obs,
    )
    if once:
        problem = agent.once()
        if problem is not None:
            raise UserError(f"sync failed: {problem}", exit_code=1)
        return
    from clew.agent.cni_server import CniServer

    servers = Servers(obs.metrics, obs.health, mode=cfg.mode, config=cfg, netns=target)
    try:
        servers.start(cfg.metrics_bind_address, cfg.healthz_bind_address)
    except BindError as e:
        raise UserError(str(e)) from None
    cni = CniServer(cni_socket or state / "cni.sock").start()
    try:
        agent.run()
    finally:
        cni.stop()
        servers.stop()


def _cleanup(netns: str) -> None:
    """``--cleanup``: remove what clew installed in ``netns`` (both proxy modes, the pod network's
    rules), print what went, exit 0; a failure is one line and exit 1 (`UserError`)."""
    from clew.proxy import cleanup
    from clew.proxy.iptables.apply import KernelError, kernel_for

    try:
        removed = cleanup.cleanup_node(kernel_for(netns))
    except KernelError as e:
        raise UserError(f"cleanup failed: {e}", exit_code=1) from None
    for what in removed:
        print(f"removed {what}")


def _source(objects: Path | None, kubeconfig: Path | None) -> FolderSource | KubeSource:
    """A watched folder, a kube-apiserver from a kubeconfig (``--kubeconfig``, else the config's
    ``clientConnection.kubeconfig``), or the in-cluster one."""
    if objects is not None:
        return FolderSource(objects)
    from clew.sources.kube import KubeSource
    from clew.sources.kubeconfig import KubeconfigError, in_cluster_config, load_kubeconfig

    try:
        cluster = load_kubeconfig(kubeconfig) if kubeconfig is not None else in_cluster_config()
    except (KubeconfigError, OSError) as e:
        where = kubeconfig or "in-cluster config (no --objects or --kubeconfig given)"
        raise UserError(f"{where}: {e}") from None
    return KubeSource(cluster)
