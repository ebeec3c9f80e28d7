"""``clew-cni``'s front door: hand the request to the node agent, or do it here.

A CNI plugin is a fresh process per pod. Python starts in ~7 ms, but importing the plugin (json,
re, typing, ipaddress, …) costs ~15 ms more — together already above the Go reference plugin's
whole ADD. So this entry point imports nothing beyond what the interpreter has already loaded:
it finds ``"agentSocket"`` in the network config by a plain byte search, sends the CNI
environment and the config to the node agent over that unix socket, and relays the agent's
answer. The agent runs the very same `clew.cni.plugin.run` in its long-lived process, in the same
network namespace the runtime would have run the plugin in.

When the config names no socket, or the agent is not there, the request is handled here by
`clew.cni.plugin.run` as usual: slower, never different.

Wire format (client → agent): ``KEY=VALUE\\0`` for each ``CNI_*`` variable, an empty ``\\0``,
then the config bytes; the client closes its writing side. Agent → client: the exit status in
ASCII and ``\\n``, then the plugin's stdout.
"""

from __future__ import annotations

import os
import sys

KEY = b'"agentSocket"'


def socket_path(config: bytes) -> str | None:
    """The value of ``"agentSocket"`` in the JSON config, or None (no JSON parser: see above)."""
    at = config.find(KEY)
    if at < 0:
        return None
    rest = config[at + len(KEY) :].lstrip(b" \t\r\n")
    if not rest.startswith(b":"):
        return None
    rest = rest[1:].lstrip(b" \t\r\n")
    if not rest.startswith(b'"'):
        return None
    end = rest.find(b'"', 1)
    value = rest[1:end] if end > 0 else b""
    if not value or b"\\" in value:
        return None
    return value.decode()


def request(env: dict[str, str], config: bytes) -> bytes:
    head = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items() if k.startswith("CNI_"))
    return head + b"\0" + config


def via_agent(path: str, env: dict[str, str], config: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    """Send the request; (exit status, stdout bytes). OSError if the agent is not listening."""
    import _socket  # the C module: `socket` would import enum and friends (~3 ms)

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request(env, config))
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    reply = b"".join(chunks)
    status, sep, out = reply.partition(b"\n")
    if not sep or not status.isdigit():
        raise OSError("the agent's answer is not a CNI reply")
    return int(status), out


def main() -> None:
    config = sys.stdin.buffer.read()
    env = dict(os.environ)
    path = socket_path(config)
    if path is not None and env.get("CNI_COMMAND") != "VERSION":
        try:
            status, out = via_agent(path, env, config)
        except OSError:
            pass  # no agent (yet): do it here
        else:
            sys.stdout.buffer.write(out)
            sys.stdout.flush()
            raise SystemExit(status)
    from clew.cni.plugin import run

    raise SystemExit(run(env, config, sys.stdout))


if __name__ == "__main__":
    main()
