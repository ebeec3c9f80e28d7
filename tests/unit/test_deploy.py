"""deploy/: the manifests parse, the RBAC is the least set, the DaemonSet mounts and runs what the
agent and clew-cni read, and the ConfigMap's files load with clew's own parsers."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from clew.cni import config as cni_config
from clew.model.proxy_config import from_kube_proxy_config
from clew.podnet import netconf

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NS = "kube-system"

KINDS = {
    "namespace.yaml": ("v1", "Namespace"),
    "serviceaccount.yaml": ("v1", "ServiceAccount"),
    "clusterrole.yaml": ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    "clusterrolebinding.yaml": ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    "configmap.yaml": ("v1", "ConfigMap"),
    "daemonset.yaml": ("apps/v1", "DaemonSet"),
}

# (API group, resource, verb): exactly these, nothing else.
LEAST_RIGHTS = {
    ("", "services", "list"),
    ("", "services", "watch"),
    ("discovery.k8s.io", "endpointslices", "list"),
    ("discovery.k8s.io", "endpointslices", "watch"),
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("", "nodes/status", "get"),
    ("", "nodes/status", "patch"),
}

AGENT_COMMAND = [
    "clew", "agent", "--config", "/etc/clew/kube-proxy.yaml", "--net-conf", "/etc/clew/net-conf.json",
    "--node-name", "$(NODE_NAME)", "--state-dir", "/run/flannel",
]  # fmt: skip

# container mount path -> host path, per container
AGENT_HOST_MOUNTS = {
    "/run/flannel": "/run/flannel",
    "/var/lib/cni": "/var/lib/cni",
    "/run/xtables.lock": "/run/xtables.lock",
    "/lib/modules": "/lib/modules",
}
INIT_HOST_MOUNTS = {
    "/host/opt/clew": "/opt/clew",
    "/host/opt/cni/bin": "/opt/cni/bin",
    "/host/etc/cni/net.d": "/etc/cni/net.d",
}


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]


def one(name: str) -> dict[str, Any]:
    (doc,) = load(name)
    return doc


@pytest.fixture(scope="module")
def ds() -> dict[str, Any]:
    return one("daemonset.yaml")


@pytest.fixture(scope="module")
def pod(ds: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = ds["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def agent(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return dict(container)


@pytest.fixture(scope="module")
def init(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["initContainers"]
    return dict(container)


@pytest.fixture(scope="module")
def files() -> Mapping[str, str]:
    data: dict[str, str] = one("configmap.yaml")["data"]
    return data


def volumes(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod["volumes"]}


def host_mounts(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
    by_name = volumes(pod)
    return {
        m["mountPath"]: by_name[m["name"]]["hostPath"]["path"]
        for m in container["volumeMounts"]
        if "hostPath" in by_name[m["name"]]
    }


def mount(container: Mapping[str, Any], path: str) -> dict[str, Any]:
    (found,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    return dict(found)


# -- every manifest ------------------------------------------------------------------------------


def test_every_yaml_is_known_and_parses() -> None:
    assert sorted(p.name for p in DEPLOY.glob("*.yaml")) == sorted(KINDS)
    assert not list(DEPLOY.glob("*.json")) and not list(DEPLOY.glob("*.yml"))  # kubectl apply -f would take them


@pytest.mark.parametrize(("name", "want"), KINDS.items())
def test_kind_and_api_version(name: str, want: tuple[str, str]) -> None:
    doc = one(name)
    assert (doc["apiVersion"], doc["kind"]) == want
    if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
        assert doc["metadata"]["namespace"] == NS


def test_namespace_is_kube_system() -> None:
    assert one("namespace.yaml")["metadata"]["name"] == NS


# -- RBAC ---------------------------------------------------------------------------------------


def test_cluster_role_is_the_least_set() -> None:
    role = one("clusterrole.yaml")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames, nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb)
                    granted.add((group, resource, verb))
    assert granted == LEAST_RIGHTS
    assert "aggregationRule" not in role


def test_binding_ties_the_role_to_the_service_account(pod: dict[str, Any]) -> None:
    binding = one("clusterrolebinding.yaml")
    role, account = one("clusterrole.yaml"), one("serviceaccount.yaml")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NS}]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account.get("automountServiceAccountToken", True) is True  # the in-cluster config's token


# -- DaemonSet ----------------------------------------------------------------------------------


def test_daemonset_shape(ds: dict[str, Any], pod: dict[str, Any]) -> None:
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]  # every taint, any effect
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_agent_command_and_env(agent: dict[str, Any]) -> None:
    assert agent["command"] == AGENT_COMMAND
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    for name, key in (("KUBERNETES_SERVICE_HOST", "apiserver-host"), ("KUBERNETES_SERVICE_PORT", "apiserver-port")):
        ref = env[name]["valueFrom"]["configMapKeyRef"]
        assert ref == {"name": "clew-config", "key": key, "optional": True}


def test_same_image_for_both(agent: dict[str, Any], init: dict[str, Any]) -> None:
    assert agent["image"] == init["image"]


def test_agent_is_unprivileged_with_net_admin_and_net_raw(agent: dict[str, Any]) -> None:
    sc = agent["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}


def test_init_is_unprivileged_file_copying(init: dict[str, Any]) -> None:
    sc = init["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]}


def test_agent_mounts(pod: dict[str, Any], agent: dict[str, Any]) -> None:
    assert host_mounts(pod, agent) == AGENT_HOST_MOUNTS
    by_name = volumes(pod)
    lock = by_name[mount(agent, "/run/xtables.lock")["name"]]["hostPath"]
    assert lock["type"] == "FileOrCreate"
    assert mount(agent, "/lib/modules")["readOnly"] is True
    config = mount(agent, "/etc/clew")
    assert config["readOnly"] is True and by_name[config["name"]]["configMap"]["name"] == "clew-config"
    assert "emptyDir" in by_name[mount(agent, "/tmp")["name"]]  # the root filesystem is read-only


def test_init_mounts(pod: dict[str, Any], init: dict[str, Any]) -> None:
    assert host_mounts(pod, init) == INIT_HOST_MOUNTS
    assert volumes(pod)[mount(init, "/etc/clew")["name"]]["configMap"]["name"] == "clew-config"


def test_every_volume_is_used_and_every_mount_defined(pod: dict[str, Any]) -> None:
    used = {m["name"] for c in (*pod["containers"], *pod["initContainers"]) for m in c["volumeMounts"]}
    assert used == set(volumes(pod))


def test_probes_and_resources(agent: dict[str, Any], files: Mapping[str, str]) -> None:
    healthz = yaml.safe_load(files["kube-proxy.yaml"])["healthzBindAddress"]
    port = int(healthz.rsplit(":", 1)[1])
    assert agent["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert healthz.startswith("0.0.0.0:")  # the kubelet probes a hostNetwork pod on the node's IP
    assert {"cpu", "memory"} <= set(agent["resources"]["requests"])


def test_config_files_are_where_the_command_reads_them(agent: dict[str, Any], files: Mapping[str, str]) -> None:
    folder = mount(agent, "/etc/clew")["mountPath"]
    args = agent["command"]
    for flag in ("--config", "--net-conf"):
        path = Path(args[args.index(flag) + 1])
        assert str(path.parent) == folder and path.name in files


# -- the ConfigMap's files, read by clew's own parsers ---------------------------------------------


def test_kube_proxy_config_loads_without_warnings(files: Mapping[str, str]) -> None:
    doc = yaml.safe_load(files["kube-proxy.yaml"])
    config = from_kube_proxy_config(doc)
    assert config.warnings == ()
    assert config.mode == "iptables"
    assert config.cluster_cidrs == ("10.244.0.0/16",)
    assert (config.min_sync_period, config.sync_period) == (1.0, 30.0)
    assert config.metrics_bind_address == "127.0.0.1:10249"
    assert config.healthz_bind_address == "0.0.0.0:10256"
    # no route_localnet sysctl to write: the agent runs unprivileged (deploy/README.md)
    assert config.localhost_nodeports is False


def test_net_conf_loads_and_matches_the_cluster_cidr(files: Mapping[str, str]) -> None:
    net = netconf.parse(files["net-conf.json"])
    assert (str(net.network), net.backend_type) == ("10.244.0.0/16", "vxlan")
    proxy = from_kube_proxy_config(yaml.safe_load(files["kube-proxy.yaml"]))
    assert proxy.cluster_cidrs == (str(net.network),)


def plugin_configs(conflist: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Each plugin's config as libcni hands it over: the list's name and cniVersion injected."""
    for plugin in conflist["plugins"]:
        yield {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}


