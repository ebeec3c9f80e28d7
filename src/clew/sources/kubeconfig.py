"""Where the kube-apiserver is and how to prove who we are: a kubeconfig file or in-cluster config.

`load_kubeconfig(path)` follows the file's ``current-context`` (or a named one) to its cluster
and user and understands the fields a node agent's kubeconfig uses: ``server``,
``certificate-authority`` / ``-data``, ``insecure-skip-tls-verify``, ``tls-server-name``,
``client-certificate`` / ``-data``, ``client-key`` / ``-data``, ``token`` and ``tokenFile``.
Relative paths are relative to the kubeconfig's folder, as kubectl resolves them. ``exec`` and
``auth-provider`` plugins and basic auth are refused with a clear error (a node agent is given a
certificate or a token).

Fields are typed as kubectl's (client-go's ``clientcmd/api/v1``) and read as strictly: a boolean
field takes only a YAML boolean (``insecure-skip-tls-verify: "false"``, a string, is refused, as
kubectl refuses it, instead of being truthy), a string field only a string. A certificate
authority together with ``insecure-skip-tls-verify: true`` is refused with client-go's words.

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

    def security_warning(self) -> str | None:
        """What an operator must hear at start when the API server's identity is not checked."""
        if self.scheme == "http":
            return f"{self.server} is plain http: the API server is not authenticated and traffic is not encrypted"
        if self.insecure:
            return (
                f"TLS verification of {self.server} is off (insecure-skip-tls-verify: true): anyone on the path "
                "can impersonate the API server and program this node's Services"
            )
        return None

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


class _Block:
    """One section of a kubeconfig (``clusters[k].cluster``) with typed reads that name the field."""

    def __init__(self, where: str, values: Mapping[str, Any]) -> None:
        self.where, self.values = where, values

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def string(self, key: str) -> str | None:
        """A string field; None when unset or empty (kubectl's zero value)."""
        raw = self.values.get(key)
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise KubeconfigError(f"{self.where}.{key}: must be a string, not {type(raw).__name__} {raw!r}")
        return raw or None

    def boolean(self, key: str) -> bool:
        """A boolean field: only a YAML boolean (``true``/``false``); a quoted "false" is a string
        and refused, as kubectl's decoder refuses it, never read as truthy."""
        raw = self.values.get(key)
        if raw is None:
            return False
        if not isinstance(raw, bool):
            raise KubeconfigError(
                f"{self.where}.{key}: must be true or false (unquoted), not {type(raw).__name__} {raw!r}"
            )
        return raw

    def data(self, key: str) -> str | None:
        raw = self.string(key)
        if raw is None:
            return None
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise KubeconfigError(f"{self.where}.{key}: not base64-encoded PEM") from None

    def path(self, key: str, base: Path) -> str | None:
        raw = self.string(key)
        if raw is None:
            return None
        return str((base / os.path.expanduser(raw)).resolve())


def _named(doc: Mapping[str, Any], section: str, name: str, inner: str) -> _Block:
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise KubeconfigError(f"{section}: must be a list, not {type(entries).__name__}")
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get(inner) or {}
            if not isinstance(value, Mapping):
                raise KubeconfigError(f"{section}[{name}].{inner} is not a mapping")
            return _Block(f"{section}[{name}].{inner}", value)
    raise KubeconfigError(f"{section}: no entry named {name!r}")


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
    try:
        name = context or _Block("kubeconfig", doc).string("current-context")
        if not name:
            raise KubeconfigError("no current-context and no context given")
    except KubeconfigError as e:
        raise KubeconfigError(f"{path}: {e}") from None
    try:
        ctx = _named(doc, "contexts", name, "context")
        cluster_name = ctx.string("cluster")
        if not cluster_name:
            raise KubeconfigError(f"{ctx.where}.cluster: is required")
        cluster = _named(doc, "clusters", cluster_name, "cluster")
        user_name = ctx.string("user")
        user = _named(doc, "users", user_name, "user") if user_name else _Block("user", {})
        return _config(cluster, user, path.resolve().parent)
    except KubeconfigError as e:
        raise KubeconfigError(f"{path}: context {name!r}: {e}") from None


def _config(cluster: _Block, user: _Block, base: Path) -> ClusterConfig:
    server = cluster.string("server") or ""
    if urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).hostname:
        raise KubeconfigError(f"{cluster.where}.server: {server!r} is not an http(s) URL")
    for unsupported in ("exec", "auth-provider", "username", "password"):
        if user.get(unsupported):
            raise KubeconfigError(f"user.{unsupported} is not supported; use a client certificate or a token")
    insecure = cluster.boolean("insecure-skip-tls-verify")
    cluster.boolean("disable-compression")  # typed as kubectl has it; clew does not compress anyway
    ca_file = cluster.path("certificate-authority", base)
    ca_data = cluster.data("certificate-authority-data")
    if insecure and (ca_file or ca_data):
        raise KubeconfigError(
            f"{cluster.where}: certificate-authority{'' if ca_file else '-data'} with insecure-skip-tls-verify: "
            "specifying a root certificates file with the insecure flag is not allowed"
        )
    return ClusterConfig(
        server=server,
        ca_file=ca_file,
        ca_data=ca_data,
        cert_file=user.path("client-certificate", base),
        cert_data=user.data("client-certificate-data"),
        key_file=user.path("client-key", base),
        key_data=user.data("client-key-data"),
        token=user.string("token"),
        token_file=user.path("tokenFile", base),
        insecure=insecure,
        tls_server_name=cluster.string("tls-server-name"),
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
