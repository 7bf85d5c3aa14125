"""``python -m bench.profile``: where the microseconds of a ``SidecarSaver[memory]`` pair go.

Four views of the same put + get_tuple pair (the checkpoint of ``python -m bench``):

``pieces``
    each step of the hot path timed alone, in this process, warm: the client's serde and
    protocol work, the sidecar's parse, decode, handler, timeout, metrics and framing.
``live``
    the real sidecar with timestamps inside it (``bench._probe_sidecar``): per route, the
    time from bytes arriving to the request's task starting, parsing, dispatch, and
    framing + writing the answer. What the pair costs beyond the client's own work and
    the sidecar's is the kernel: syscalls, wake-ups and context switches.
``floor``
    the same two round trips (5 KB up then a small answer; small up then 5 KB back)
    against a bare uvloop ``Protocol`` that answers from ``data_received``: the least
    any sidecar on this framing can cost.
``ablations``
    sidecars with one piece switched off each (metrics, asyncio.timeout, eager task
    starts, uvloop), measured in alternating blocks against the unchanged sidecar: what removing
    each piece would really gain, cache and scheduler effects included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import uvloop
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from agentpersistence.client import SidecarSaver
from agentpersistence.client._transport import SocketTransport, Transport
from agentpersistence.client.checkpoint import _get_request
from agentpersistence.client.protocol import framing, routes, rules
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import error_for
from agentpersistence.client.protocol.messages import decode

from .procs import SidecarProcess, ValkeyServer
from .workload import CheckpointStream, chat_messages, delete_threads_sync, run_sync_block

MEMORY_CONFIG: dict[str, Any] = {"checkpointer": {"backend": "memory"}}

ABLATION_VARIANTS: list[tuple[str, str]] = [
    ("baseline", ""),
    ("no metrics", "metrics"),
    ("no asyncio.timeout", "timeout"),
    ("lazy task starts (as on 3.11)", "lazy"),
    ("all three off", "metrics,timeout,lazy"),
    ("stock asyncio loop", "asyncio"),
]


VALKEY_ABLATION_VARIANTS: list[tuple[str, str]] = [
    ("baseline", ""),
    ("no metrics", "metrics"),
    ("no asyncio.timeout", "timeout"),
    ("stock asyncio loop", "asyncio"),
]


@dataclass
class Target:
    """Which sidecar the live and ablation views measure, and what it is compared with."""

    backend: str
    config: dict[str, Any]
    reference_name: str
    reference: Callable[[SerializerProtocol | None], BaseCheckpointSaver[Any]]
    """Builds the in-process saver compared with, optionally with a given serde."""
    variants: list[tuple[str, str]]


def _progress(message: str) -> None:
    print(f"[profile] {message}", file=sys.stderr, flush=True)


def median_us(fn: Callable[[], object], n: int, warm: int = 200) -> float:
    for _ in range(warm):
        fn()
    clock = time.perf_counter_ns
    samples: list[int] = []
    for _ in range(n):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples) / 1000.0


def run_coro(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends, without an event loop iteration."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("coroutine suspended; time it inside a loop instead")


class _NoTransport:
    def call(self, route: Any, request: Any, timeout: float) -> Any:
        raise NotImplementedError

    async def acall(self, route: Any, request: Any, timeout: float) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class Piece:
    side: str
    route: str
    what: str
    kind: str
    """serde, protocol, msgpack, decode, handler, timeout, metrics."""
    us: float


def pieces(n: int) -> list[Piece]:
    """Each step of the pair alone, warm, in this process (uvloop for the sidecar's)."""
    from agentpersistence.sidecar.service import Sidecar
    from agentpersistence.sidecar.settings import parse_config

    transport: Transport = _NoTransport()
    saver = SidecarSaver("/nonexistent", transport=transport)
    stream = CheckpointStream(saver, "pieces", chat_messages())
    stream.next()
    step = stream.next()
    ck = step.checkpoint
    out: list[Piece] = []

    def add(side: str, route: str, what: str, kind: str, fn: Callable[[], object]) -> None:
        out.append(Piece(side, route, what, kind, median_us(fn, n)))

    dumps = median_us(lambda: saver.serde.dumps_typed(ck), n)
    out.append(Piece("client", "put", "serde.dumps_typed(checkpoint)", "serde", dumps))
    whole = median_us(lambda: saver._put_request(step.config, ck, step.metadata), n)
    out.append(
        Piece("client", "put", "_put_request minus dumps (metadata JSON, record)", "protocol",
              max(whole - dumps, 0.0))
    )  # fmt: skip
    put_req = saver._put_request(step.config, ck, step.metadata)
    add("client", "put", "request_frame (ormsgpack of the dataclass)", "msgpack",
        lambda: framing.request_frame(routes.CHECKPOINT_PUT.name, 9999, put_req))  # fmt: skip
    get_req = _get_request(step.get_config)
    add("client", "get", "_get_request + request_frame", "protocol",
        lambda: framing.request_frame(routes.CHECKPOINT_GET_TUPLE.name, 9999,
                                      _get_request(step.get_config)))  # fmt: skip

    loop = uvloop.new_event_loop()
    try:
        sidecar = Sidecar(parse_config(MEMORY_CONFIG))
        loop.run_until_complete(sidecar.start())
        dispatcher: Any = sidecar.dispatcher
        put_payload = framing.request_frame(routes.CHECKPOINT_PUT.name, 9999, put_req)[4:]
        get_payload = framing.request_frame(routes.CHECKPOINT_GET_TUPLE.name, 9999, get_req)[4:]
        put_body = framing.parse_request(put_payload)[2]
        get_body = framing.parse_request(get_payload)[2]
        add("sidecar", "put", "framing.parse_request", "msgpack",
            lambda: framing.parse_request(put_payload))  # fmt: skip
        add("sidecar", "get", "framing.parse_request", "msgpack",
            lambda: framing.parse_request(get_payload))  # fmt: skip
        add("sidecar", "put", "decode(PutRequest) (field checks)", "decode",
            lambda: decode(m.PutRequest, put_body))  # fmt: skip
        add("sidecar", "get", "decode(GetTupleRequest)", "decode",
            lambda: decode(m.GetTupleRequest, get_body))  # fmt: skip
        put_msg = decode(m.PutRequest, put_body)
        get_msg = decode(m.GetTupleRequest, get_body)
        put_handler = dispatcher._entries[routes.CHECKPOINT_PUT.name][1].call
        get_handler = dispatcher._entries[routes.CHECKPOINT_GET_TUPLE.name][1].call
        add("sidecar", "put", "  of which rules.parse_metadata (json.loads)", "handler",
            lambda: rules.parse_metadata(put_msg.record.metadata))  # fmt: skip
        add("sidecar", "put", "handler + memory backend put", "handler",
            lambda: run_coro(put_handler(put_msg)))  # fmt: skip
        add("sidecar", "get", "handler + memory backend get_tuple", "handler",
            lambda: run_coro(get_handler(get_msg)))  # fmt: skip
        recorder = dispatcher._entries[routes.CHECKPOINT_PUT.name][2]
        add("sidecar", "each", "metrics: RouteRecorder.observe", "metrics",
            lambda: recorder.observe(0.0001, "ok"))  # fmt: skip

        async def timeouts(k: int) -> float:
            t0 = time.perf_counter_ns()
            for _ in range(k):
                async with asyncio.timeout(9.9):  # noqa: ASYNC100 (timing the manager itself)
                    pass
            return (time.perf_counter_ns() - t0) / k / 1000.0

        loop.run_until_complete(timeouts(500))
        out.append(Piece("sidecar", "each", "asyncio.timeout enter + exit", "timeout",
                         loop.run_until_complete(timeouts(n))))  # fmt: skip

        async def dispatches(route: str, body: object, k: int) -> float:
            samples = []
            for _ in range(k):
                t0 = time.perf_counter_ns()
                await dispatcher.dispatch(route, body, 9999)
                samples.append(time.perf_counter_ns() - t0)
            return statistics.median(samples) / 1000.0

        for route, body, short in (
            (routes.CHECKPOINT_PUT.name, put_body, "put"),
            (routes.CHECKPOINT_GET_TUPLE.name, get_body, "get"),
        ):
            loop.run_until_complete(dispatches(route, body, 300))
            out.append(Piece("sidecar", short, "= Dispatcher.dispatch, all of the above", "total",
                             loop.run_until_complete(dispatches(route, body, n))))  # fmt: skip
        _, get_resp = loop.run_until_complete(
            dispatcher.dispatch(routes.CHECKPOINT_GET_TUPLE.name, get_body, 9999)
        )

        async def tasks(k: int) -> float:
            async def nothing() -> None:
                return None

            t0 = time.perf_counter_ns()
            for _ in range(k):
                await asyncio.get_running_loop().create_task(nothing())
            return (time.perf_counter_ns() - t0) / k / 1000.0

        loop.run_until_complete(tasks(500))
        out.append(Piece("sidecar", "each", "create_task + one loop iteration (no I/O)",
                         "loop", loop.run_until_complete(tasks(n))))  # fmt: skip
        add("sidecar", "put", "framing.frame([200, Empty])", "msgpack",
            lambda: framing.frame([200, m.Empty()]))  # fmt: skip
        add("sidecar", "get", "framing.frame([200, GetTupleResponse]) (5 KB)", "msgpack",
            lambda: framing.frame([200, get_resp]))  # fmt: skip
        loop.run_until_complete(sidecar.close())
    finally:
        loop.close()

    put_answer = framing.frame([200, m.Empty()])[4:]
    get_answer = framing.frame([200, get_resp])[4:]
    add("client", "put", "parse_response + decode(Empty)", "msgpack",
        lambda: decode(m.Empty, framing.parse_response(put_answer)[1]))  # fmt: skip
    add("client", "get", "parse_response (5 KB)", "msgpack",
        lambda: framing.parse_response(get_answer))  # fmt: skip
    wire = framing.parse_response(get_answer)[1]
    add("client", "get", "decode(GetTupleResponse) (field checks)", "decode",
        lambda: decode(m.GetTupleResponse, wire))  # fmt: skip
    record = decode(m.GetTupleResponse, wire).record
    assert record is not None
    loads = median_us(lambda: saver.serde.loads_typed((record.type, record.checkpoint)), n)
    out.append(Piece("client", "get", "serde.loads_typed(checkpoint)", "serde", loads))
    whole_tuple = median_us(lambda: saver._tuple(record, None), n)
    out.append(Piece("client", "get", "_tuple minus loads (metadata JSON, configs)", "protocol",
                     max(whole_tuple - loads, 0.0)))  # fmt: skip

    inmem = InMemorySaver()
    istream = CheckpointStream(inmem, "pieces-inmem", chat_messages())
    steps = [istream.next() for _ in range(n + 200)]
    it = iter(steps)

    def inmem_pair() -> None:
        s = next(it)
        inmem.put(s.config, s.checkpoint, s.metadata, s.new_versions)
        inmem.get_tuple(s.get_config)

    out.append(Piece("client", "pair", "InMemorySaver put + get_tuple, for reference",
                     "reference", median_us(inmem_pair, n)))  # fmt: skip
    return out


# --- live ---------------------------------------------------------------------------------


class _TimedSerde:
    """LangGraph's serde, adding up the time of its calls (to split a pair's time)."""

    def __init__(self) -> None:
        self.inner = JsonPlusSerializer()
        self.total_ns = 0

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        t0 = time.perf_counter_ns()
        try:
            return self.inner.dumps_typed(obj)
        finally:
            self.total_ns += time.perf_counter_ns() - t0

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        t0 = time.perf_counter_ns()
        try:
            return self.inner.loads_typed(data)
        finally:
            self.total_ns += time.perf_counter_ns() - t0


class _TimedTransport(SocketTransport):
    """The client's socket transport, timing each exchange (send → answer parsed)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.samples: dict[str, list[int]] = {}
        self.total_ns = 0

    def _exchange(
        self, route: str, request: object, deadline: float, request_id: str | None
    ) -> tuple[int, Any]:
        t0 = time.perf_counter_ns()
        try:
            return super()._exchange(route, request, deadline, request_id)
        finally:
            spent = time.perf_counter_ns() - t0
            self.total_ns += spent
            self.samples.setdefault(route, []).append(spent)


@dataclass
class _Split:
    """Per-pair times of one saver: the pair, its serde calls, its socket exchanges."""

    pair: list[float] = field(default_factory=list)
    serde: list[float] = field(default_factory=list)
    exchange: list[float] = field(default_factory=list)

    def median(self, which: str) -> float:
        values: list[float] = getattr(self, which)
        return statistics.median(values) if values else math.nan

    @property
    def rest(self) -> float:
        """Median of pair - serde - exchanges: the saver's own code around them."""
        return statistics.median(
            p - s - e for p, s, e in zip(self.pair, self.serde, self.exchange, strict=True)
        )


def _timed_pairs(
    stream: CheckpointStream,
    serde: _TimedSerde,
    transport: _TimedTransport | None,
    pairs: int,
    split: _Split | None,
) -> None:
    saver = stream.saver
    clock = time.perf_counter_ns
    for _ in range(pairs):
        step = stream.next()
        s0, e0 = serde.total_ns, transport.total_ns if transport else 0
        t0 = clock()
        saver.put(step.config, step.checkpoint, step.metadata, step.new_versions)
        got = saver.get_tuple(step.get_config)
        t1 = clock()
        if got is None or got.checkpoint["id"] != step.checkpoint["id"]:
            raise RuntimeError(f"{stream.label}: get_tuple did not return the checkpoint put")
        if split is not None:
            split.pair.append((t1 - t0) / 1000.0)
            split.serde.append((serde.total_ns - s0) / 1000.0)
            e1 = transport.total_ns if transport else 0
            split.exchange.append((e1 - e0) / 1000.0)
    delete_threads_sync(saver, stream.take_threads())


@dataclass
class Live:
    pair_us: float
    ref_pair_us: float
    sidecar_us: dict[str, float]
    """Inside the sidecar, per route and segment (``put.dispatch``, ...)."""
    exchange_us: dict[str, float]
    """Client side, per route: ``SocketTransport._exchange`` (frame, send, wait, parse)."""
    serde_us: float
    """LangGraph serde per pair (dumps + loads) inside SidecarSaver."""
    rest_us: float
    """SidecarSaver's own code per pair: pair - serde - exchanges."""
    ref_serde_us: float
    ref_rest_us: float
    """The same two for the reference saver (its rest includes any I/O it does)."""
    rss_kib: int | None


def live(workdir: Path, target: Target, rounds: int, pairs: int) -> Live:
    """Pairs against the instrumented sidecar; the sidecar's own time per route."""
    seg_path = workdir / "segments.json"
    sidecar = SidecarProcess(
        f"{target.backend}-probe",
        target.config,
        workdir / "live",
        module="bench._probe_sidecar",
        env={"BENCH_PROBE_SEGMENTS": str(seg_path)},
    )
    split, ref_split = _Split(), _Split()
    with contextlib.ExitStack() as stack:
        stack.callback(sidecar.stop)
        sidecar.start()
        transport = _TimedTransport(sidecar.socket)
        serde, ref_serde = _TimedSerde(), _TimedSerde()
        saver = SidecarSaver(sidecar.socket, transport=transport, serde=serde)
        stack.callback(saver.close)
        saver.wait_ready(10.0)
        stream = CheckpointStream(saver, "live", chat_messages())
        ref = CheckpointStream(target.reference(ref_serde), "live-ref", chat_messages())
        _timed_pairs(stream, serde, transport, pairs, None)
        _timed_pairs(ref, ref_serde, None, pairs, None)
        transport.samples.clear()
        for _ in range(rounds):
            _timed_pairs(stream, serde, transport, pairs, split)
            _timed_pairs(ref, ref_serde, None, pairs, ref_split)
        mem = sidecar.memory()
        sidecar.stop()
    segments = json.loads(seg_path.read_text())["median_us"] if seg_path.exists() else {}
    exchanges = {
        route.rsplit(".", 1)[-1]: statistics.median(values) / 1000.0
        for route, values in transport.samples.items()
    }
    return Live(
        split.median("pair"),
        ref_split.median("pair"),
        segments,
        exchanges,
        split.median("serde"),
        split.rest,
        ref_split.median("serde"),
        ref_split.rest,
        mem.rss_kib if mem else None,
    )


# --- floor --------------------------------------------------------------------------------

_ECHO_SERVER = textwrap.dedent(
    """
    import asyncio, os, struct, sys
    import uvloop
    H = struct.Struct(">I")
    BIG = b"x" * int(sys.argv[2])
    TASK = sys.argv[3] == "task"

    class P(asyncio.Protocol):
        def __init__(self):
            self.buf = bytearray()

        def connection_made(self, t):
            self.t = t

        def data_received(self, data):
            self.buf += data
            while len(self.buf) >= 4:
                (n,) = H.unpack_from(self.buf)
                if len(self.buf) < 4 + n:
                    return
                first = bytes(self.buf[4:5])
                del self.buf[: 4 + n]
                if TASK:
                    asyncio.get_running_loop().create_task(self.serve(first))
                else:
                    self.answer(first)

        async def serve(self, first):
            self.answer(first)

        def answer(self, first):
            body = BIG if first == b"g" else b"ok"
            self.t.write(H.pack(len(body)) + body)

    async def main():
        path = sys.argv[1]
        await asyncio.get_running_loop().create_unix_server(P, path=path + ".tmp")
        os.replace(path + ".tmp", path)
        await asyncio.Event().wait()

    uvloop.run(main())
    """
)

FLOOR_VARIANTS: list[tuple[str, str, bool]] = [
    ("answer in data_received; client settimeout per call", "direct", True),
    ("answer in data_received; client blocking socket", "direct", False),
    ("answer via create_task; client settimeout per call", "task", True),
]


def floor(workdir: Path, size: int, pairs: int, server: str, per_call_timeout: bool) -> float:
    """Two round trips (5 KB up, small back; small up, 5 KB back) to a bare uvloop server."""
    path = str(workdir / f"floor-{server}-{per_call_timeout}.sock")
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER, path, str(size), server])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("floor server did not start")
            time.sleep(0.005)
        header = framing.HEADER
        up = b"p" + b"y" * size
        down = b"g" + b"z" * 60
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)

            def call(body: bytes) -> None:
                if per_call_timeout:
                    sock.settimeout(10.0)  # as the client's transport does on every call
                sock.sendall(header.pack(len(body)) + body)
                buf = sock.recv(65536)
                (n,) = header.unpack_from(buf)
                while len(buf) < 4 + n:
                    buf += sock.recv(65536)

            def pair() -> None:
                call(up)
                call(down)

            return median_us(pair, pairs * 5, warm=300)
    finally:
        proc.kill()
        proc.wait()


