"""Clients that misbehave on the socket do not hold up the others.

A client that sends a request a byte at a time and then stalls, and one that sends requests
and never reads their (large) replies, each cost the sidecar one connection and a bounded
buffer; other clients' calls complete meanwhile, and the stalled clients are served in full
when they go on. A thousand connections at once are each served, or, past the sidecar's
file-descriptor limit, closed at once; either way the sidecar serves afterwards.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol import framing, routes
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.routes import CONTENT_TYPE, PROTOCOL_HEADER
from rig.sidecar import MEMORY_CONFIG, SidecarProcess

BIG = 1024 * 1024
"""Bytes of the checkpoint whose replies the non-reading client leaves unread."""
CONNECTIONS = 1000
TIMEOUT = 30.0
"""Safety net for every socket operation: a hang fails the test instead of stalling it."""


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    process = SidecarProcess(MEMORY_CONFIG, Path(tempfile.mkdtemp(prefix="ap-sidecar-")))
    yield process.start()
    process.stop()


def _get_frame(thread_id: str) -> bytes:
    request = m.GetTupleRequest(thread_id=thread_id)
    return framing.request_frame(routes.CHECKPOINT_GET_TUPLE.name, 20_000, request)


def _put_frame(thread_id: str, size: int) -> bytes:
    record = m.CheckpointRecord(
        thread_id=thread_id,
        checkpoint_ns="",
        checkpoint_id="1ef00000-0000-6000-8000-000000000001",
        parent_checkpoint_id=None,
        type="bytes",
        checkpoint=b"c" * size,
        metadata=b"{}",
    )
    return framing.request_frame(routes.CHECKPOINT_PUT.name, 20_000, m.PutRequest(record))


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(path)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        assert chunk, "the sidecar closed the connection"
        data += chunk
    return bytes(data)


def _reply(sock: socket.socket) -> tuple[int, Any]:
    (length,) = framing.HEADER.unpack(_recv_exactly(sock, framing.HEADER.size))
    return framing.parse_response(_recv_exactly(sock, length))


def _others_are_served(path: str) -> None:
    """A whole put and get through the client library, on connections of its own."""
    thread = f"other-{uuid.uuid4()}"
    with SidecarSaver(path, timeout=TIMEOUT) as saver:
        config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        stored = saver.put(config, empty_checkpoint(), {"step": 1}, {})  # type: ignore[arg-type]
        got = saver.get_tuple({"configurable": {"thread_id": thread}})
        assert got is not None
        assert got.config == stored


@contextlib.contextmanager
def _stalled_frame_client(path: str, thread_id: str) -> Iterator[tuple[socket.socket, bytes]]:
    """A frame connection that sent the first half of a request a byte at a time, then
    stalled; the rest of its request."""
    sock = _connect(path)
    with sock:
        request = framing.PREFACE + _get_frame(thread_id)
        half = len(request) // 2
        for i in range(half):
            sock.sendall(request[i : i + 1])
        yield sock, request[half:]


def test_a_client_stalled_mid_request_does_not_block_others(sidecar: SidecarProcess) -> None:
    with _stalled_frame_client(sidecar.socket, "nobody") as (stalled, rest):
        _others_are_served(sidecar.socket)
        stalled.sendall(rest)  # it goes on: what it sent a byte at a time was kept
        assert _reply(stalled) == (200, {"record": None})


def test_a_client_stalled_mid_http_headers_does_not_block_others(
    sidecar: SidecarProcess,
) -> None:
    body = framing.pack({"thread_id": "nobody"})
    head = (
        f"POST {routes.CHECKPOINT_GET_TUPLE.path} HTTP/1.1\r\nHost: sidecar\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\n{PROTOCOL_HEADER}: 1\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    request = head + body
    with _connect(sidecar.socket) as stalled:
        half = len(head) // 2
        for i in range(half):
            stalled.sendall(request[i : i + 1])
        _others_are_served(sidecar.socket)
        stalled.sendall(request[half:])
        response = bytearray()
        while chunk := stalled.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(framing.pack({"record": None}))


def test_a_client_that_never_reads_its_replies_does_not_block_others(
    sidecar: SidecarProcess,
) -> None:
    thread = f"big-{uuid.uuid4()}"
    with _connect(sidecar.socket) as writer:
        writer.sendall(framing.PREFACE + _put_frame(thread, BIG))
        assert _reply(writer)[0] == 200
    frame = _get_frame(thread)
    with _connect(sidecar.socket) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.sendall(framing.PREFACE)
        hog.setblocking(False)
        sent, pending = 0, b""
        while True:  # until the sidecar stops reading it: its replies fill the socket
            pending = pending or frame
            try:
                pending = pending[hog.send(pending) :]
            except BlockingIOError:
                break
            if not pending:
                sent += 1
            assert sent < 100_000, "the sidecar kept reading a client that reads nothing"
        _others_are_served(sidecar.socket)

        # The hog reads at last: every request it sent is answered, in order, in full.
        hog.settimeout(TIMEOUT)
        replies: list[tuple[int, Any]] = []
        reader = threading.Thread(
            target=lambda: replies.extend(_reply(hog) for _ in range(sent + bool(pending)))
        )
        reader.start()
        hog.sendall(pending)
        reader.join(TIMEOUT * 4)
        assert not reader.is_alive()
    assert len(replies) == sent + bool(pending)
    assert all(s == 200 and len(b["record"]["checkpoint"]) == BIG for s, b in replies)


def test_an_http_client_that_never_reads_its_replies_does_not_block_others(
    sidecar: SidecarProcess,
) -> None:
    thread = f"big-{uuid.uuid4()}"
    with _connect(sidecar.socket) as writer:
        writer.sendall(framing.PREFACE + _put_frame(thread, BIG))
        assert _reply(writer)[0] == 200
    body = framing.pack({"thread_id": thread})
    request = (
        f"POST {routes.CHECKPOINT_GET_TUPLE.path} HTTP/1.1\r\nHost: sidecar\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\n{PROTOCOL_HEADER}: 1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with _connect(sidecar.socket) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setblocking(False)
        sent, pending = 0, b""
        while True:  # pipelined requests until its unread replies fill the socket
            pending = pending or request
            try:
                pending = pending[hog.send(pending) :]
            except BlockingIOError:
                break
            sent += not pending
            assert sent < 100_000, "the sidecar kept reading a client that reads nothing"
        _others_are_served(sidecar.socket)
        hog.settimeout(TIMEOUT)
        assert hog.recv(16) == b"HTTP/1.1 200 OK\r\n"[:16]  # it was being answered all along


def _open_many(path: str, count: int) -> tuple[list[socket.socket], int]:
    """``count`` connections, each with a request sent; the sockets and how many connects
    were refused outright."""
    socks: list[socket.socket] = []
    refused = 0
    frame = framing.PREFACE + _get_frame("nobody")
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(sock)
            sock.settimeout(TIMEOUT)
            try:
                sock.connect(path)
                sock.sendall(frame)
            except (BlockingIOError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
                socks.pop().close()  # a full listen queue or a closed connection
                refused += 1
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks, refused


def _outcome(sock: socket.socket) -> str:
    """``served`` (a 200 reply) or ``closed`` (no reply: the sidecar shut the connection)."""
    try:
        header = sock.recv(framing.HEADER.size, socket.MSG_WAITALL)
    except ConnectionResetError:
        return "closed"
    if not header:
        return "closed"
    (length,) = framing.HEADER.unpack(header)
    status, _ = framing.parse_response(_recv_exactly(sock, length))
    assert status == 200
    return "served"


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room in this process for the test's thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * CONNECTIONS))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _many_at_once(sidecar: SidecarProcess) -> dict[str, int]:
    socks, refused = _open_many(sidecar.socket, CONNECTIONS)
    try:
        outcomes = [_outcome(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    counts = {
        "served": outcomes.count("served"),
        "closed": outcomes.count("closed"),
        "refused": refused,
    }
    assert sidecar.proc is not None
    assert sidecar.proc.poll() is None, sidecar.log()[-2000:]
    _others_are_served(sidecar.socket)
    return counts


def test_a_thousand_connections_at_once_are_all_served(
    sidecar: SidecarProcess, many_files: None
) -> None:
    counts = _many_at_once(sidecar)
    print(f"\n{CONNECTIONS} connections: {counts}")
    assert counts["served"] == CONNECTIONS


def test_past_its_file_limit_the_sidecar_closes_connections_and_keeps_serving(
    sidecar_factory: Callable[..., SidecarProcess], many_files: None
) -> None:
    sidecar = sidecar_factory(MEMORY_CONFIG)
    assert sidecar.proc is not None
    files = 256
    resource.prlimit(sidecar.proc.pid, resource.RLIMIT_NOFILE, (files, files))
    counts = _many_at_once(sidecar)
    print(f"\n{CONNECTIONS} connections to a sidecar limited to {files} files: {counts}")
    assert counts["served"] + counts["closed"] + counts["refused"] == CONNECTIONS
    assert 0 < counts["served"] < CONNECTIONS
