"""The thin clew-cni client: finding the agent's socket without a JSON parser, and the wire format."""

import json

import pytest

from clew.agent.cni_server import parse_request
from clew.cni.client import request, socket_path


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"type": "clew", "agentSocket": "/run/flannel/cni.sock"}, "/run/flannel/cni.sock"),
        ({"type": "clew"}, None),
        ({"agentSocket": ""}, None),
        ({"agentSocket": 5}, None),
        ({"agentSocket": 'we\\"ird'}, None),  # anything escaped: let the full plugin decide
    ],
)
def test_socket_path(config: dict[str, object], path: str | None) -> None:
    assert socket_path(json.dumps(config).encode()) == path
    assert socket_path(json.dumps(config, indent=2).encode()) == path


def test_request_round_trip_keeps_only_cni_variables() -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc", "CNI_NETNS": "/run/netns/p", "HOME": "/root"}
    config = b'{"cniVersion": "1.1.0", "type": "clew"}'
    got_env, got_config = parse_request(request(env, config))
    assert got_config == config
    assert {k: v for k, v in got_env.items() if k != "PATH"} == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "abc",
        "CNI_NETNS": "/run/netns/p",
    }


def test_request_without_variables() -> None:
    env, config = parse_request(request({}, b"{}"))
    assert config == b"{}" and set(env) == {"PATH"}