def floors(workdir: Path, size: int, pairs: int) -> dict[str, float]:
    return {
        name: floor(workdir, size, pairs, server, timeout)
        for name, server, timeout in FLOOR_VARIANTS
    }


# --- ablations ----------------------------------------------------------------------------


@dataclass
class Ablation:
    name: str
    ablate: str
    client: str = "standard"
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


class LeanTransport:
    """An experiment, not a proposal as is: the sync call with the fewest syscalls.

    One blocking socket (no per-call ``settimeout``, so no ``poll`` before each send and
    receive, and no ``ioctl``), no per-call ``getpid``, answers read with ``recv_into`` a
    buffer kept per connection (never a fresh 256 KiB ``bytes`` per call). No deadline,
    retry or fork handling: it shows what those cost, not how to drop them.
    """

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(framing.PREFACE)
        self.buf = bytearray(65536)
        self.view = memoryview(self.buf)

    def call(self, route: routes.Route[Any, Any], request: Any, timeout: float) -> Any:
        self.sock.sendall(framing.request_frame(route.name, int(timeout * 1000), request))
        got = self.sock.recv_into(self.buf)
        if got < 4:
            raise EOFError("short read")
        length = framing.HEADER.unpack_from(self.buf)[0] + 4
        if length > len(self.buf):
            self.buf.extend(bytes(length - len(self.buf)))
            self.view = memoryview(self.buf)
        while got < length:
            more = self.sock.recv_into(self.view[got:length])
            if not more:
                raise EOFError("sidecar closed the connection")
            got += more
        status, body = framing.parse_response(bytes(self.view[4:length]))
        if status != 200:
            raise error_for(status, body)
        return decode(route.response, body)

    async def acall(self, route: routes.Route[Any, Any], request: Any, timeout: float) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self.view.release()
        self.sock.close()


