"""Back-pressure: the sidecar's memory stays under a pod's limit while one client lists a
thread of large checkpoints and another floods it with requests whose replies it never reads.

List pages end once their records pass ``backends.listing.PAGE_BYTES`` (the client follows
the cursor for the rest, and still gets every checkpoint), and a frame connection whose
replies are not read stops being served and read, so neither client makes the sidecar hold
more than a few pages and one connection's write buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol import framing, routes
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import PayloadTooLarge
from agentpersistence.client.protocol.routes import CONTENT_TYPE, PROTOCOL_HEADER
from rig import unix_http
from rig.processes import memory_kib
from rig.sidecar import MEMORY_CONFIG, SidecarProcess, valkey_checkpointer

CHECKPOINTS = 100
CHECKPOINT_BYTES = 2 * 1024 * 1024
MEMORY_LIMIT_KIB = 256 * 1024
"""The sidecar container's memory limit in the chart."""
FLOOD_FRAMES = 1500
"""get_tuple requests the flooder sends without reading a reply, each answered by a whole
large checkpoint: without back-pressure, gigabytes of replies to buffer. With it, the
sidecar stops reading the flood after what the socket's buffers hold, long before its end."""


def _write_thread(saver: SidecarSaver, thread_id: str) -> list[str]:
    """``CHECKPOINTS`` checkpoints of about ``CHECKPOINT_BYTES`` each; their ids, newest first."""
    blob = os.urandom(CHECKPOINT_BYTES)
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    ids = []
    for i in range(CHECKPOINTS):
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"blob": i.to_bytes(4, "big") + blob[4:]}
        config = dict(saver.put(config, checkpoint, {"step": i}, {}))  # type: ignore[arg-type]
        ids.append(checkpoint["id"])
    return ids[::-1]


class Flood(threading.Thread):
    """A connection sending ``FLOOD_FRAMES`` get_tuple frames and reading nothing; its
    sends block once the sidecar stops reading it."""

    def __init__(self, path: str, thread_id: str) -> None:
        super().__init__(daemon=True)
        self.frame = framing.request_frame(
            routes.CHECKPOINT_GET_TUPLE.name, 60_000, m.GetTupleRequest(thread_id=thread_id)
        )
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(path)
        self.sent = 0
        self.started_sending = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(OSError):  # the test shuts the socket down at the end
            self.sock.sendall(framing.PREFACE)
            self.started_sending.set()
            for _ in range(FLOOD_FRAMES):
                self.sock.sendall(self.frame)
                self.sent += 1

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked send
        self.join(30)
        self.sock.close()


def test_memory_stays_under_the_limit_while_listing_big_checkpoints_under_a_flood(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any
) -> None:
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    thread = f"big-{uuid.uuid4()}"
    with SidecarSaver(sidecar.socket, timeout=60) as saver:
        written = _write_thread(saver, thread)
        after_writes = memory_kib(pid)

        flood = Flood(sidecar.socket, thread)
        flood.start()
        try:
            assert flood.started_sending.wait(30)
            listed = [
                t.config["configurable"]["checkpoint_id"]
                for t in saver.list({"configurable": {"thread_id": thread}})
            ]
            peak = memory_kib(pid, "VmHWM")
            now = memory_kib(pid)
            sent = flood.sent
            # A whole listing later, the flood is still blocked: the sidecar stopped reading
            # a client that reads nothing, instead of buffering its replies.
            assert flood.is_alive()
            assert sent < FLOOD_FRAMES
        finally:
            flood.stop()
        assert listed == written
        assert saver.get_tuple({"configurable": {"thread_id": thread}}) is not None
    print(
        f"\nsidecar memory: after {CHECKPOINTS} x {CHECKPOINT_BYTES >> 20} MiB puts "
        f"{after_writes} KiB; after the listing under a flood ({sent} of the flood's "
        f"{FLOOD_FRAMES} frames sent when reading stopped) {now} KiB; peak {peak} KiB "
        f"(limit {MEMORY_LIMIT_KIB} KiB)"
    )
    assert peak < MEMORY_LIMIT_KIB


