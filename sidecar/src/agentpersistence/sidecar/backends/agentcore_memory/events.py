"""Records as AgentCore Memory events: encoding, chunking, idempotent creation, reading.

A *record* (a checkpoint, the writes of one task, a namespace's registration) is a JSON
header plus opaque bytes. It becomes one event whose payload is ``blob`` items: the header
first, then the bytes in base64 pieces of at most :data:`PIECE_CHARS` characters. Bytes that
do not fit one event (:data:`EVENT_PIECES` pieces) go first into ``chunk`` events, and the
header event, created last, names them: a reader never sees a record whose chunks are
missing, and a crash between the two leaves only unreferenced chunks.

Every event is created with a ``clientToken`` derived from its content and timestamp, so a
retried call (botocore's, or a repeated checkpoint put) never creates a second event.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from agentpersistence.client.protocol.errors import SidecarError

from .. import aws, payload_format
from . import identity
from .client import MemoryClient

PIECE_CHARS = 100_000
"""Base64 characters per payload item (AgentCore's text items take at most 100,000)."""
EVENT_PIECES = 9
"""Payload items of bytes per event: 900,000 base64 characters (675 KB), so a request stays
under 1 MiB, which aiohttp sends without blocking the event loop."""
PAGE = 100
"""Events per ListEvents call (the most AgentCore returns)."""
FORMAT = 1


@dataclass(frozen=True)
class Event:
    """A decoded event of the backend: what it is, and where it is."""

    event_id: str
    actor_id: str
    session_id: str
    timestamp: dt.datetime
    metadata: dict[str, str]
    header: dict[str, Any] = field(default_factory=dict)
    data: bytes = b""

    @property
    def kind(self) -> str:
        return self.metadata.get(identity.KIND, "")


class EventLog(MemoryClient):
    """The events of one memory, through its ``bedrock-agentcore`` client (:mod:`.client`)."""

    # --- writing -------------------------------------------------------------------------

    async def create(
        self,
        actor: str,
        session: str,
        *,
        kind: str,
        header: Mapping[str, Any],
        data: bytes = b"",
        metadata: Mapping[str, str] | None = None,
        timestamp: dt.datetime,
    ) -> None:
        """Create the events of one record (chunks first, then the header event)."""
        pieces = _pieces(data)
        head, rest = pieces[:EVENT_PIECES], pieces[EVENT_PIECES:]
        tags = {identity.KIND: kind, **(metadata or {})}
        digest = _digest(actor, session, kind, header, data, timestamp)
        starts = range(0, len(rest), EVENT_PIECES)
        for part, start in enumerate(starts, start=1):
            chunk_tags = {**tags, identity.KIND: "chunk", identity.KEY: digest}
            chunk_header = {"ap": FORMAT, "kind": "chunk", "key": digest, "part": part}
            await self._create_event(
                actor, session, chunk_header, rest[start : start + EVENT_PIECES],
                chunk_tags, timestamp, f"{digest}.{part}",
            )  # fmt: skip
        full = {"ap": FORMAT, "kind": kind, **header, "key": digest, "chunks": len(starts)}
        await self._create_event(actor, session, full, head, tags, timestamp, digest)

    async def _create_event(
        self,
        actor: str,
        session: str,
        header: Mapping[str, Any],
        pieces: Sequence[str],
        metadata: Mapping[str, str],
        timestamp: dt.datetime,
        token: str,
    ) -> None:
        payload: list[Any] = [{"blob": dict(header)}, *({"blob": piece} for piece in pieces)]
        with self.translated():
            await self.client.create_event(
                memoryId=self.memory_id,
                actorId=actor,
                sessionId=session,
                eventTimestamp=timestamp,
                payload=payload,
                metadata={key: {"stringValue": value} for key, value in metadata.items()},
                clientToken=token,
            )

    async def delete(self, events: Sequence[Event]) -> None:
        for event in events:
            with self.translated():
                try:
                    await self.client.delete_event(
                        memoryId=self.memory_id,
                        actorId=event.actor_id,
                        sessionId=event.session_id,
                        eventId=event.event_id,
                    )
                except ClientError as exc:
                    if aws.code_of(exc) != "ResourceNotFoundException":
                        raise  # already gone: a delete that raced another is done

    # --- reading -------------------------------------------------------------------------

    async def events(
        self,
        actor: str,
        session: str,
        where: Mapping[str, str] | None = None,
        *,
        payloads: bool = True,
        page: int = PAGE,
    ) -> AsyncIterator[Event]:
        """A session's events, newest first, those whose metadata equals ``where``."""
        request: dict[str, Any] = {
            "memoryId": self.memory_id,
            "actorId": actor,
            "sessionId": session,
            "includePayloads": payloads,
            "maxResults": page,
        }
        if where:
            request["filter"] = {
                "eventMetadata": [
                    {
                        "left": {"metadataKey": key},
                        "operator": "EQUALS_TO",
                        "right": {"metadataValue": {"stringValue": value}},
                    }
                    for key, value in where.items()
                ]
            }
        while True:
            with self.translated():
                answer = await self.client.list_events(**request)
            for raw in answer.get("events", []):
                event = _decode(raw, self.where)
                if event is not None:
                    yield event
            token = answer.get("nextToken")
            if not token:
                return
            request["nextToken"] = token

    async def first(
        self, actor: str, session: str, where: Mapping[str, str], *, count: int
    ) -> list[Event]:
        """The newest ``count`` events matching ``where``, without payloads (one call)."""
        found: list[Event] = []
        async for event in self.events(actor, session, where, payloads=False, page=count):
            found.append(event)
            if len(found) == count:
                break
        return found

    def assemble(self, event: Event, chunks: Mapping[tuple[str, int], Event]) -> bytes:
        """The full bytes of a record whose header event is ``event``."""
        count = int(event.header.get("chunks", 0))
        key = str(event.header.get("key", ""))
        parts = [event.data]
        for part in range(1, count + 1):
            chunk = chunks.get((key, part))
            if chunk is None:
                raise SidecarError(
                    f"{self.where}: event {event.event_id} lacks its chunk {part}/{count}; "
                    "the record is damaged"
                )
            parts.append(chunk.data)
        return b"".join(parts)

    async def actors(self) -> list[str]:
        found: list[str] = []
        request: dict[str, Any] = {"memoryId": self.memory_id, "maxResults": PAGE}
        while True:
            with self.translated():
                answer = await self.client.list_actors(**request)
            found += [summary["actorId"] for summary in answer.get("actorSummaries", [])]
            token = answer.get("nextToken")
            if not token:
                return found
            request["nextToken"] = token

    async def sessions(self, actor: str) -> list[str]:
        found: list[str] = []
        request: dict[str, Any] = {
            "memoryId": self.memory_id,
            "actorId": actor,
            "maxResults": PAGE,
            "filter": {"eventFilter": "HAS_EVENTS"},
        }
        while True:
            with self.translated():
                answer = await self.client.list_sessions(**request)
            found += [summary["sessionId"] for summary in answer.get("sessionSummaries", [])]
            token = answer.get("nextToken")
            if not token:
                return found
            request["nextToken"] = token

    async def ping(self) -> None:
        """One cheap call that fails if the memory is missing or unreachable."""
        with self.translated():
            await self.client.list_actors(memoryId=self.memory_id, maxResults=1)


def _pieces(data: bytes) -> list[str]:
    text = base64.b64encode(data).decode()
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]


