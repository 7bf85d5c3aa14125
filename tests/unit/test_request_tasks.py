"""How the frame server starts a request's task, on the loop the sidecar really runs on.

On Python 3.12+ a request whose backend answers without waiting is answered inside
``data_received``; on 3.11 one loop iteration later. A pairing of Python and event loop
that refuses eager starts makes the sidecar start ordinary tasks and say so, and a task
that cannot be started leaves nothing counted in flight (which would hold up shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from agentpersistence.client.protocol import framing, routes
from agentpersistence.sidecar import eventloop
from agentpersistence.sidecar.server import FrameProtocol, InFlight
from agentpersistence.sidecar.service import Sidecar
from agentpersistence.sidecar.settings import parse_config

EAGER = sys.version_info >= (3, 12)


class _Transport(asyncio.Transport):
    """Collects what the protocol writes and signals each answer."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[int, Any]] = []
        self.answered = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.frames.append(framing.parse_response(bytes(data)[framing.HEADER.size :]))
        self.answered.set()

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # nothing is buffered: every write is collected at once


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = eventloop.new_event_loop()
    yield loop
    loop.close()


def _protocol(tasks: eventloop.RequestTasks) -> tuple[FrameProtocol, _Transport, InFlight]:
    sidecar = Sidecar(parse_config({"checkpointer": {"backend": "memory"}}))
    inflight = InFlight()
    protocol = FrameProtocol(sidecar.dispatcher, 1 << 20, inflight, tasks)
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(framing.PREFACE)
    return protocol, transport, inflight


GET_FRAME = framing.request_frame(routes.CHECKPOINT_GET_TUPLE.name, 5000, {"thread_id": "t"})
"""A hot-path request the memory backend answers without waiting (readiness is not one: it
checks every backend concurrently)."""


def test_the_sidecar_runs_on_uvloop_with_eager_starts_from_3_12(
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def choose() -> eventloop.RequestTasks:
        return eventloop.request_tasks()

    assert isinstance(loop, uvloop.Loop)
    assert loop.run_until_complete(choose()).eager is EAGER


def test_a_request_that_needs_no_wait_is_answered_inside_data_received(
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def serve() -> tuple[int, int]:
        protocol, transport, inflight = _protocol(eventloop.request_tasks())
        protocol.data_received(GET_FRAME)
        at_once = len(transport.frames)
        await asyncio.wait_for(transport.answered.wait(), 5)
        await inflight.wait_idle()
        return at_once, transport.frames[0][0]

    at_once, status = loop.run_until_complete(serve())
    assert status == 200
    assert at_once == (1 if EAGER else 0)


def test_a_loop_that_refuses_eager_starts_gets_ordinary_tasks_and_a_warning(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(coro: Coroutine[Any, Any, eventloop.Answer]) -> asyncio.Task[eventloop.Answer]:
        raise TypeError("factory() got an unexpected keyword argument 'eager_start'")

    monkeypatch.setattr(eventloop, "_eager", refuse)

    async def serve() -> tuple[bool, int]:
        tasks = eventloop.request_tasks()
        protocol, transport, _ = _protocol(tasks)
        protocol.data_received(GET_FRAME)
        await asyncio.wait_for(transport.answered.wait(), 5)
        return tasks.eager, transport.frames[0][0]

    with caplog.at_level(logging.WARNING, logger="agentpersistence.sidecar"):
        eager, status = loop.run_until_complete(serve())
    assert (eager, status) == (False, 200)
    warned = [r for r in caplog.records if "eager task starts do not work" in r.getMessage()]
    assert len(warned) == (1 if EAGER else 0)
    if EAGER:
        assert "eager_start" in warned[0].__dict__["error"]


def test_a_task_that_cannot_start_leaves_nothing_in_flight(
    loop: asyncio.AbstractEventLoop,
) -> None:
    def broken(coro: Coroutine[Any, Any, eventloop.Answer]) -> asyncio.Task[eventloop.Answer]:
        coro.close()
        raise TypeError("cannot start")

    async def serve() -> int:
        protocol, _, inflight = _protocol(eventloop.RequestTasks(broken, eager=True))
        with pytest.raises(TypeError, match="cannot start"):
            protocol.data_received(GET_FRAME)
        await asyncio.wait_for(inflight.wait_idle(), 1)
        return inflight.count

    assert loop.run_until_complete(serve()) == 0
