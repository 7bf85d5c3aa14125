"""Malformed requests get a 4xx with a typed error body, on both framings, and the sidecar
keeps serving afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol import framing
from agentpersistence.client.protocol.routes import CONTENT_TYPE, PROTOCOL_HEADER
from rig import unix_http
from rig.sidecar import MEMORY_CONFIG, SidecarProcess

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_sidecar() -> Iterator[SidecarProcess]:
    import tempfile
    from pathlib import Path

    sidecar = SidecarProcess(
        MEMORY_CONFIG,
        Path(tempfile.mkdtemp(prefix="ap-sidecar-")),
        ["--max-body-bytes", str(LIMIT)],
    )
    yield sidecar.start()
    sidecar.stop()


def http_post(path: str, route: str, body: bytes, version: str | None = "1") -> tuple[int, Any]:
    headers = {"Content-Type": CONTENT_TYPE}
    if version is not None:
        headers[PROTOCOL_HEADER] = version
    status, payload = unix_http.request(path, "POST", route, body, headers)
    return status, framing.unpack(payload)


def frame_exchange(path: str, raw: bytes, preface: bytes = framing.PREFACE) -> tuple[int, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(preface + raw)
        header = _recv_exactly(sock, 4)
        status, body = framing.parse_response(_recv_exactly(sock, framing.HEADER.unpack(header)[0]))
        return status, body


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "sidecar closed the connection"
        data += chunk
    return data


def raw_frame(payload: bytes) -> bytes:
    return framing.HEADER.pack(len(payload)) + payload


HTTP_CASES = [
    ("/v1/checkpoint/get_tuple", b"\xc1\xc1", "1", 400, "invalid_request", "not valid msgpack"),
    (
        "/v1/checkpoint/get_tuple",
        framing.pack({"thread_id": 42}),
        "1",
        400,
        "invalid_request",
        "thread_id: expected str",
    ),
    (
        "/v1/checkpoint/nothing",
        framing.pack({}),
        "1",
        404,
        "unknown_route",
        "/v1/checkpoint/nothing",
    ),
    (
        "/v1/checkpoint/get_tuple",
        framing.pack({"thread_id": "t"}),
        "7",
        426,
        "protocol_mismatch",
        "7",
    ),
    (
        "/v1/checkpoint/get_tuple",
        framing.pack({"thread_id": "t"}),
        None,
        426,
        "protocol_mismatch",
        "",
    ),
    ("/v1/checkpoint/put", b"\x00" * (LIMIT + 1), "1", 413, "payload_too_large", str(LIMIT)),
]


@pytest.mark.parametrize(
    ("route", "body", "version", "status", "code", "fragment"),
    HTTP_CASES,
    ids=["undecodable", "wrong-type", "unknown-route", "wrong-version", "no-version", "too-large"],
)
def test_http_refusals_are_typed(
    small_sidecar: SidecarProcess,
    route: str,
    body: bytes,
    version: str | None,
    status: int,
    code: str,
    fragment: str,
) -> None:
    got_status, got = http_post(small_sidecar.socket, route, body, version)
    assert (got_status, got["code"]) == (status, code)
    assert fragment in got["message"]
    _still_serving(small_sidecar)


FRAME_CASES = [
    (raw_frame(b"\xc1"), 400, "invalid_request", "not valid msgpack"),
    (
        raw_frame(framing.pack(["checkpoint.get_tuple", 1000, {"thread_id": []}])),
        400,
        "invalid_request",
        "expected str",
    ),
    (
        raw_frame(framing.pack(["checkpoint.get_tuple", "soon", {}])),
        400,
        "invalid_request",
        "frame must be",
    ),
    (
        raw_frame(framing.pack(["checkpoint.nothing", 1000, {}])),
        404,
        "unknown_route",
        "checkpoint.nothing",
    ),
    (raw_frame(b"\x00" * (LIMIT + 1)), 413, "payload_too_large", str(LIMIT)),
]


@pytest.mark.parametrize(
    ("raw", "status", "code", "fragment"),
    FRAME_CASES,
    ids=["undecodable", "wrong-type", "bad-envelope", "unknown-route", "too-large"],
)
def test_frame_refusals_are_typed(
    small_sidecar: SidecarProcess, raw: bytes, status: int, code: str, fragment: str
) -> None:
    got_status, got = frame_exchange(small_sidecar.socket, raw)
    assert (got_status, got["code"]) == (status, code)
    assert fragment in got["message"]
    _still_serving(small_sidecar)


def test_a_connection_survives_an_oversized_frame(small_sidecar: SidecarProcess) -> None:
    ok = raw_frame(framing.pack(["checkpoint.get_tuple", 1000, {"thread_id": "t"}]))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(small_sidecar.socket)
        sock.sendall(framing.PREFACE + raw_frame(b"\x00" * (LIMIT + 10)) + ok)
        statuses = []
        for _ in range(2):
            header = _recv_exactly(sock, 4)
            status, _ = framing.parse_response(
                _recv_exactly(sock, framing.HEADER.unpack(header)[0])
            )
            statuses.append(status)
    assert statuses == [413, 200]


def test_wrong_protocol_version_in_preface(small_sidecar: SidecarProcess) -> None:
    ok = raw_frame(framing.pack(["checkpoint.get_tuple", 1000, {"thread_id": "t"}]))
    status, body = frame_exchange(small_sidecar.socket, ok, preface=framing.MAGIC + b"\x09")
    assert (status, body["code"]) == (426, "protocol_mismatch")
    _still_serving(small_sidecar)


def _still_serving(sidecar: SidecarProcess) -> None:
    with SidecarSaver(sidecar.socket, timeout=5) as saver:
        assert saver.get_tuple({"configurable": {"thread_id": "nobody"}}) is None
