"""The event loop the sidecar runs on, and how a framed request's task is started.

The loop is uvloop where it is installed (the image installs it), else asyncio's own.

On Python 3.12+ a request's task starts *eagerly*: its coroutine runs its first step inside
``data_received``, so a request whose backend answers without waiting completes with no trip
through the loop, and one that must wait has already sent its backend call. The task is
built directly, not through a loop-wide task factory, for two reasons: the factory's calling
convention is not stable across CPython and uvloop releases (uvloop 0.23 passes
``eager_start=`` to the factory, which CPython 3.13's ``eager_task_factory`` rejects, so
every request failed; on 3.14 the same pairing quietly starts tasks lazily), and a
loop-wide factory would also change the scheduling of aiohttp's and aiobotocore's tasks.

:func:`request_tasks` checks the eager start once on the running loop. If this pairing of
Python and loop cannot do it, the sidecar logs a warning and starts tasks the ordinary way,
so it still serves; the test suite asserts eager starts on every Python it runs on, so such
a pairing fails there before it reaches users.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("agentpersistence.sidecar")

Answer = tuple[int, Any]
"""What serving a request gives: a status and a wire body."""

TaskStarter = Callable[[Coroutine[Any, Any, Answer]], "asyncio.Task[Answer]"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the sidecar runs on: uvloop if installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


def _lazy(coro: Coroutine[Any, Any, Answer]) -> asyncio.Task[Answer]:
    return asyncio.get_running_loop().create_task(coro)


def _eager(coro: Coroutine[Any, Any, Answer]) -> asyncio.Task[Answer]:
    loop = asyncio.get_running_loop()
    return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]


@dataclass(frozen=True)
class RequestTasks:
    """How the frame server starts each request's task on this loop."""

    start: TaskStarter
    eager: bool


def request_tasks() -> RequestTasks:
    """Eager starts where they work on the running loop (Python 3.12+), else ordinary tasks."""
    if sys.version_info >= (3, 12):
        problem = _eager_start_problem()
        if problem is None:
            return RequestTasks(_eager, eager=True)
        log.warning(
            "eager task starts do not work with this event loop; requests start as "
            "ordinary tasks (a loop iteration slower each). Please report this pairing.",
            extra={
                "python": sys.version.split()[0],
                "loop": loop_name(asyncio.get_running_loop()),
                "error": problem,
            },
        )
    return RequestTasks(_lazy, eager=False)


def _eager_start_problem() -> str | None:
    """Why an eager start fails on the running loop, or None when it works."""

    async def answer_at_once() -> Answer:
        return 200, None

    coro = answer_at_once()
    try:
        task = _eager(coro)
    except Exception as exc:
        coro.close()
        return f"{type(exc).__name__}: {exc}"
    if not task.done():
        return "a coroutine that never waits was not finished by its eager start"
    return None
