"""Where a thread's records live in its session, and how a record becomes a step payload.

Every id is a UUID5 of what it names, so a retried call writes the same step again:

- per namespace, the invocation :func:`checkpoints` holds one step per checkpoint
  (:func:`checkpoint_step`), stamped with the time in the checkpoint id, so the newest step
  is the latest checkpoint;
- per checkpoint, the invocation :func:`writes` holds one step per ``put_writes`` call
  (:func:`writes_step`, from the task and its indexes);
- per session, the invocation :data:`NAMESPACES` registers the thread's namespaces, so a
  listing finds them without reading every step.

A payload is text content blocks: a JSON header, then the record's bytes in base64 pieces.
A deleted record is overwritten in place by a *tombstone* stamped :data:`TOMBSTONE_TIME`, so
it sorts after every live step and never shadows the latest checkpoint.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentpersistence.client.protocol import rules

from .. import payload_format

FORMAT = 1
PIECE_CHARS = 100_000
"""Base64 characters per text content block."""
TOMBSTONE_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
"""The time of a deleted record's step: before any live step."""
CHECKPOINT, WRITES, NAMESPACE, THREAD, DELETED = (
    "checkpoint",
    "writes",
    "namespace",
    "thread",
    "deleted",
)

_ROOT = uuid.UUID("6f0d7a52-9a4e-5c1b-8d3e-3a1f0c2b7e41")
"""The UUID5 namespace of every id this backend derives."""


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_ROOT, "\0".join(parts)))


NAMESPACES = _uuid("namespaces")
"""The invocation that registers a session's namespaces."""
THREADS = _uuid("threads")
"""The directory session's invocation of thread → session mappings."""


def checkpoints(thread_id: str, ns: str) -> str:
    """The invocation of a namespace's checkpoints."""
    return _uuid("checkpoints", thread_id, ns)


def checkpoint_step(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return _uuid("checkpoint", thread_id, ns, checkpoint_id)


def writes(thread_id: str, ns: str, checkpoint_id: str) -> str:
    """The invocation of one checkpoint's pending writes."""
    return _uuid("writes", thread_id, ns, checkpoint_id)


def writes_step(
    thread_id: str, ns: str, checkpoint_id: str, task_id: str, idxs: Sequence[int], digest: str
) -> str:
    """One ``put_writes`` call's step: a retry names the same step. Writes that replace
    (``rules.write_replaces``) overwrite their step; others carry their content's ``digest``,
    so a different value lands beside the first and reading keeps the first."""
    indexes = ",".join(map(str, idxs))
    return _uuid("writes", thread_id, ns, checkpoint_id, task_id, indexes, digest)


def namespace_step(ns: str) -> str:
    return _uuid("namespace", ns)


def thread_step(thread_id: str) -> str:
    """The directory's step for a thread."""
    return _uuid("thread", thread_id)


def digest_of(idxs: Sequence[int], values: Sequence[bytes]) -> str:
    """The content part of a writes step's id ("" when its writes replace)."""
    if any(rules.write_replaces(idx) for idx in idxs):
        return ""
    h = hashlib.sha256()
    for value in values:
        h.update(len(value).to_bytes(8, "big"))
        h.update(value)
    return h.hexdigest()


# --- payloads --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A decoded step: its header and bytes."""

    step_id: str
    invocation_id: str
    time: dt.datetime
    header: dict[str, Any]
    data: bytes = b""

    @property
    def kind(self) -> str:
        return str(self.header.get("kind", ""))


def payload(kind: str, header: Mapping[str, Any], data: bytes = b"") -> dict[str, Any]:
    """A PutInvocationStep payload."""
    text = base64.b64encode(data).decode()
    pieces = [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]
    head = json.dumps({"ap": FORMAT, **header, "kind": kind}, separators=(",", ":"))
    return {"contentBlocks": [{"text": head}, *({"text": piece} for piece in pieces)]}


def tombstone() -> dict[str, Any]:
    return payload(DELETED, {})


def decode(raw: Mapping[str, Any], where: str) -> Step:
    """A step from a GetInvocationStep answer's ``invocationStep``."""
    blocks = raw.get("payload", {}).get("contentBlocks", [])
    texts = [block.get("text") for block in blocks]
    if not texts or not all(isinstance(text, str) for text in texts):
        return _foreign(raw)
    try:
        header = json.loads(texts[0])
    except ValueError:
        return _foreign(raw)
    if not isinstance(header, dict) or "ap" not in header:
        return _foreign(raw)
    if header["ap"] != FORMAT:
        step = f"step {raw.get('invocationStepId')}"
        raise payload_format.unreadable(where, step, header["ap"], FORMAT)
    return Step(
        step_id=str(raw["invocationStepId"]),
        invocation_id=str(raw["invocationId"]),
        time=raw["invocationStepTime"],
        header=header,
        data=base64.b64decode("".join(texts[1:])) if len(texts) > 1 else b"",
    )


def _foreign(raw: Mapping[str, Any]) -> Step:
    """A step someone else wrote into the session: read as no record."""
    return Step(
        step_id=str(raw.get("invocationStepId", "")),
        invocation_id=str(raw.get("invocationId", "")),
        time=raw.get("invocationStepTime", TOMBSTONE_TIME),
        header={"kind": "foreign"},
    )


def copied_step(thread_id: str, source_step: str) -> str:
    """A writes step copied into another thread (copying again rewrites it)."""
    return _uuid("copied", thread_id, source_step)