def _digest(
    actor: str,
    session: str,
    kind: str,
    header: Mapping[str, Any],
    data: bytes,
    timestamp: dt.datetime,
) -> str:
    """The record's identity: equal records at equal times get equal client tokens (and event
    keys). Checkpoints are stamped with the time in their id, so a repeated put is equal."""
    h = hashlib.sha256()
    for part in (actor, session, kind, json.dumps(header, sort_keys=True), timestamp.isoformat()):
        h.update(part.encode())
        h.update(b"\0")
    h.update(data)
    return h.hexdigest()


def _decode(raw: Mapping[str, Any], where: str) -> Event | None:
    """An event of this backend, or None for events others wrote into the session."""
    metadata = {
        key: str(value.get("stringValue", "")) for key, value in (raw.get("metadata") or {}).items()
    }
    if identity.KIND not in metadata:
        return None
    header: dict[str, Any] = {}
    pieces: list[str] = []
    payload = raw.get("payload") or []
    for index, item in enumerate(payload):
        blob = item.get("blob")
        if index == 0 and isinstance(blob, dict):
            header = blob
        elif isinstance(blob, str):
            pieces.append(blob)
        else:
            raise SidecarError(f"{where}: event {raw.get('eventId')} has an unexpected payload")
    if payload and header.get("ap") != FORMAT:
        event = f"event {raw.get('eventId')}"
        raise payload_format.unreadable(where, event, header.get("ap"), FORMAT)
    return Event(
        event_id=str(raw["eventId"]),
        actor_id=str(raw["actorId"]),
        session_id=str(raw["sessionId"]),
        timestamp=raw["eventTimestamp"],
        metadata=metadata,
        header=header,
        data=base64.b64decode("".join(pieces)) if pieces else b"",
    )
