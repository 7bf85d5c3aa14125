"""How protocol messages map to the fields of a checkpoint hash, and back.

The checkpoint's blob, type and metadata are stored as sent (opaque bytes). A pending write
is one hash field: ``w:`` + msgpack ``[task_id, idx]`` (so a retried write lands on the same
field) holding msgpack ``[task_id, idx, channel, type, value, task_path]``. Run-index members
are msgpack ``[thread, namespace, id]``. Only this framing is decoded here, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ormsgpack

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import SidecarError

from .schema import WRITE_FIELD_PREFIX
from .scripts import optional

Location = tuple[str, str, str]
"""A checkpoint's place: thread id, namespace, checkpoint id."""


def record_args(request: m.PutRequest) -> list[str | bytes]:
    """The ``put`` script's arguments after ``ns, id``."""
    record = request.record
    return [
        record.type,
        record.checkpoint,
        record.metadata,
        optional(record.parent_checkpoint_id),
        optional(request.run_id),
    ]


def write_field(write: m.PendingWrite) -> bytes:
    return WRITE_FIELD_PREFIX + ormsgpack.packb([write.task_id, write.idx])


def write_value(write: m.PendingWrite) -> bytes:
    return ormsgpack.packb(
        [write.task_id, write.idx, write.channel, write.type, write.value, write.task_path]
    )


def decode_write(value: bytes) -> m.PendingWrite:
    try:
        task_id, idx, channel, kind, data, task_path = ormsgpack.unpackb(value)
    except (ormsgpack.MsgpackDecodeError, TypeError, ValueError):
        raise SidecarError("a stored pending write is not in this backend's format") from None
    return m.PendingWrite(task_id, idx, channel, kind, data, task_path)


def decode_record(location: Location, flat: Sequence[bytes]) -> m.CheckpointRecord:
    """The record of a checkpoint hash, given as a flat ``HGETALL`` reply."""
    fields: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2], strict=True))
    writes = [decode_write(v) for k, v in fields.items() if k.startswith(WRITE_FIELD_PREFIX)]
    parent = fields.get(b"parent")
    try:
        return m.CheckpointRecord(
            thread_id=location[0],
            checkpoint_ns=location[1],
            checkpoint_id=location[2],
            parent_checkpoint_id=parent.decode() if parent is not None else None,
            type=fields[b"type"].decode(),
            checkpoint=fields[b"checkpoint"],
            metadata=fields[b"metadata"],
            writes=writes,
        )
    except (KeyError, UnicodeDecodeError):
        raise SidecarError("a stored checkpoint lacks a field this backend writes") from None


def run_of(flat: Sequence[bytes]) -> str | None:
    """The run that wrote a checkpoint, from its flat ``HGETALL`` reply."""
    for key, value in zip(flat[::2], flat[1::2], strict=True):
        if key == b"run":
            return value.decode()
    return None


def encode_location(location: Location) -> bytes:
    return ormsgpack.packb(list(location))


def decode_location(raw: bytes) -> Location | None:
    """A run-index member, or None if it is not one this backend wrote."""
    try:
        value: Any = ormsgpack.unpackb(raw)
    except (ormsgpack.MsgpackDecodeError, ValueError):
        return None
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value):
        return value[0], value[1], value[2]
    return None


def text(value: bytes | str) -> str:
    """A name Valkey returned (a namespace, id or thread id the sidecar stored as UTF-8)."""
    return value if isinstance(value, str) else value.decode()
