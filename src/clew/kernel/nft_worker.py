"""The worker that holds a long-lived libnftables context inside a node's network namespace:
``python -m clew.kernel.nft_worker``, started by `clew.kernel.nftables.NodeNft` through the
runner (``ip netns exec NAME`` / ``nsenter --net=PATH``), so it runs in the namespace from its
first instruction and its ``Nftables()`` context — bound to the namespace it is created in —
speaks to that namespace's netfilter. No ``setns()`` anywhere (Python 3.11 has no ``os.setns``,
and clew never moves a process between namespaces).

Why a long-lived context: one ``add element`` + ``delete element`` costs ~1 ms in it where
``nft -f -`` costs a process start and a cache fill per call (see the bench in
``clew.bench.nft_seam`` and the notes).

Wire (stdin → requests, stdout → answers), all lengths big-endian u32:
* hello, sent once at start: ``b"H"`` + answer body (out = ``pid inode`` of the namespace, or
  err = why no context could be made);
* request: one op byte (``R`` run, ``C`` check, ``L`` list as JSON) + length + UTF-8 text;
* answer: status byte (``0`` ok, ``1`` refused) + out length + err length + out + err.
EOF on stdin (the parent closed it, or died) ends the worker. SIGINT is ignored: a Ctrl-C to
the parent's process group must leave the parent in charge of closing it.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from typing import Any, BinaryIO

REQUEST = struct.Struct(">cI")  # op, length of text
ANSWER = struct.Struct(">cII")  # status, length of out, length of err
RUN, CHECK, LIST, HELLO = b"R", b"C", b"L", b"H"
OK, REFUSED = b"0", b"1"
BIG = 1 << 20  # a request or answer this large (a full load, a listing) is followed by a heap trim
_trim: Any = None


def run_script(ctx: Any, text: str) -> tuple[int, str, str]:
    """``ctx.cmd_from_file`` on a memfd holding ``text``: as fast as ``ctx.cmd(text)`` (measured),
    but nft 1.0.6 then reports an error at ``FILE:LINE:COL`` with the failing line, where for a
    buffer it always shows the buffer's *first* line."""
    fd = os.memfd_create("nft-script", os.MFD_CLOEXEC)
    try:
        os.write(fd, text.encode())
        result: tuple[int, str, str] = ctx.cmd_from_file(f"/proc/self/fd/{fd}")
        return result
    finally:
        os.close(fd)


def perform(ctx: Any, op: bytes, text: str) -> tuple[bool, str, str]:
    """Run one request on a libnftables context: (ok, output, error text). Shared by the worker
    and the in-process context of `NodeNft` for this process's own namespace."""
    if op == RUN:
        rc, out, err = run_script(ctx, text)
    elif op == CHECK:
        ctx.set_dry_run(True)
        try:
            rc, out, err = run_script(ctx, text)
        finally:
            ctx.set_dry_run(False)
    elif op == LIST:
        ctx.set_json_output(True)
        try:
            rc, out, err = ctx.cmd(f"list {text}")
        finally:
            ctx.set_json_output(False)
    else:
        return False, "", f"Error: unknown request {op!r}"
    if len(text) + len(out or "") > BIG:
        give_back_memory()
    return rc == 0, out or "", err or ""


def give_back_memory() -> None:
    """glibc's ``malloc_trim(0)``: after a full load, libnftables has freed the parse of the
    script but the heap keeps it (measured at 10k Services: 100 MB resident after the load,
    22 MB after a trim — the context keeps no elements). A no-op where there is no glibc."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


def write_answer(stream: BinaryIO, status: bytes, out: str, err: str) -> None:
    o, e = out.encode(), err.encode()
    stream.write(ANSWER.pack(status, len(o), len(e)) + o + e)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(inp: BinaryIO, out: BinaryIO) -> int:
    """Answer requests until EOF on ``inp``."""
    try:
        import nftables

        ctx = nftables.Nftables()
    except Exception as e:  # any failure means "no context here": the parent falls back
        write_answer(out, HELLO, "", f"python3-nftables unusable: {type(e).__name__}: {e}")
        return 1
    inode = os.stat("/proc/self/ns/net").st_ino
    write_answer(out, HELLO, f"{os.getpid()} {inode}", "")
    while True:
        head = _read_exact(inp, REQUEST.size)
        if head is None:
            return 0
        op, length = REQUEST.unpack(head)
        body = _read_exact(inp, length)
        if body is None:
            return 0
        ok, text, err = perform(ctx, op, body.decode())
        write_answer(out, OK if ok else REFUSED, text, err)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
