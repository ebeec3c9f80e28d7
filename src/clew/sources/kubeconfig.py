"""Where the kube-apiserver is and how to prove who we are: a kubeconfig file or in-cluster config.

`load_kubeconfig(path)` follows the file's ``current-context`` (or a named one) to its cluster
and user and understands the fields a node agent's kubeconfig uses: ``server``,
``certificate-authority`` / ``-data``, ``insecure-skip-tls-verify``, ``tls-server-name``,
``client-certificate`` / ``-data``, ``client-key`` / ``-data``, ``token`` and ``tokenFile``.
Relative paths are relative to the kubeconfig's folder, as kubectl resolves them. ``exec`` and
``auth-provider`` plugins and basic auth are refused with a clear error (a node agent is given a
certificate or a token).

`in_cluster_config()` is client-go's ``rest.InClusterConfig``: ``KUBERNETES_SERVICE_HOST`` /
``_PORT`` and the service account's ``token`` and ``ca.crt``. The token file is re-read on every
connection, since bound service-account tokens rotate (client-go re-reads it too).

Python's `ssl` loads a client certificate only from files, so ``client-*-data`` is written to
files created with mode 0600 in a private (0700) temporary folder, loaded, and removed at once.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

SERVICE_ACCOUNT_DIR = "var/run/secrets/kubernetes.io/serviceaccount"


class KubeconfigError(Exception):
    """A kubeconfig or in-cluster configuration that cannot be used; the message says why."""


@dataclass(frozen=True)
class ClusterConfig:
    """One API server and one identity. ``*_data`` fields hold PEM text; paths are absolute."""

    server: str  # https://host:port[/prefix]
    ca_file: str | None = None
    ca_data: str | None = None
    cert_file: str | None = None
    cert_data: str | None = None
    key_file: str | None = None
    key_data: str | None = None
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False  # insecure-skip-tls-verify
    tls_server_name: str | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.server).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.server).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.server)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def prefix(self) -> str:
        """A path the server lives under (a proxy's ``/k8s/clusters/c-1``), without a trailing ``/``."""
        return urlsplit(self.server).path.rstrip("/")

    def bearer_token(self) -> str | None:
        """The token to send; a token file is read again each time (it rotates)."""
        if self.token:
            return self.token
        if self.token_file:
            try:
                return Path(self.token_file).read_text(encoding="utf-8").strip() or None
            except OSError as e:
                raise KubeconfigError(f"token file {self.token_file}: {e.strerror or e}") from None
        return None

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: the cluster's CA (or the system's), our certificate if any."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            try:
                if self.ca_file or self.ca_data:
                    ctx.load_verify_locations(cafile=self.ca_file, cadata=self.ca_data)
            except (OSError, ssl.SSLError) as e:
                raise KubeconfigError(f"certificate authority {self.ca_file or '(data)'}: {e}") from None
        if self.cert_file or self.cert_data:
            if not (self.key_file or self.key_data):
                raise KubeconfigError("a client certificate needs a client key")
            _load_client_cert(ctx, self)
        return ctx


def _load_client_cert(ctx: ssl.SSLContext, cfg: ClusterConfig) -> None:
    folder = tempfile.mkdtemp(prefix="clew-kubeconfig-")  # mode 0700
    try:
        cert = cfg.cert_file or _private_file(folder, "client.crt", cfg.cert_data or "")
        key = cfg.key_file or _private_file(folder, "client.key", cfg.key_data or "")
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise KubeconfigError(f"client certificate or key: {e}") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _private_file(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _named(doc: Mapping[str, Any], section: str, name: str, inner: str) -> Mapping[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get(inner) or {}
            if not isinstance(value, Mapping):
                raise KubeconfigError(f"{section}[{name}].{inner} is not a mapping")
            return value
    raise KubeconfigError(f"{section}: no entry named {name!r}")


def _data(block: Mapping[str, Any], key: str) -> str | None:
    raw = block.get(key)
    if raw is None or raw == "":
        return None
    try:
        return base64.b64decode(str(raw), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise KubeconfigError(f"{key}: not base64-encoded PEM") from None


def _path(block: Mapping[str, Any], key: str, base: Path) -> str | None:
    raw = block.get(key)
    if not raw:
        return None
    return str((base / os.path.expanduser(str(raw))).resolve())


def load_kubeconfig(path: Path | str, *, context: str | None = None) -> ClusterConfig:
    """The cluster and user of ``context`` (default: ``current-context``) in a kubeconfig file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise KubeconfigError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    except yaml.YAMLError as e:
        raise KubeconfigError(f"{path}: not YAML: {e}") from None
    if not isinstance(doc, Mapping):
        raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no current-context and no context given")
    try:
        ctx = _named(doc, "contexts", str(name), "context")
        cluster = _named(doc, "clusters", str(ctx.get("cluster")), "cluster")
        user = _named(doc, "users", str(ctx.get("user")), "user") if ctx.get("user") else {}
        return _config(cluster, user, path.resolve().parent)
    except KubeconfigError as e:
        raise KubeconfigError(f"{path}: context {name!r}: {e}") from None


def _config(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path) -> ClusterConfig:
    server = str(cluster.get("server") or "")
    if urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).hostname:
        raise KubeconfigError(f"server {server!r} is not an http(s) URL")
    for unsupported in ("exec", "auth-provider", "username", "password"):
        if user.get(unsupported):
            raise KubeconfigError(f"user.{unsupported} is not supported; use a client certificate or a token")
    return ClusterConfig(
        server=server,
        ca_file=_path(cluster, "certificate-authority", base),
        ca_data=_data(cluster, "certificate-authority-data"),
        cert_file=_path(user, "client-certificate", base),
        cert_data=_data(user, "client-certificate-data"),
        key_file=_path(user, "client-key", base),
        key_data=_data(user, "client-key-data"),
        token=str(user["token"]) if user.get("token") else None,
        token_file=_path(user, "tokenFile", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
    )


def in_cluster_config(root: Path | str = "/", environ: Mapping[str, str] | None = None) -> ClusterConfig:
    """client-go's in-cluster config; ``root`` stands for ``/`` in tests."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeconfigError("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
    folder = Path(root) / SERVICE_ACCOUNT_DIR
    token, ca = folder / "token", folder / "ca.crt"
    if not token.is_file():
        raise KubeconfigError(f"not in a cluster: {token} is missing")
    host_part = f"[{host}]" if ":" in host else host
    return ClusterConfig(
        server=f"https://{host_part}:{port}",
        ca_file=str(ca) if ca.is_file() else None,
        token_file=str(token),
    )
