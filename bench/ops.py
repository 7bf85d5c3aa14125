"""Block functions for one operation at a time (store and cache groups).

``call(i)`` is timed; ``check(i, answer)`` runs after the timer stops, so a contender that
answers wrongly (or quietly returns nothing) stops the run instead of looking fast;
``tidy(first, n)`` runs after the block, untimed (e.g. deletes what a put block added).
``i`` counts on across blocks, so each operation gets fresh keys or a rotating choice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .workload import BenchError


def _no_check(i: int, answer: Any) -> None:
    return None


@dataclass(eq=False)
class OpBlock:
    label: str
    call: Callable[[int], Any]
    check: Callable[[int, Any], None] = _no_check
    tidy: Callable[[int, int], None] | None = None
    next_i: int = 0

    def __call__(self, n: int) -> list[float]:
        call, check, clock = self.call, self.check, time.perf_counter_ns
        first = self.next_i
        out: list[float] = []
        for i in range(first, first + n):
            t0 = clock()
            answer = call(i)
            t1 = clock()
            check(i, answer)
            out.append((t1 - t0) / 1000.0)
        self.next_i = first + n
        if self.tidy is not None:
            self.tidy(first, n)
        return out


@dataclass(eq=False)
class AsyncOpBlock:
    label: str
    call: Callable[[int], Awaitable[Any]]
    loop: asyncio.AbstractEventLoop
    check: Callable[[int, Any], None] = _no_check
    tidy: Callable[[int, int], Awaitable[None]] | None = None
    next_i: int = 0

    def __call__(self, n: int) -> list[float]:
        return self.loop.run_until_complete(self._run(n))

    async def _run(self, n: int) -> list[float]:
        call, check, clock = self.call, self.check, time.perf_counter_ns
        first = self.next_i
        out: list[float] = []
        for i in range(first, first + n):
            t0 = clock()
            answer = await call(i)
            t1 = clock()
            check(i, answer)
            out.append((t1 - t0) / 1000.0)
        self.next_i = first + n
        if self.tidy is not None:
            await self.tidy(first, n)
        return out


def expect(condition: bool, label: str, what: str) -> None:
    if not condition:
        raise BenchError(f"{label}: {what}")
