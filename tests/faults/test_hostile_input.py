"""Hostile input on both framings: every route, fuzzed with hypothesis.

Malformed, truncated, oversized and type-confused requests each get a typed 4xx (the
``{"code", "message"}`` body of :mod:`agentpersistence.client.protocol.errors`), never a 5xx
or a dropped connection; a valid request succeeds after each; and the sidecar's memory stays
flat over ten thousand bad requests. Hypothesis runs derandomized with a fixed number of
examples, so every run sends the same requests.
"""

from __future__ import annotations

import socket
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol import errors, framing, routes
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.routes import CONTENT_TYPE, PROTOCOL_HEADER, ROUTES
from rig import unix_http
from rig.processes import memory_kib
from rig.sidecar import SidecarProcess

LIMIT = 64 * 1024
"""The fuzzed sidecar's --max-body-bytes: oversized requests stay cheap to send."""
CONFIG: dict[str, Any] = {
    "checkpointer": {"backend": "memory"},
    "store": {"backend": "memory"},
    "cache": {"backend": "memory"},
}
CODES = {cls.code: cls.status for cls in errors.all_error_types()}
TIMEOUT = 30.0
SHORT_DEADLINE_MS = 100
"""Deadlines below this may run out before the request is even decoded (a loaded machine)."""
URL_CHARS = string.ascii_letters + string.digits + "/._-~%"
BAD_REQUESTS = 10_000
RSS_GROWTH_KIB = 8 * 1024
"""Most the sidecar's resident memory may grow over ``BAD_REQUESTS`` refusals."""

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_ROUTES = settings(FUZZ, max_examples=400)
"""Type confusion has a place to hit in every field of every route: more examples."""

_RECORD = m.CheckpointRecord(
    thread_id="fuzz",
    checkpoint_ns="",
    checkpoint_id="1ef00000-0000-6000-8000-000000000001",
    parent_checkpoint_id=None,
    type="bytes",
    checkpoint=b"checkpoint",
    metadata=b'{"step": 1}',
    writes=[m.PendingWrite("task", 0, "channel", "bytes", b"value")],
)
VALID: dict[str, object] = {
    routes.READY.name: m.Empty(),
    routes.CHECKPOINT_GET_TUPLE.name: m.GetTupleRequest("fuzz"),
    routes.CHECKPOINT_LIST.name: m.ListRequest(thread_id="fuzz", filter=b'{"step": 1}'),
    routes.CHECKPOINT_PUT.name: m.PutRequest(_RECORD, run_id="run"),
    routes.CHECKPOINT_PUT_WRITES.name: m.PutWritesRequest(
        "fuzz", "", _RECORD.checkpoint_id, _RECORD.writes
    ),
    routes.CHECKPOINT_DELETE_THREAD.name: m.DeleteThreadRequest("fuzz-gone"),
    routes.CHECKPOINT_DELETE_FOR_RUNS.name: m.DeleteForRunsRequest(["other-run"]),
    routes.CHECKPOINT_COPY_THREAD.name: m.CopyThreadRequest("fuzz", "fuzz-copy"),
    routes.CHECKPOINT_PRUNE.name: m.PruneRequest(["fuzz-copy"]),
    routes.STORE_BATCH.name: m.StoreBatchRequest(
        [
            m.StoreOp("put", ["fuzz"], "k", b'{"a": 1}', ttl_seconds=60.0),
            m.StoreOp("get", ["fuzz"], "k"),
            m.StoreOp("search", ["fuzz"], filter=b'{"a": 1}', limit=5),
            m.StoreOp("list_namespaces", conditions=[m.NamespaceCondition("prefix", ["*"])]),
        ]
    ),
    routes.CACHE_GET.name: m.CacheGetRequest([m.CacheKey(["fuzz"], "k")]),
    routes.CACHE_SET.name: m.CacheSetRequest([m.CacheEntry(["fuzz"], "k", "bytes", b"v", 60.0)]),
    routes.CACHE_CLEAR.name: m.CacheClearRequest([["fuzz"]]),
}
"""A valid request of every route, in wire form once packed: the seeds of type confusion."""
assert set(VALID) == set(ROUTES)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=24)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    process = SidecarProcess(
        CONFIG, Path(tempfile.mkdtemp(prefix="ap-sidecar-")), ["--max-body-bytes", str(LIMIT)]
    )
    yield process.start()
    process.stop()


