"""Builders for tests that drive a checkpoint backend directly (no socket): records with
ordered ids, pending writes, chains, and listings read to the end."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TypeVar

from agentpersistence.client.protocol import messages as m
from agentpersistence.sidecar.backends.base import CheckpointBackend

R = TypeVar("R", m.CheckpointRecord, m.CheckpointRecord | None)


def cid(i: int) -> str:
    """Checkpoint ids that sort as their numbers (as uuid6 ids sort by time)."""
    return f"1ef-{i:08d}"


def record(
    thread: str,
    i: int,
    *,
    ns: str = "",
    parent: int | None = None,
    metadata: dict[str, Any] | None = None,
    blob: bytes | None = None,
) -> m.CheckpointRecord:
    return m.CheckpointRecord(
        thread_id=thread,
        checkpoint_ns=ns,
        checkpoint_id=cid(i),
        parent_checkpoint_id=cid(parent) if parent is not None else None,
        type="msgpack",
        checkpoint=blob if blob is not None else b"\x00blob\xff" + str(i).encode(),
        metadata=json.dumps(metadata if metadata is not None else {"step": i}).encode(),
    )


def write(task: str, idx: int, value: bytes, channel: str = "ch") -> m.PendingWrite:
    return m.PendingWrite(task, idx, channel, "bytes", value, task_path="p")


async def put_chain(
    backend: CheckpointBackend,
    thread: str,
    count: int,
    *,
    ns: str = "",
    run_id: str | None = None,
    start: int = 0,
) -> None:
    for i in range(start, start + count):
        parent = i - 1 if i > start else None
        await backend.put(m.PutRequest(record(thread, i, ns=ns, parent=parent), run_id))


async def list_all(backend: CheckpointBackend, request: m.ListRequest) -> list[m.CheckpointRecord]:
    """Every page of a listing, checking each page's size."""
    found: list[m.CheckpointRecord] = []
    while True:
        page = await backend.list(request)
        assert len(page.records) <= request.limit
        found += page.records
        if page.cursor is None:
            return found
        request = dataclasses.replace(request, cursor=page.cursor)


def positions(records: Sequence[m.CheckpointRecord]) -> list[tuple[str, str, str]]:
    return [(r.thread_id, r.checkpoint_ns, r.checkpoint_id) for r in records]


def canonical(records: Sequence[R]) -> list[R]:
    """Records with writes in a fixed order (stores need not keep their order)."""
    return [
        dataclasses.replace(r, writes=sorted(r.writes, key=lambda w: (w.task_id, w.idx)))
        if r is not None
        else r
        for r in records
    ]
