"""The replies of completed mutating requests, so that a retry is answered, not applied again.

A client sends a request id with every mutating request (see ``routes.MUTATING``), made
once per call and sent again on each retry of that call. A retry happens only when the
connection failed before the reply arrived, so the first attempt may well have been
applied; applying it again could overwrite a value another client wrote in between (a
store or cache put) or delete it (a store delete, ``delete_thread``). :class:`Outcomes`
keeps each reply under ``(peer, route, request id)``: a retry of a completed request gets
that reply, and a retry that arrives while the first attempt still runs waits for it.

The memory is bounded (:class:`OutcomeSettings`) and belongs to the process: a sidecar
that was killed and restarted has forgotten every reply, and applies a retry again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any

from agentpersistence.client.protocol import errors
from agentpersistence.client.protocol import messages as m

log = logging.getLogger("agentpersistence.sidecar")

Answer = tuple[int, Any]
Key = tuple[Hashable, str, str]
"""``(peer, route, request id)``; the peer is the connecting process where known."""

_ENTRY_BYTES = 200
"""What an entry costs beside its reply's stored values (key, tuple, dict slot)."""


@dataclass(frozen=True)
class OutcomeSettings:
    max_count: int = 10_000
    """Replies kept at most; the oldest is forgotten first."""
    max_age_seconds: float = 300.0
    """How long a reply is kept after its request completed, in seconds. A retry comes
    within the caller's deadline (10 s by default), so this only needs to outlast that."""
    max_bytes: int = 16 * 1024 * 1024
    """Bytes of replies kept at most (a store batch with reads answers with their values)."""


_Kept = tuple[float, int, Answer]
"""A reply kept: when it expires (monotonic seconds), its weight in bytes, the reply."""


class Outcomes:
    """Replies by request, and the requests still running with the retries waiting on them."""

    def __init__(self, settings: OutcomeSettings | None = None) -> None:
        self.settings = settings or OutcomeSettings()
        self._kept: collections.OrderedDict[Key, _Kept] = collections.OrderedDict()
        self._running: dict[Key, list[asyncio.Future[Answer]]] = {}
        self._bytes = 0
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._kept)

    async def once(
        self,
        key: Key,
        apply: Callable[..., Coroutine[Any, Any, Answer]],
        *args: Any,
    ) -> Answer:
        """``apply(*args)``'s reply, applying it only if no attempt under ``key`` did."""
        kept = self._kept.get(key)
        if kept is not None and kept[0] > time.monotonic():
            log.info("a retried request is answered with its first reply", extra=_about(key))
            return kept[2]
        waiting = self._running.get(key)
        if waiting is not None:
            return await self._wait(key, waiting)
        waiting = self._running[key] = []
        try:
            answer = await apply(*args)
        except BaseException:  # cancelled at its deadline (errors are answers, see dispatch)
            del self._running[key]
            _settle(waiting, _unfinished(key))  # forgotten: a later retry applies it
            raise
        del self._running[key]
        self._keep(key, answer)
        _settle(waiting, answer)
        return answer

    async def _wait(self, key: Key, waiting: list[asyncio.Future[Answer]]) -> Answer:
        log.info("a retried request waits for its first attempt", extra=_about(key))
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        waiting.append(future)
        return await future

    def _keep(self, key: Key, answer: Answer) -> None:
        now = time.monotonic()
        body = answer[1]
        weight = _ENTRY_BYTES if type(body) is not m.StoreBatchResponse else _weigh(body)
        kept = self._kept
        old = kept.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        kept[key] = (now + self.settings.max_age_seconds, weight, answer)
        self._bytes += weight
        if (
            now >= self._next_sweep
            or len(kept) > self.settings.max_count
            or self._bytes > self.settings.max_bytes
        ):
            self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        """Drop the oldest replies while over a bound or expired (expired ones are looked
        for once a second; a lookup never returns one in between)."""
        kept, settings = self._kept, self.settings
        self._next_sweep = now + 1.0
        while kept:
            expires, weight, _ = next(iter(kept.values()))
            if (
                len(kept) <= settings.max_count
                and self._bytes <= settings.max_bytes
                and expires > now
            ):
                return
            kept.popitem(last=False)
            self._bytes -= weight


def _settle(waiting: list[asyncio.Future[Answer]], answer: Answer) -> None:
    for future in waiting:
        if not future.done():
            future.set_result(answer)


def _unfinished(key: Key) -> Answer:
    """The answer to retries that waited on a first attempt that was cut short."""
    late = errors.DeadlineExceeded(
        f"the first attempt of this {key[1]} request ran out of time; whether it was applied "
        "is unknown (read the state back before calling again)"
    )
    return late.status, late.to_wire()


def _weigh(body: m.StoreBatchResponse) -> int:
    """What keeping a store batch's reply costs: its reads' values count."""
    size = _ENTRY_BYTES
    for result in body.results:
        if result.item is not None:
            size += _ENTRY_BYTES + len(result.item.value)
        for item in result.items or ():
            size += _ENTRY_BYTES + len(item.value)
    return size


def _about(key: Key) -> dict[str, Any]:
    return {"route": key[1], "request_id": key[2]}