def test_conflist_loads_with_clew_cnis_parser(files: Mapping[str, str], agent: dict[str, Any]) -> None:
    conflist = json.loads(files["10-clew.conflist"])
    # 1.0.0: the newest version portmap 1.1.x (Debian 12) and containerd 1.6's libcni accept
    assert (conflist["cniVersion"], conflist["name"]) == ("1.0.0", "cbr0")
    clew, portmap = plugin_configs(conflist)
    parsed = cni_config.parse(json.dumps(clew))
    assert (parsed.cni_version, parsed.name, parsed.type) == ("1.0.0", "cbr0", "clew")
    assert (parsed.bridge, parsed.hairpin_mode, parsed.data_dir) == ("cni0", True, "/var/lib/cni/networks")
    # the plugin reads the subnet file the agent writes into --state-dir
    args = agent["command"]
    assert Path(parsed.subnet_file).parent == Path(args[args.index("--state-dir") + 1])
    assert portmap["type"] == "portmap" and portmap["capabilities"] == {"portMappings": True}


def test_apiserver_address_keys_are_left_for_the_operator(files: Mapping[str, str]) -> None:
    assert "apiserver-host" not in files and "apiserver-port" not in files
    assert "#apiserver-host:" in (DEPLOY / "configmap.yaml").read_text()