def ablations(
    workdir: Path, target: Target, rounds: int, pairs: int
) -> tuple[list[Ablation], float]:
    """Each variant's pair median, alternating blocks; and the reference saver's.

    Sidecar variants each get their own sidecar; the client variant (memory only) talks
    to the baseline sidecar over a second connection.
    """
    results = [Ablation(name, ablate) for name, ablate in target.variants]
    if target.backend == "memory":
        results.append(Ablation("baseline sidecar, lean client", "", client="lean"))
    ref_samples: list[float] = []
    with contextlib.ExitStack() as stack:
        streams: list[CheckpointStream] = []
        sockets: list[str] = []
        for i, variant in enumerate(results):
            if variant.client == "lean":
                transport: Transport = LeanTransport(sockets[0])
                saver = SidecarSaver(sockets[0], transport=transport)
                stack.callback(saver.close)
                streams.append(CheckpointStream(saver, f"ablate-{i}", chat_messages()))
                continue
            sidecar = SidecarProcess(
                f"ablate-{i}",
                target.config,
                workdir / f"ablate-{i}",
                module="bench._probe_sidecar",
                env={"BENCH_PROBE_ABLATE": variant.ablate},
            )
            stack.callback(sidecar.stop)
            sidecar.start()
            sockets.append(sidecar.socket)
            saver = SidecarSaver(sidecar.socket)
            stack.callback(saver.close)
            saver.wait_ready(10.0)
            streams.append(CheckpointStream(saver, f"ablate-{i}", chat_messages()))
        ref = CheckpointStream(target.reference(None), "ablate-ref", chat_messages())
        for stream in [*streams, ref]:
            run_sync_block(stream, pairs)
        for r in range(rounds):
            order = list(range(len(results)))
            if r % 2:
                order.reverse()
            for i in order:
                results[i].samples += run_sync_block(streams[i], pairs)
                delete_threads_sync(streams[i].saver, streams[i].take_threads())
            ref_samples += run_sync_block(ref, pairs)
            delete_threads_sync(ref.saver, ref.take_threads())
    return results, statistics.median(ref_samples)


