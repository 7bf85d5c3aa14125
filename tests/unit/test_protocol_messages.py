"""Every message survives the wire unchanged, and bad shapes are refused with the field named."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agentpersistence.client.protocol import errors, framing
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.messages import decode
from agentpersistence.client.protocol.routes import ROUTES

WRITE = m.PendingWrite("task-1", -1, "__error__", "msgpack", b"\x01\x02", "~__pregel_pull, a")
RECORD = m.CheckpointRecord(
    "thread-1", "child:1", "1ef-0002", "1ef-0001", "msgpack", b"\x00" * 70, b'{"step":1}', [WRITE]
)

SAMPLES: list[Any] = [
    m.Empty(),
    WRITE,
    RECORD,
    m.GetTupleRequest("t", "", None),
    m.GetTupleRequest("t", "ns", "1ef"),
    m.GetTupleResponse(None),
    m.GetTupleResponse(RECORD),
    m.ListRequest(),
    m.ListRequest("t", None, None, "1ef", b'{"source":"loop"}', 7, b"\x93\xa1a\xa1b\xa1c"),
    m.ListResponse([RECORD, RECORD], b"cursor"),
    m.ListResponse([], None),
    m.PutRequest(RECORD, "run-1"),
    m.PutRequest(dataclasses.replace(RECORD, writes=[]), None),
    m.PutWritesRequest("t", "", "1ef", [WRITE, dataclasses.replace(WRITE, idx=3)]),
    m.DeleteThreadRequest("t"),
    m.DeleteForRunsRequest(["r1", "r2"]),
    m.CopyThreadRequest("a", "b"),
    m.PruneRequest(["a", "b"], "delete"),
    m.BackendHealth("checkpointer", "valkey", False, "connection refused"),
    m.StoreBatchRequest(
        [
            m.StoreOp("get", ["users", "u1"], "k", refresh_ttl=False),
            m.StoreOp(
                "put",
                ["users", "u1"],
                "k",
                value=b'{"a":1}',
                index=["a"],
                vectors=[m.FieldVector("a", [0.5, -1.0])],
                ttl_seconds=60.0,
            ),
            m.StoreOp("search", ["users"], filter=b'{"a":{"$gt":0}}', query_vector=[1.0, 2.5]),
            m.StoreOp(
                "list_namespaces",
                conditions=[m.NamespaceCondition("prefix", ["users", "*"])],
                max_depth=2,
            ),
        ]
    ),
    m.StoreBatchResponse(
        [
            m.StoreResult(item=m.StoreItem(["n"], "k", b"{}", 1.5, 2.5)),
            m.StoreResult(items=[m.StoreItem(["n"], "k", b"{}", 1.0, 2.0, 0.75)]),
            m.StoreResult(namespaces=[["a", "b"]]),
            m.StoreResult(),
        ]
    ),
    m.CacheGetRequest([m.CacheKey(["node", "hash"], "k")]),
    m.CacheGetResponse([m.CacheEntry(["node"], "k", "msgpack", b"\x01", None)]),
    m.CacheSetRequest([m.CacheEntry(["node"], "k", "msgpack", b"\x01", 30.0)]),
    m.CacheClearRequest(None),
    m.CacheClearRequest([["node"], ["other", "ns"]]),
    m.ReadyResponse(True, [m.BackendHealth("checkpointer", "memory", True)]),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda s: type(s).__name__)
def test_message_round_trips(message: Any) -> None:
    assert decode(type(message), framing.unpack(framing.pack(message))) == message


def test_every_route_message_type_has_a_sample() -> None:
    sampled = {type(s) for s in SAMPLES}
    for route in ROUTES.values():
        assert route.request in sampled, route.name
        assert route.response in sampled, route.name


@pytest.mark.parametrize(
    ("cls", "wire", "fragment"),
    [
        (m.GetTupleRequest, {"thread_id": 5}, "GetTupleRequest.thread_id: expected str, got int"),
        (m.GetTupleRequest, {}, "GetTupleRequest.thread_id: missing"),
        (m.GetTupleRequest, ["t"], "GetTupleRequest: expected a map, got list"),
        (m.ListRequest, {"limit": True}, "ListRequest.limit: expected int, got bool"),
        (m.ListRequest, {"filter": "x"}, "ListRequest.filter: expected bytes, got str"),
        (m.DeleteForRunsRequest, {"run_ids": "r1"}, "run_ids: expected a list, got str"),
        (m.DeleteForRunsRequest, {"run_ids": ["a", 1]}, "run_ids[1]: expected str, got int"),
        (
            m.PutRequest,
            {"record": {"thread_id": "t"}},
            "PutRequest.record.checkpoint_ns: missing",
        ),
    ],
)
def test_wrong_shapes_are_rejected_with_the_field_named(
    cls: type[Any], wire: object, fragment: str
) -> None:
    with pytest.raises(errors.RequestRejected) as caught:
        decode(cls, wire)
    assert fragment in caught.value.message


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert decode(m.DeleteThreadRequest, {"thread_id": "t", "future": 1}) == m.DeleteThreadRequest(
        "t"
    )


@pytest.mark.parametrize("cls", errors.all_error_types())
def test_every_error_code_round_trips(cls: type[errors.SidecarError]) -> None:
    original = cls("something went wrong")
    rebuilt = errors.error_for(original.status, framing.unpack(framing.pack(original.to_wire())))
    assert type(rebuilt) is cls
    assert rebuilt.message == "something went wrong"
    assert cls.hint in str(rebuilt)


def test_error_codes_and_statuses_are_unique_and_http_like() -> None:
    types = errors.all_error_types()
    assert len({t.code for t in types}) == len(types)
    assert all(400 <= t.status < 600 for t in types)
    assert all(t.status < 500 for t in types if issubclass(t, errors.RequestRejected))


def test_an_unrecognised_error_body_still_becomes_a_typed_error() -> None:
    assert type(errors.error_for(418, b"teapot")) is errors.RequestRejected
    assert type(errors.error_for(500, None)) is errors.SidecarError


def test_frames_reject_garbage() -> None:
    with pytest.raises(errors.RequestRejected, match="not valid msgpack"):
        framing.parse_request(b"\xc1")
    with pytest.raises(errors.RequestRejected, match=r"frame must be \[route name"):
        framing.parse_request(framing.pack({"route": "x"}))
