"""The keys and formats of ``langgraph-checkpoint-aws``'s ``AgentCoreValkeySaver``, read only.

That saver keeps each namespace of a thread as an AgentCore session of the actor: the root
namespace's session id is the thread id, a subgraph namespace's the SHA-256 (hex) of
``"<thread>_<namespace>"``. With ``S`` the session, ``A`` the actor and ``N`` the
namespace, all verbatim (no escaping, no hash tag)::

    agentcore:session:S:A:checkpoints    LIST   checkpoint ids, newest put first (one per put)
    agentcore:checkpoint:S:A:N:I         STRING JSON: checkpoint_id, thread_id, checkpoint_ns,
                                                parent_checkpoint_id, checkpoint_data and
                                                metadata as {"type", "data": base64 of serde
                                                bytes}, created_at, ...
    agentcore:writes:S:A:N:I             LIST   JSON per write: task_id, channel, value
                                                ({"type", "data"}), task_path (no idx)
    agentcore:channel:S:A:N:C:I          STRING channel values (copies; never read)

Checkpoint blobs are passed on as stored. Metadata, which that saver serializes with the
agent's serde, is turned into the protocol's JSON (msgpack or JSON of plain values only; the
sidecar loads no user objects). A write's idx is LangGraph's for its special channels, else
its position among its task's writes, as the client numbers them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import ormsgpack
from langgraph.checkpoint.base import WRITES_IDX_MAP

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import SidecarError

from ..valkey import scripts
from ..valkey.connection import Command, evalsha
from ..valkey.records import text

PREFIX = "agentcore"
"""The saver's key prefix (fixed in its code)."""

READ = scripts.load(__name__.rpartition(".")[0], "saver_read")


def session_id(thread_id: str, checkpoint_ns: str) -> str:
    """The session of a thread's namespace, as the saver names it."""
    if checkpoint_ns:
        return hashlib.sha256(f"{thread_id}_{checkpoint_ns}".encode()).hexdigest()
    return thread_id


def read(
    actor: str,
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str | None,
    *,
    every: bool = False,
) -> Command:
    """The script call reading checkpoint ``checkpoint_id``, else the namespace's latest (or,
    with ``every``, all its checkpoints)."""
    args = ["one", checkpoint_id] if checkpoint_id else ["all" if every else "latest"]
    return _read(actor, thread_id, checkpoint_ns, args)


def _read(actor: str, thread_id: str, checkpoint_ns: str, args: list[str]) -> Command:
    session = session_id(thread_id, checkpoint_ns)
    keys = [
        f"{PREFIX}:session:{session}:{actor}:checkpoints",
        f"{PREFIX}:checkpoint:{session}:{actor}:{checkpoint_ns}:",
        f"{PREFIX}:writes:{session}:{actor}:{checkpoint_ns}:",
    ]
    return evalsha(READ, keys, args)


def decode(thread_id: str, checkpoint_ns: str, reply: Sequence[Any]) -> list[m.CheckpointRecord]:
    """The records of a ``saver_read.lua`` reply."""
    return [_record(thread_id, checkpoint_ns, text(cid), raw, writes) for cid, raw, writes in reply]


def _record(
    thread_id: str, checkpoint_ns: str, checkpoint_id: str, raw: bytes, writes: Sequence[bytes]
) -> m.CheckpointRecord:
    stored = _json(raw, "checkpoint")
    kind, checkpoint = _typed(stored.get("checkpoint_data"))
    parent = stored.get("parent_checkpoint_id")
    return m.CheckpointRecord(
        thread_id=thread_id,
        checkpoint_ns=checkpoint_ns,
        checkpoint_id=checkpoint_id,
        parent_checkpoint_id=parent if isinstance(parent, str) and parent else None,
        type=kind,
        checkpoint=checkpoint,
        metadata=_metadata(stored.get("metadata")),
        writes=_writes(writes),
    )


def _writes(raw: Sequence[bytes]) -> list[m.PendingWrite]:
    per_task: Counter[str] = Counter()
    writes = []
    for item in raw:
        stored = _json(item, "pending write")
        task_id, channel = str(stored.get("task_id", "")), str(stored.get("channel", ""))
        kind, value = _typed(stored.get("value"))
        idx = WRITES_IDX_MAP.get(channel, per_task[task_id])
        per_task[task_id] += 1
        task_path = str(stored.get("task_path", ""))
        writes.append(m.PendingWrite(task_id, idx, channel, kind, value, task_path))
    return writes


def _metadata(value: Any) -> bytes:
    """The saver's serde-typed metadata as the protocol's JSON object."""
    kind, data = _typed(value)
    try:
        if kind == "msgpack":
            parsed = ormsgpack.unpackb(data)
        elif kind == "json":
            parsed = json.loads(data)
        elif kind == "null":
            parsed = {}
        else:
            raise ValueError(kind)
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
        return json.dumps(parsed, separators=(",", ":")).encode()
    except (ormsgpack.MsgpackDecodeError, TypeError, ValueError):
        raise SidecarError(
            f"checkpoint metadata stored by AgentCoreValkeySaver as {kind[:40]!r} holds values "
            "other than JSON's; the sidecar reads only plain metadata (strings, numbers, lists, "
            "objects): keep objects out of configurable and metadata"
        ) from None


def _typed(value: Any) -> tuple[str, bytes]:
    """A ``{"type", "data": base64}`` value of the saver."""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _unreadable("a value")
    try:
        return value["type"], base64.b64decode(value.get("data", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise _unreadable("a value") from None


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _unreadable(f"a {what}")
    return value


def _unreadable(what: str) -> SidecarError:
    return SidecarError(
        f"{what} under agentcore: keys is not in AgentCoreValkeySaver's format; remove the "
        "key, or turn agentcoreValkey.readSaverKeys off if something else writes there"
    )