# -- the image and its scripts ---------------------------------------------------------------------


def test_containerfile_key_lines() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    assert "FROM debian:12-slim" in lines
    (install,) = [line for line in lines if "apt-get install" in line]
    assert "--no-install-recommends" in install
    for package in ("iptables", "nftables", "iproute2", "conntrack", "python3", "python3-venv", "patchelf", "bird2"):
        assert re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", install), package
    assert any(line.startswith("RUN sh /usr/local/lib/clew/bundle-python.sh /src /opt/clew/current") for line in lines)
    assert 'ENTRYPOINT ["clew"]' in lines
    assert any(line.startswith("ENV PATH=/opt/clew/current/bin:") for line in lines)
    assert "COPY deploy/bundle-python.sh deploy/install-cni.sh /usr/local/lib/clew/" in lines


def test_init_runs_the_installed_script(init: dict[str, Any]) -> None:
    assert init["command"] == ["/usr/local/lib/clew/install-cni.sh"]


def script_defaults(name: str) -> dict[str, str]:
    text = (DEPLOY / name).read_text()
    return dict(re.findall(r"^(\w+)=\$\{\1:-([^}]*)\}$", text, re.MULTILINE))


def test_install_script_defaults_match_the_mounts(pod: dict[str, Any], init: dict[str, Any]) -> None:
    defaults = script_defaults("install-cni.sh")
    mounts = host_mounts(pod, init)
    # the runtime only runs at the path it was built for: the image's path is the host's
    assert defaults["CLEW_SRC"] == mounts[defaults["CLEW_HOST_DIR"]] + "/current"
    assert mounts[defaults["CNI_BIN_DIR"]] == "/opt/cni/bin"
    assert mounts[defaults["CNI_CONF_DIR"]] == "/etc/cni/net.d"
    assert defaults["CNI_CONFLIST"] == mount(init, "/etc/clew")["mountPath"] + "/" + defaults["CONFLIST_NAME"]
    assert defaults["CONFLIST_NAME"] in one("configmap.yaml")["data"]