# --- report -------------------------------------------------------------------------------


def format_pieces(items: list[Piece]) -> str:
    lines = [f"{'side':<8} {'route':<5} {'step':<54} {'kind':<9} {'µs':>7}", "-" * 87]
    for p in items:
        lines.append(f"{p.side:<8} {p.route:<5} {p.what:<54} {p.kind:<9} {p.us:>7.1f}")
    return "\n".join(lines)


def format_live(
    result: Live, reference: str, pieces_client_us: float | None, floor_us: float | None
) -> str:
    seg = result.sidecar_us
    hop = result.pair_us - result.ref_pair_us
    nan = float("nan")
    ex_put, ex_get = result.exchange_us.get("put", nan), result.exchange_us.get("get_tuple", nan)
    in_put, in_get = seg.get("put.total", nan), seg.get("get_tuple.total", nan)
    lines = [
        f"pair through the instrumented sidecar        {result.pair_us:8.1f} µs",
        f"{reference + ' pair':<44} {result.ref_pair_us:8.1f} µs",
        f"hop = difference                             {hop:8.1f} µs",
        "",
        f"{'per request (median µs)':<60} {'put':>8} {'get':>8}",
        f"  {'client: _exchange (frame, send, wait, parse)':<58} {ex_put:>8.1f} {ex_get:>8.1f}",
    ]
    names = [
        ("total", "  sidecar: bytes in → answer encoded, of which"),
        ("queue", "    arrival → request task runs (create_task, loop turn)"),
        ("parse", "    framing.parse_request"),
        ("dispatch", "    Dispatcher.dispatch (decode, timeout, handler, metrics)"),
        ("frame", "    framing.frame (encode the answer)"),
    ]
    for key, label in names:
        put, get = seg.get(f"put.{key}", nan), seg.get(f"get_tuple.{key}", nan)
        lines.append(f"{label:<60} {put:>8.1f} {get:>8.1f}")
    lines.append(
        f"  {'kernel + wake-ups (exchange minus sidecar)':<58} "
        f"{ex_put - in_put:>8.1f} {ex_get - in_get:>8.1f}"
    )
    write_put, write_get = seg.get("put.write", nan), seg.get("get_tuple.write", nan)
    lines.append(
        f"  {'sidecar in transport.write (off the critical path: *)':<58} "
        f"{write_put:>8.1f} {write_get:>8.1f}"
    )
    lines.append(
        "  * the client has the answer once the send is done; a large number here is the "
        "woken\n    client preempting the sidecar on a shared CPU, not a slow write"
    )
    own = "the saver's own code (pair - serde - socket exchanges)"
    lines += [
        "",
        f"{'per pair (median µs)':<60} {'Sidecar':>8} {reference[:8]:>8}",
        f"  {'LangGraph serde (dumps_typed + loads_typed)':<58} "
        f"{result.serde_us:>8.1f} {result.ref_serde_us:>8.1f}",
        f"  {own:<58} {result.rest_us:>8.1f} {result.ref_rest_us:>8.1f}",
        f"  {'socket exchanges, of which':<58} {ex_put + ex_get:>8.1f}",
        f"    {'inside the sidecar':<56} {in_put + in_get:>8.1f}",
        f"    {'kernel, syscalls, wake-ups, client framing':<56} "
        f"{ex_put + ex_get - in_put - in_get:>8.1f}",
    ]
    if pieces_client_us is not None:
        label = "client work, warm and alone ('pieces': serde + protocol)"
        lines.append(f"  {label:<58} {pieces_client_us:>8.1f}")
    if floor_us is not None:
        label = "floor: the same 2 round trips to a bare uvloop server"
        lines.append(f"  {label:<58} {floor_us:>8.1f}")
    return "\n".join(lines)


