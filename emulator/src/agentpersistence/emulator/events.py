"""Short-term memory: a memory's events, grouped by actor and session, on branches.

An event without ``branch`` is on branch ``main``. A branch's parent is the branch of its
``rootEventId`` (taken from the branch's first event that names one); with
``includeParentBranches`` a listing adds each ancestor's events up to and including the
event it forked at. Lists are newest first by ``eventTimestamp``, ties by creation order.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import invalid, not_found
from .pagination import Key, page, scope_of

__all__ = ["EventLog", "StoredEvent"]

Json = dict[str, Any]
Params = Mapping[str, Any]

MAIN_BRANCH = "main"
LIST_DEFAULT = 20  # ListEvents, ListSessions, ListActors: the documented default page size
HAS_EVENTS = "HAS_EVENTS"


@dataclass(frozen=True)
class StoredEvent:
    seq: int  # creation order within the memory
    body: Json  # the Event shape as answered

    @property
    def id(self) -> str:
        return str(self.body["eventId"])

    @property
    def place(self) -> tuple[str, str]:
        return self.body["actorId"], self.body["sessionId"]

    @property
    def branch(self) -> str:
        return str(self.body.get("branch", {}).get("name", MAIN_BRANCH))

    @property
    def root_event_id(self) -> str | None:
        root = self.body.get("branch", {}).get("rootEventId")
        return None if root is None else str(root)

    def key(self) -> Key:
        return (float(self.body["eventTimestamp"]), self.seq)

    def view(self, *, payloads: bool = True) -> Json:
        return self.body if payloads else {**self.body, "payload": []}


@dataclass(frozen=True)
class Session:
    actor_id: str
    session_id: str
    created_at: float
    seq: int

    def summary(self) -> Json:
        return {
            "sessionId": self.session_id,
            "actorId": self.actor_id,
            "createdAt": self.created_at,
        }


class EventLog:
    """The events, sessions and actors of one memory."""

    def __init__(self, memory_id: str, *, clock: Callable[[], float], rng: random.Random) -> None:
        self.memory_id = memory_id
        self.clock = clock
        self.rng = rng
        self.events: dict[str, StoredEvent] = {}
        self.sessions: dict[tuple[str, str], Session] = {}
        self.actors: dict[str, int] = {}  # actor id → creation order of its first session
        self._seq = itertools.count()

    def create(self, params: Params) -> StoredEvent:
        actor = params["actorId"]
        session = params.get("sessionId") or str(uuid.UUID(int=self.rng.getrandbits(128)))
        branch = params.get("branch")
        if branch is not None and branch.get("rootEventId") is not None:
            self._check_root(actor, session, branch["rootEventId"])
        seq = next(self._seq)
        body: Json = {
            "memoryId": self.memory_id,
            "actorId": actor,
            "sessionId": session,
            "eventId": self._event_id(params["eventTimestamp"], seq),
            "eventTimestamp": params["eventTimestamp"],
            "payload": params["payload"],
        }
        for optional in ("branch", "metadata"):
            if params.get(optional) is not None:
                body[optional] = params[optional]
        event = StoredEvent(seq, body)
        self.events[event.id] = event
        if (actor, session) not in self.sessions:
            self.sessions[(actor, session)] = Session(actor, session, self.clock(), seq)
        self.actors.setdefault(actor, seq)
        return event

    def get(self, actor: str, session: str, event_id: str) -> StoredEvent:
        event = self.events.get(event_id)
        if event is None or event.place != (actor, session):
            raise not_found(f"Event {event_id} not found in session {session} of actor {actor}")
        return event

    def delete(self, actor: str, session: str, event_id: str) -> None:
        del self.events[self.get(actor, session, event_id).id]

    def list_events(self, params: Params) -> Json:
        place = (params["actorId"], params["sessionId"])
        events = [e for e in self.events.values() if e.place == place]
        criteria = params.get("filter") or {}
        if criteria.get("branch") is not None:
            events = self._on_branch(events, criteria["branch"])
        expressions = criteria.get("eventMetadata") or []
        _check_expressions(expressions)
        events = [e for e in events if all(_matches(e, x) for x in expressions)]
        events.sort(key=StoredEvent.key, reverse=True)
        chosen, token = page(
            events,
            StoredEvent.key,
            scope=scope_of("ListEvents", self.memory_id, *place),
            token=params.get("nextToken"),
            limit=params.get("maxResults", LIST_DEFAULT),
        )
        payloads = params.get("includePayloads", True)
        return _without_none(
            {"events": [e.view(payloads=payloads) for e in chosen], "nextToken": token}
        )

    def list_sessions(self, params: Params) -> Json:
        actor = params["actorId"]
        sessions = [s for s in self.sessions.values() if s.actor_id == actor]
        if (params.get("filter") or {}).get("eventFilter") == HAS_EVENTS:
            busy = {e.place for e in self.events.values()}
            sessions = [s for s in sessions if (s.actor_id, s.session_id) in busy]
        sessions.sort(key=lambda s: s.seq, reverse=True)
        chosen, token = page(
            sessions,
            lambda s: (s.seq,),
            scope=scope_of("ListSessions", self.memory_id, actor),
            token=params.get("nextToken"),
            limit=params.get("maxResults", LIST_DEFAULT),
        )
        return _without_none(
            {"sessionSummaries": [s.summary() for s in chosen], "nextToken": token}
        )

    def list_actors(self, params: Params) -> Json:
        actors = sorted(self.actors.items(), key=lambda item: item[1], reverse=True)
        chosen, token = page(
            actors,
            lambda item: (item[1],),
            scope=scope_of("ListActors", self.memory_id),
            token=params.get("nextToken"),
            limit=params.get("maxResults", LIST_DEFAULT),
        )
        return _without_none(
            {"actorSummaries": [{"actorId": actor} for actor, _ in chosen], "nextToken": token}
        )

    # --- helpers ---------------------------------------------------------------------------

    def _event_id(self, timestamp: float, seq: int) -> str:
        """``<timestamp in ms>#<hex>``: the model's EventId pattern, unique in the memory."""
        millis = max(0, int(timestamp * 1000))
        return f"{millis}#{seq:08x}{self.rng.getrandbits(32):08x}"

    def _check_root(self, actor: str, session: str, root_id: str) -> None:
        root = self.events.get(root_id)
        if root is None:
            raise not_found(f"Root event {root_id} not found")
        if root.place != (actor, session):
            raise invalid(
                f"Root event {root_id} belongs to another session; a branch forks from an "
                "event of its own session",
                reason="EventInOtherSession",
            )

    def _on_branch(self, events: list[StoredEvent], spec: Params) -> list[StoredEvent]:
        by_branch: dict[str, list[StoredEvent]] = {}
        for event in sorted(events, key=lambda e: e.seq):
            by_branch.setdefault(event.branch, []).append(event)
        name = spec["name"]
        chosen = list(by_branch.get(name, []))
        if not spec.get("includeParentBranches", False):
            return chosen
        visited = {name}
        while True:
            root = self._root_of(by_branch.get(name, []))
            if root is None or root.branch in visited:
                return chosen
            name = root.branch
            visited.add(name)
            chosen += [e for e in by_branch.get(name, []) if e.key() <= root.key()]

    def _root_of(self, branch_events: Iterable[StoredEvent]) -> StoredEvent | None:
        for event in branch_events:
            if event.root_event_id is not None:
                return self.events.get(event.root_event_id)
        return None


def _check_expressions(expressions: list[Json]) -> None:
    """EQUALS_TO needs ``right``; EXISTS and NOT_EXISTS must not have it."""
    problems = []
    for index, expression in enumerate(expressions):
        path = f"filter.eventMetadata[{index}].right"
        has_right = expression.get("right") is not None
        if expression["operator"] == "EQUALS_TO" and not has_right:
            problems.append((path, "EQUALS_TO needs a right operand"))
        elif expression["operator"] != "EQUALS_TO" and has_right:
            problems.append((path, f"{expression['operator']} takes no right operand"))
    if problems:
        raise invalid("; ".join(f"{p}: {m}" for p, m in problems), fields=problems)


def _matches(event: StoredEvent, expression: Json) -> bool:
    key = expression["left"]["metadataKey"]
    value = (event.body.get("metadata") or {}).get(key)
    operator = expression["operator"]
    if operator == "EXISTS":
        return value is not None
    if operator == "NOT_EXISTS":
        return value is None
    expected = expression["right"]["metadataValue"]
    return value is not None and bool(value == expected)


def _without_none(document: Json) -> Json:
    return {k: v for k, v in document.items() if v is not None}
