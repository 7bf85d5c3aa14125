"""Replies on one frame connection go out in request order, refusals included: an oversize
frame read while an earlier request still waits on its backend is refused after that
request's reply, and the connection then goes on serving (the documented behaviour: the
oversize body is skipped, the connection survives)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey

from agentpersistence.client.protocol import framing, routes
from agentpersistence.client.protocol import messages as m
from rig.sidecar import SidecarProcess, valkey_checkpointer

LIMIT = 64 * 1024
OVERSIZE = 8 * 1024 * 1024
"""Far beyond the socket's buffers: once ``sendall`` of it returns, the sidecar has read
this frame's header (and so decided its refusal)."""


@pytest.fixture
def paused_writes(admin: valkey.Valkey) -> Iterator[valkey.Valkey]:
    """Valkey holding every write command until the test unpauses it (or ends)."""
    admin.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        yield admin
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")


def _put_frame(thread_id: str) -> bytes:
    record = m.CheckpointRecord(
        thread_id=thread_id,
        checkpoint_ns="",
        checkpoint_id="1ef00000-0000-6000-8000-000000000001",
        parent_checkpoint_id=None,
        type="msgpack",
        checkpoint=b"\x80",
        metadata=b"{}",
    )
    return framing.request_frame(routes.CHECKPOINT_PUT.name, 20_000, m.PutRequest(record))


def _get_frame(thread_id: str) -> bytes:
    request = m.GetTupleRequest(thread_id=thread_id)
    return framing.request_frame(routes.CHECKPOINT_GET_TUPLE.name, 20_000, request)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the sidecar closed the connection"
        data += chunk
    return bytes(data)


def _reply(sock: socket.socket) -> tuple[int, Any]:
    (length,) = framing.HEADER.unpack(_recv_exactly(sock, framing.HEADER.size))
    return framing.parse_response(_recv_exactly(sock, length))


def test_an_oversize_refusal_waits_for_the_reply_before_it(
    sidecar_factory: Callable[..., SidecarProcess],
    valkey_server: Any,
    paused_writes: valkey.Valkey,
) -> None:
    sidecar = sidecar_factory(
        valkey_checkpointer(valkey_server.url), "--max-body-bytes", str(LIMIT)
    )
    thread = str(uuid.uuid4())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(sidecar.socket)
        sock.sendall(framing.PREFACE + _put_frame(thread))  # held by the paused Valkey
        sock.sendall(framing.HEADER.pack(OVERSIZE) + bytes(OVERSIZE))
        paused_writes.execute_command("CLIENT", "UNPAUSE")

        put_status, put_body = _reply(sock)
        refusal_status, refusal = _reply(sock)
        assert (put_status, put_body) == (200, {})
        assert (refusal_status, refusal["code"]) == (413, "payload_too_large")

        sock.sendall(_get_frame(thread))
        get_status, got = _reply(sock)
    assert get_status == 200
    assert got["record"]["checkpoint_id"] == "1ef00000-0000-6000-8000-000000000001"
