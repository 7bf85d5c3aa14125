"""A client that sends request ids still works with a sidecar that predates them.

Agent images and the injected sidecar are upgraded apart, so the client may be the newer
one. A sidecar from before request ids refuses a four-element frame, before applying it,
with its frame-shape message; the client sends the call again without the id and sends
later calls on that transport as such a sidecar reads them. The sidecar here speaks the
frame protocol as that release did: three-element frames only.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ormsgpack
import pytest

from agentpersistence.client._transport import SocketTransport
from agentpersistence.client.protocol import framing
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected
from agentpersistence.client.protocol.routes import (
    CHECKPOINT_DELETE_THREAD,
    CHECKPOINT_GET_TUPLE,
)

OLD_REFUSAL = "frame must be [route name, deadline in ms, body]"


class OlderSidecar:
    """Serves the frame protocol with the previous release's request shape; records every
    request frame it reads."""

    def __init__(self, path: Path) -> None:
        self.frames: list[list[Any]] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            if stream.read(len(framing.PREFACE)) != framing.PREFACE:
                return
            while header := stream.read(framing.HEADER.size):
                (length,) = struct.unpack(">I", header)
                request = ormsgpack.unpackb(stream.read(length))
                self.frames.append(request)
                if len(request) != 3:
                    reply: list[Any] = [
                        RequestRejected.status,
                        {"code": RequestRejected.code, "message": OLD_REFUSAL},
                    ]
                else:
                    reply = [200, {"record": None} if request[0].endswith("get_tuple") else {}]
                conn.sendall(framing.frame(reply))

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def older(tmp_path: Path) -> Iterator[OlderSidecar]:
    sidecar = OlderSidecar(tmp_path / "s.sock")
    yield sidecar
    sidecar.close()


def test_a_call_refused_for_its_request_id_is_sent_again_without_it(
    older: OlderSidecar, tmp_path: Path
) -> None:
    transport = SocketTransport(str(tmp_path / "s.sock"))
    try:
        transport.call(CHECKPOINT_DELETE_THREAD, m.DeleteThreadRequest("t"), 5.0)
        transport.call(CHECKPOINT_DELETE_THREAD, m.DeleteThreadRequest("u"), 5.0)
    finally:
        transport.close()
    # The first call is refused with its id and served without it; the second goes
    # without an id at once.
    assert [len(f) for f in older.frames] == [4, 3, 3]
    assert [f[2]["thread_id"] for f in older.frames] == ["t", "t", "u"]


async def test_the_async_api_does_the_same(older: OlderSidecar, tmp_path: Path) -> None:
    transport = SocketTransport(str(tmp_path / "s.sock"))
    try:
        await transport.acall(CHECKPOINT_DELETE_THREAD, m.DeleteThreadRequest("t"), 5.0)
        await transport.acall(CHECKPOINT_GET_TUPLE, m.GetTupleRequest("t"), 5.0)
    finally:
        transport.close()
    assert [len(f) for f in older.frames] == [4, 3, 3]


def test_other_refusals_are_not_taken_for_an_older_sidecar(tmp_path: Path) -> None:
    """Only the old frame-shape message turns request ids off; any other 400 is the
    caller's error, raised as it is."""
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as stream:
            stream.read(len(framing.PREFACE))
            (length,) = struct.unpack(">I", stream.read(4))
            stream.read(length)
            refusal = {"code": RequestRejected.code, "message": "thread_id must be a string"}
            conn.sendall(framing.frame([RequestRejected.status, refusal]))

    threading.Thread(target=serve, daemon=True).start()
    transport = SocketTransport(str(path))
    try:
        with pytest.raises(RequestRejected, match="thread_id must be a string"):
            transport.call(CHECKPOINT_DELETE_THREAD, m.DeleteThreadRequest("t"), 5.0)
        assert transport.send_ids
    finally:
        transport.close()
        listener.close()