class FrameClient:
    """One frame connection kept across examples (reopened if the sidecar closes it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None

    def _connected(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(self.path)
            self.sock.sendall(framing.PREFACE)
        return self.sock

    def exchange(self, payload: bytes) -> tuple[int, Any]:
        """Send one frame carrying ``payload``; its reply."""
        return self.raw(framing.HEADER.pack(len(payload)) + payload)

    def raw(self, data: bytes) -> tuple[int, Any]:
        sock = self._connected()
        sock.sendall(data)
        (length,) = framing.HEADER.unpack(_recv_exactly(sock, framing.HEADER.size))
        return framing.parse_response(_recv_exactly(sock, length))

    def assert_serving(self) -> None:
        """A valid request on the same connection succeeds."""
        status, body = self.exchange(framing.pack([routes.READY.name, 10_000, {}]))
        assert status == 200, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture(scope="module")
def frames(sidecar: SidecarProcess) -> Iterator[FrameClient]:
    client = FrameClient(sidecar.socket)
    yield client
    client.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the sidecar closed the connection instead of answering"
        data += chunk
    return bytes(data)


def assert_typed_refusal(status: int, body: Any, code: str | None = None) -> None:
    """A 4xx whose body is a known ``{"code", "message"}`` matching that status."""
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict), body
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert CODES.get(body["code"]) == status, body
    if code is not None:
        assert body["code"] == code, body


def assert_answered(status: int, body: Any) -> None:
    """Either served (the mutation left the request valid) or refused with a typed 4xx."""
    if status != 200:
        assert_typed_refusal(status, body)


def wire(route: str) -> Any:
    return framing.unpack(framing.pack(VALID[route]))


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


@st.composite
def confused(draw: st.DrawFn) -> tuple[str, Any]:
    """A route and a valid body of it with one place changed: a value swapped for one of
    another type, a field dropped, or the whole body replaced."""
    route = draw(st.sampled_from(sorted(VALID)))
    body = wire(route)
    path = draw(st.sampled_from(list(_paths(body))))
    if not path:
        return route, draw(values)
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(values)
    return route, body


def _still_serving(path: str) -> None:
    with SidecarSaver(path, timeout=TIMEOUT) as saver:
        assert saver.get_tuple({"configurable": {"thread_id": "nobody"}}) is None


# --- the frame protocol --------------------------------------------------------------------


@FUZZ_ROUTES
@given(request=confused(), deadline=st.integers(min_value=-(2**63), max_value=2**63))
def test_frames_with_type_confused_bodies_get_typed_answers(
    frames: FrameClient, request: tuple[str, Any], deadline: int
) -> None:
    route, body = request
    status, reply = frames.exchange(framing.pack([route, deadline, body]))
    if deadline < SHORT_DEADLINE_MS and status == errors.DeadlineExceeded.status:
        assert reply["code"] == errors.DeadlineExceeded.code  # its deadline was up at once
    else:
        assert_answered(status, reply)
    frames.assert_serving()


@FUZZ
@given(envelope=st.lists(values, max_size=5) | values)
def test_frames_with_malformed_envelopes_are_refused(frames: FrameClient, envelope: Any) -> None:
    valid = (
        isinstance(envelope, list)
        and len(envelope) in (3, 4)
        and isinstance(envelope[0], str)
        and type(envelope[1]) is int
    )
    status, body = frames.exchange(framing.pack(envelope))
    if valid:
        assert_answered(status, body)
    else:
        assert_typed_refusal(status, body, "invalid_request")
    frames.assert_serving()


@FUZZ
@given(data=st.data())
def test_frames_of_undecodable_or_truncated_msgpack_are_refused(
    frames: FrameClient, data: st.DataObject
) -> None:
    route = data.draw(st.sampled_from(sorted(VALID)))
    payload = framing.pack([route, 1000, wire(route)])
    cut = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    garbage = data.draw(st.sampled_from([b"", b"\xc1", b"\xff\xff", b"\xd9"]))
    assert_typed_refusal(*frames.exchange(payload[:cut] + garbage), "invalid_request")
    frames.assert_serving()


@FUZZ
@given(length=st.integers(min_value=LIMIT + 1, max_value=2**32 - 1))
def test_frames_over_the_size_limit_are_refused_before_they_are_read(
    sidecar: SidecarProcess, length: int
) -> None:
    client = FrameClient(sidecar.socket)
    try:  # the refusal comes before the body is sent: the body is skipped, never held
        assert_typed_refusal(
            *client.raw(framing.HEADER.pack(length) + b"\x00" * 16), "payload_too_large"
        )
    finally:
        client.close()


@FUZZ
@given(data=st.data())
def test_frames_cut_short_by_a_closed_connection_leave_the_sidecar_serving(
    sidecar: SidecarProcess, data: st.DataObject
) -> None:
    route = data.draw(st.sampled_from(sorted(VALID)))
    whole = framing.PREFACE + framing.request_frame(route, 1000, VALID[route])
    cut = data.draw(st.integers(min_value=1, max_value=len(whole) - 1))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(sidecar.socket)
        sock.sendall(whole[:cut])
        sock.shutdown(socket.SHUT_WR)
        # A partial frame is never answered: the sidecar closes when the client does.
        assert sock.recv(65536) == b""
    _still_serving(sidecar.socket)


# --- HTTP ----------------------------------------------------------------------------------


def http_post(
    path: str, url: str, body: bytes, version: str | None = "1", method: str = "POST"
) -> tuple[int, Any]:
    headers = {"Content-Type": CONTENT_TYPE}
    if version is not None:
        headers[PROTOCOL_HEADER] = version
    status, payload = unix_http.request(path, method, url, body, headers)
    return status, framing.unpack(payload)


@FUZZ_ROUTES
@given(request=confused())
def test_http_with_type_confused_bodies_gets_typed_answers(
    sidecar: SidecarProcess, request: tuple[str, Any]
) -> None:
    route, body = request
    assert_answered(*http_post(sidecar.socket, ROUTES[route].path, framing.pack(body)))


PATHS = [r.path for r in ROUTES.values()]


@FUZZ
@given(
    url=st.sampled_from(PATHS) | st.text(URL_CHARS, max_size=20).map("/v1/".__add__),
    body=st.binary(max_size=64),
    version=st.none() | st.sampled_from(["1", "0", "2", "1.0", "", "one"]),
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH"]),
)
def test_http_refusals_are_typed(
    sidecar: SidecarProcess, url: str, body: bytes, version: str | None, method: str
) -> None:
    status, reply = http_post(sidecar.socket, url, body, version, method)
    if url in PATHS and version == "1" and method == "POST":
        assert_answered(status, reply)  # undecodable bodies are refused; some bytes decode
    else:
        assert_typed_refusal(status, reply)


def test_http_over_the_size_limit_is_refused(sidecar: SidecarProcess) -> None:
    status, body = http_post(sidecar.socket, routes.CHECKPOINT_PUT.path, b"\x00" * (LIMIT + 1))
    assert_typed_refusal(status, body, "payload_too_large")


@FUZZ
@given(garbage=st.binary(min_size=1, max_size=200).filter(lambda b: b[:1] != b"\x00"))
def test_garbage_that_is_not_http_gets_a_refusal_and_the_sidecar_serves_on(
    sidecar: SidecarProcess, garbage: bytes
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(sidecar.socket)
        sock.sendall(garbage + b"\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        reply = bytearray()
        while chunk := sock.recv(65536):
            reply += chunk
    if reply:
        head, _, payload = bytes(reply).partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        assert 400 <= status < 500, head
        assert_typed_refusal(status, framing.unpack(payload))
    _still_serving(sidecar.socket)


# --- memory over many refusals ------------------------------------------------------------


def _bad_requests(count: int) -> Iterator[bytes]:
    """Payloads of frames the sidecar must refuse, cycling through every kind and route."""
    names = sorted(VALID)
    for i in range(count):
        route = names[i % len(names)]
        body = wire(route)
        kind = i % 4
        if kind == 0:  # type confusion: the body is a list
            yield framing.pack([route, 1000, [body, i]])
        elif kind == 1:  # truncated msgpack
            payload = framing.pack([route, 1000, body, f"id-{i}"])
            yield payload[: len(payload) // 2]
        elif kind == 2:  # unknown route
            yield framing.pack([f"{route}.v{i}", 1000, body])
        else:  # malformed envelope
            yield framing.pack([route, str(i), body])


def test_memory_stays_flat_over_ten_thousand_bad_requests(
    sidecar: SidecarProcess, frames: FrameClient
) -> None:
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    http_share = BAD_REQUESTS // 10
    for payload in _bad_requests(1000):  # warm up: caches, allocator arenas
        assert_typed_refusal(*frames.exchange(payload))
    before = memory_kib(pid)
    for payload in _bad_requests(BAD_REQUESTS - http_share):
        assert_typed_refusal(*frames.exchange(payload))
    bodies = [b"\xc1", framing.pack([1, 2]), framing.pack({"thread_id": 7})]
    for i in range(http_share):
        url = routes.CHECKPOINT_GET_TUPLE.path if i % 2 else f"/v1/nothing/{i}"
        assert_typed_refusal(*http_post(sidecar.socket, url, bodies[i % len(bodies)]))
    after = memory_kib(pid)
    _still_serving(sidecar.socket)
    print(
        f"\nsidecar RSS over {BAD_REQUESTS} bad requests: {before} KiB before, {after} KiB after "
        f"({after - before:+d} KiB)"
    )
    assert after - before < RSS_GROWTH_KIB