@pytest.mark.parametrize("name", ["install-cni.sh", "bundle-python.sh"])
def test_scripts_parse(name: str) -> None:
    subprocess.run(["sh", "-n", str(DEPLOY / name)], check=True)


def fake_runtime(root: Path, build_id: str) -> Path:
    src = root / "image" / "current"
    (src / "bin").mkdir(parents=True)
    (src / "BUILD-ID").write_text(build_id + "\n")
    (src / "bin" / "clew-cni").write_text(f"#!/opt/clew/current/bin/python3 -SIB\n# {build_id}\n")
    return src


def run_install(root: Path, src: Path, conflist: str) -> str:
    (root / "conflist").write_text(conflist)
    (root / "portmap").write_text("portmap")
    env = {
        **os.environ,
        "CLEW_SRC": str(src),
        "CLEW_HOST_DIR": str(root / "host/opt/clew"),
        "CNI_BIN_DIR": str(root / "host/opt/cni/bin"),
        "CNI_CONF_DIR": str(root / "host/etc/cni/net.d"),
        "CNI_CONFLIST": str(root / "conflist"),
        "PORTMAP": str(root / "portmap"),
    }
    done = subprocess.run(["sh", str(DEPLOY / "install-cni.sh")], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def test_install_cni_puts_everything_in_place_and_upgrades_by_rename(tmp_path: Path, files: Mapping[str, str]) -> None:
    host = tmp_path / "host"
    run_install(tmp_path, fake_runtime(tmp_path / "a", "aaaa"), files["10-clew.conflist"])
    runtime = host / "opt/clew"
    assert os.readlink(runtime / "current") == "aaaa"
    assert (runtime / "aaaa/BUILD-ID").read_text() == "aaaa\n"
    plugin = host / "opt/cni/bin/clew"
    assert plugin.read_text().startswith("#!/opt/clew/current/bin/python3") and os.access(plugin, os.X_OK)
    assert (host / "opt/cni/bin/portmap").read_text() == "portmap"
    assert json.loads((host / "etc/cni/net.d/10-clew.conflist").read_text()) == json.loads(files["10-clew.conflist"])

    # the host's own portmap is kept; a second build becomes current, the first stays as previous
    (host / "opt/cni/bin/portmap").write_text("the host's")
    out = run_install(tmp_path, fake_runtime(tmp_path / "b", "bbbb"), files["10-clew.conflist"])
    assert (host / "opt/cni/bin/portmap").read_text() == "the host's"
    assert os.readlink(runtime / "current") == "bbbb"
    assert sorted(p.name for p in runtime.iterdir()) == ["aaaa", "bbbb", "current"]
    assert "# bbbb" in plugin.read_text()
    assert "copied runtime bbbb" in out

    # a third build: the oldest goes, nothing half-written is left behind
    run_install(tmp_path, fake_runtime(tmp_path / "c", "cccc"), files["10-clew.conflist"])
    assert sorted(p.name for p in runtime.iterdir()) == ["bbbb", "cccc", "current"]
    leftovers = [p.name for d in (runtime, host / "opt/cni/bin", host / "etc/cni/net.d") for p in d.iterdir()]
    assert not [name for name in leftovers if name.startswith(".")]

    # the same build again: not copied again
    assert "already on the host" in run_install(tmp_path, tmp_path / "c/image/current", files["10-clew.conflist"])


def test_readme_names_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name
    assert "in-cluster" in readme and "kubectl apply -f deploy/" in readme
