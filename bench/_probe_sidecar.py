"""The sidecar with instruments: ``python -m bench._probe_sidecar <sidecar arguments>``.

Used by ``python -m bench.profile`` only. Environment variables choose what to change,
without touching the sidecar's source:

``BENCH_PROBE_SEGMENTS=PATH``
    time each lean-frame request inside the sidecar (arrival → task start → parsed →
    dispatched → answer encoded → written) and write the medians per route to PATH at
    exit. ``total`` ends when the answer is encoded, before the write syscall.
``BENCH_PROBE_ABLATE=a,b``
    switch pieces of the hot path off, to measure what each costs in the live process:
    ``metrics`` (Prometheus recording), ``timeout`` (the ``asyncio.timeout`` around each
    handler), ``lazy`` (start each request's task through ``create_task``, as on Python
    3.11, instead of eagerly), ``asyncio`` (the stock event loop instead of uvloop).

Each instrument wraps private methods of the sidecar; if they changed, the probe says so
on stderr and runs the sidecar unchanged.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

from agentpersistence.client.protocol import errors, framing
from agentpersistence.sidecar import __main__ as sidecar_main
from agentpersistence.sidecar import dispatch, eventloop, metrics, server

ABLATIONS = ("metrics", "timeout", "lazy", "asyncio")

_clock = time.perf_counter_ns
_segments: dict[str, list[int]] = collections.defaultdict(list)


def _warn(message: str) -> None:
    print(f"bench probe: {message}", file=sys.stderr, flush=True)


def _install_segments(path: str) -> None:
    fp: Any = server.FrameProtocol
    needed = ("data_received", "_answer", "_respond")
    if not all(hasattr(fp, name) for name in needed):
        _warn("FrameProtocol changed; segment timing is off")
        return
    data_received = fp.data_received

    def timed_data_received(self: Any, data: bytes) -> None:
        self._bench_t0 = _clock()
        data_received(self, data)

    async def timed_answer(self: Any, payload: bytes) -> tuple[int, Any]:
        t1 = _clock()
        try:
            route, deadline_ms, body, _ = framing.parse_request(payload)
        except errors.SidecarError as exc:
            return exc.status, exc.to_wire()
        t2 = _clock()
        name = route.rsplit(".", 1)[-1]
        result: tuple[int, Any] = await self._dispatcher.dispatch(route, body, deadline_ms)
        self._bench_marks = (name, getattr(self, "_bench_t0", t1), t1, t2, _clock())
        return result

    def timed_respond(self: Any, status: int, body: Any) -> None:
        # FrameProtocol._respond, split: encoding the frame, then the write syscall (which
        # also holds any time the woken client preempts the sidecar on a shared CPU).
        t3 = _clock()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        frame = framing.frame([status, body])
        t4 = _clock()
        transport.write(frame)
        t5 = _clock()
        marks = getattr(self, "_bench_marks", None)
        if marks is None:
            return
        self._bench_marks = None
        name, t0, t1, t2, t3_answer = marks
        _segments[f"{name}.queue"].append(t1 - t0)
        _segments[f"{name}.parse"].append(t2 - t1)
        _segments[f"{name}.dispatch"].append(t3_answer - t2)
        _segments[f"{name}.frame"].append(t4 - t3)
        _segments[f"{name}.write"].append(t5 - t4)
        _segments[f"{name}.total"].append(t4 - t0)

    fp.data_received, fp._answer, fp._respond = timed_data_received, timed_answer, timed_respond

    def dump() -> None:
        out = {
            key: statistics.median(values[len(values) // 5 :]) / 1000.0
            for key, values in _segments.items()
            if values
        }
        counts = {key: len(values) for key, values in _segments.items()}
        with open(path, "w") as f:
            json.dump({"median_us": out, "count": counts}, f)

    atexit.register(dump)


class _NoTimeout:
    """``asyncio`` as the dispatcher sees it, with ``timeout`` a no-op."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def timeout(delay: float | None) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


def _install(ablations: set[str]) -> None:
    unknown = ablations - set(ABLATIONS)
    if unknown:
        raise SystemExit(f"bench probe: unknown ablations {sorted(unknown)}")
    if "metrics" in ablations:
        recorder: Any = metrics.RouteRecorder
        recorder.observe = lambda self, seconds, code: None
    if "timeout" in ablations:
        dispatch_module: Any = dispatch
        dispatch_module.asyncio = _NoTimeout()
    if "lazy" in ablations:
        loops: Any = eventloop
        loops.request_tasks = lambda: eventloop.RequestTasks(eventloop._lazy, eager=False)
    if "asyncio" in ablations:
        loops = eventloop
        loops.new_event_loop = asyncio.new_event_loop


def main() -> int:
    ablate = {a for a in os.environ.get("BENCH_PROBE_ABLATE", "").split(",") if a}
    _install(ablate)
    segments = os.environ.get("BENCH_PROBE_SEGMENTS")
    if segments:
        _install_segments(segments)
    return sidecar_main.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