def format_ablations(items: list[Ablation], reference: str, inmem_us: float) -> str:
    base = items[0].median
    lines = [
        f"{'sidecar variant':<28} {'pair median µs':>15} {'vs baseline':>12} {'hop µs':>8}",
        "-" * 66,
    ]
    for a in items:
        lines.append(
            f"{a.name:<28} {a.median:>15.1f} {a.median - base:>+12.1f} {a.median - inmem_us:>8.1f}"
        )
    lines.append(f"{reference + ' (reference)':<28} {inmem_us:>15.1f}")
    return "\n".join(lines)


def _close(client: Any) -> None:
    """``valkey.Valkey.close`` (untyped upstream)."""
    client.close()


def valkey_pieces(url: str, n: int) -> list[Piece]:
    """Round trips to Valkey: raw, through valkey-py (sync, asyncio) and both savers' calls."""
    import valkey
    from langgraph_checkpoint_aws import ValkeySaver  # type: ignore[import-untyped,unused-ignore]

    from agentpersistence.sidecar.backends.valkey.checkpoint import ValkeyCheckpointBackend
    from agentpersistence.sidecar.settings import ValkeySettings

    out: list[Piece] = []
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:

        def raw_ping() -> None:
            sock.sendall(b"PING\r\n")
            sock.recv(64)

        out.append(Piece("client", "-", "raw RESP PING, blocking socket", "valkey",
                         median_us(raw_ping, n)))  # fmt: skip
    client = valkey.Valkey.from_url(url)
    try:
        out.append(Piece("peer", "-", "valkey-py sync PING", "valkey",
                         median_us(client.ping, n)))  # fmt: skip
        peer = ValkeySaver(client)
        stream = CheckpointStream(peer, "vp-peer", chat_messages())
        steps = [stream.next() for _ in range(n + 200)]
        it = iter(steps)
        last: list[Any] = []

        def peer_put() -> None:
            s = next(it)
            last[:] = [s]
            peer.put(s.config, s.checkpoint, s.metadata, s.new_versions)

        out.append(Piece("peer", "put", "ValkeySaver.put (1 pipeline)", "valkey",
                         median_us(peer_put, n)))  # fmt: skip
        get_conf = last[0].get_config
        out.append(Piece("peer", "get", "ValkeySaver.get_tuple latest (LRANGE + pipeline)",
                         "valkey", median_us(lambda: peer.get_tuple(get_conf), n)))  # fmt: skip
    finally:
        _close(client)

    loop = uvloop.new_event_loop()
    try:
        backend = ValkeyCheckpointBackend(ValkeySettings(url=url))
        loop.run_until_complete(backend.start())
        conn: Any = backend.conn

        async def timed(make: Callable[[], Coroutine[Any, Any, Any]], k: int) -> float:
            samples = []
            for _ in range(k):
                t0 = time.perf_counter_ns()
                await make()
                samples.append(time.perf_counter_ns() - t0)
            return statistics.median(samples) / 1000.0

        def add(route: str, what: str, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
            loop.run_until_complete(timed(make, 200))
            out.append(Piece("sidecar", route, what, "valkey",
                             loop.run_until_complete(timed(make, n))))  # fmt: skip

        add("-", "valkey-py asyncio PING (uvloop)", lambda: conn.run_one(("PING",)))
        saver = SidecarSaver("/nonexistent", transport=_NoTransport())
        sstream = CheckpointStream(saver, "vp-sidecar", chat_messages())
        reqs = [saver._put_request(x.config, x.checkpoint, x.metadata)
                for x in (sstream.next() for _ in range(n + 200))]  # fmt: skip
        rit = iter(reqs)
        add("put", "backend.put (EVALSHA put + ZADD index, pipeline)",
            lambda: backend.put(next(rit)))  # fmt: skip
        thread = reqs[-1].record.thread_id
        get_req = m.GetTupleRequest(thread, "")
        add("get", "backend.get_tuple (EVALSHA get)", lambda: backend.get_tuple(get_req))
        loop.run_until_complete(backend.close())
    finally:
        loop.close()
    stats = valkey.Valkey.from_url(url)
    try:
        info = cast(dict[str, Any], stats.info("commandstats"))
    finally:
        _close(stats)
    for command in ("cmdstat_evalsha", "cmdstat_ping", "cmdstat_set", "cmdstat_lpush",
                    "cmdstat_lrange", "cmdstat_get", "cmdstat_zadd"):  # fmt: skip
        if command in info:
            out.append(Piece("valkey", "-", f"server time per {command[8:].upper()} "
                             f"(INFO commandstats, all callers)", "server",
                             float(info[command]["usec_per_call"])))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    p.add_argument(
        "--backend",
        choices=["memory", "valkey"],
        default="memory",
        help="the sidecar's backend for the live and ablation views (valkey: against the "
        "peer ValkeySaver, on an embedded Valkey)",
    )
    p.add_argument(
        "--only",
        choices=["pieces", "live", "floor", "ablations"],
        action="append",
        help="run only these views (repeatable)",
    )
    p.add_argument("--rounds", type=int, help="rounds of blocks in live and ablations (8)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the numbers here")
    args = p.parse_args(argv)
    views = set(args.only or ["pieces", "live", "floor", "ablations"])
    n, rounds, pairs = (300, 2, 50) if args.quick else (3000, 8, 200)
    rounds = args.rounds or rounds
    doc: dict[str, Any] = {"backend": args.backend, "load_average": os.getloadavg()}
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="ap-profile-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        target = _target(args.backend, workdir, stack)
        client_us: float | None = None
        if "pieces" in views:
            _progress("timing pieces in-process")
            items = pieces(n)
            client_us = sum(x.us for x in items if x.side == "client" and x.kind != "reference")
            if args.backend == "valkey":
                items += valkey_pieces(target.config["checkpointer"]["valkey"]["url"], n)
            doc["pieces"] = [vars(x) for x in items]
            print("== pieces: each step alone, warm, in-process ==")
            print(format_pieces(items))
            print()
        floor_us: float | None = None
        if "floor" in views:
            _progress("timing the transport floor")
            floor_all = floors(workdir, 5300, pairs)
            floor_us = floor_all[FLOOR_VARIANTS[0][0]]
            doc["floor_us"] = floor_all
            print("== floor: the pair's 2 round trips to a bare uvloop server (no work) ==")
            for name, value in floor_all.items():
                print(f"  {name:<58} {value:8.1f} µs")
            print()
        if "live" in views:
            _progress(f"timing the instrumented sidecar[{args.backend}]")
            result = live(workdir, target, rounds, pairs)
            doc["live"] = vars(result)
            print(f"== live: the instrumented sidecar[{args.backend}] ==")
            print(format_live(result, target.reference_name, client_us, floor_us))
            print()
        if "ablations" in views:
            _progress("ablations: sidecars with pieces switched off, alternating blocks")
            items_a, ref_us = ablations(workdir, target, rounds, pairs)
            doc["ablations"] = {a.name: a.median for a in items_a}
            doc["ablations_reference"] = {target.reference_name: ref_us}
            print(f"== ablations: sidecar[{args.backend}] pair median with pieces removed ==")
            print(format_ablations(items_a, target.reference_name, ref_us))
        doc["load_average_end"] = os.getloadavg()
        if args.json is not None:
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def _target(backend: str, workdir: Path, stack: contextlib.ExitStack) -> Target:
    if backend == "memory":
        return Target(
            "memory", MEMORY_CONFIG, "InMemorySaver", lambda serde: InMemorySaver(serde=serde),
            ABLATION_VARIANTS,
        )  # fmt: skip
    import valkey
    from langgraph_checkpoint_aws import ValkeySaver  # type: ignore[import-untyped,unused-ignore]

    server = ValkeyServer(workdir / "valkey")
    stack.callback(server.stop)
    url = server.start().url

    def peer(serde: SerializerProtocol | None) -> BaseCheckpointSaver[Any]:
        client = valkey.Valkey.from_url(url)
        stack.callback(client.close)
        return cast(BaseCheckpointSaver[Any], ValkeySaver(client, serde=serde))

    config = {"checkpointer": {"backend": "valkey", "valkey": {"url": url}}}
    return Target("valkey", config, "ValkeySaver", peer, VALKEY_ABLATION_VARIANTS)


if __name__ == "__main__":
    sys.exit(main())