PAGED = 6
PAGED_BYTES = 1536 * 1024
"""Three of these pass ``PAGE_BYTES`` (4 MiB): a page holds three, whatever its limit."""


@pytest.mark.parametrize("backend", ["memory_sidecar", "valkey_sidecar", "dynamodb_sidecar"])
def test_list_pages_end_by_bytes_and_the_client_still_gets_every_checkpoint(
    request: pytest.FixtureRequest, backend: str
) -> None:
    sidecar: SidecarProcess = request.getfixturevalue(backend)
    thread = f"paged-{uuid.uuid4()}"
    blob = os.urandom(PAGED_BYTES)
    with SidecarSaver(sidecar.socket, timeout=60) as saver:
        config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        written = []
        for i in range(PAGED):
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"blob": blob}
            config = dict(saver.put(config, checkpoint, {"step": i}, {}))  # type: ignore[arg-type]
            written.append(checkpoint["id"])

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(sidecar.socket)
            ask = m.ListRequest(thread_id=thread, limit=100)
            sock.sendall(
                framing.PREFACE + framing.request_frame(routes.CHECKPOINT_LIST.name, 60_000, ask)
            )
            status, page = _reply(sock)
        assert status == 200
        assert len(page["records"]) == 3
        assert page["cursor"] is not None

        listed = [
            t.config["configurable"]["checkpoint_id"]
            for t in saver.list({"configurable": {"thread_id": thread}})
        ]
        assert listed == written[::-1]
        limited = list(saver.list({"configurable": {"thread_id": thread}}, limit=4))
        assert [t.config["configurable"]["checkpoint_id"] for t in limited] == written[::-1][:4]

        async def alist() -> list[str]:
            found = saver.alist({"configurable": {"thread_id": thread}})
            return [t.config["configurable"]["checkpoint_id"] async for t in found]

        assert asyncio.run(alist()) == written[::-1]


def _reply(sock: socket.socket) -> tuple[int, Any]:
    header = _recv_exactly(sock, framing.HEADER.size)
    return framing.parse_response(_recv_exactly(sock, framing.HEADER.unpack(header)[0]))


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        assert chunk, "the sidecar closed the connection"
        data += chunk
    return bytes(data)


RESPONSE_LIMIT = 1024 * 1024


def test_a_reply_over_the_response_limit_is_a_typed_error_on_both_framings(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    sidecar = sidecar_factory(MEMORY_CONFIG, "--max-response-bytes", str(RESPONSE_LIMIT))
    thread = f"heavy-{uuid.uuid4()}"
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    with SidecarSaver(sidecar.socket, timeout=30) as saver:
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"blob": os.urandom(RESPONSE_LIMIT // 2)}
        stored = saver.put(config, checkpoint, {"step": 1}, {})  # type: ignore[arg-type]
        # Each request fits; the checkpoint with its pending writes does not fit one reply.
        saver.put_writes(stored, [("a", os.urandom(RESPONSE_LIMIT // 2))], "task-1")
        with pytest.raises(PayloadTooLarge, match="response limit"):
            saver.get_tuple({"configurable": {"thread_id": thread}})
        with pytest.raises(PayloadTooLarge, match="response limit"):
            list(saver.list({"configurable": {"thread_id": thread}}))
        assert saver.get_tuple({"configurable": {"thread_id": "nobody"}}) is None

    body = framing.pack(m.GetTupleRequest(thread_id=thread))
    headers = {"Content-Type": CONTENT_TYPE, PROTOCOL_HEADER: "1"}
    status, reply = unix_http.request(
        sidecar.socket, "POST", routes.CHECKPOINT_GET_TUPLE.path, body, headers
    )
    assert status == PayloadTooLarge.status
    assert framing.unpack(reply)["code"] == PayloadTooLarge.code
