"""Bedrock Agent Runtime sessions: sessions, their invocations and invocation steps, and tags.

A session is ACTIVE until EndSession makes it ENDED, or until it has gone unmodified for
``expiry_seconds`` (then EXPIRED, evaluated from the clock when asked: no timers). Only an
ACTIVE session takes updates, invocations and steps (ConflictException otherwise); only a
session that is no longer ACTIVE may be deleted. Sessions are named by id or ARN.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import tags
from .errors import conflict, not_found
from .pagination import Key, page_of, scope_of

__all__ = ["Session", "SessionStore"]

Json = dict[str, Any]
Params = Mapping[str, Any]

ACTIVE, EXPIRED, ENDED = "ACTIVE", "EXPIRED", "ENDED"
# Page size when maxResults is absent: the docs give none for these lists; the emulator's choice.
LIST_DEFAULT = 20


@dataclass
class Step:
    id: str
    invocation_id: str
    time: float  # invocationStepTime, as sent
    payload: Json
    seq: int  # creation order within the store

    def key(self) -> Key:
        return (self.time, self.seq)


@dataclass
class Invocation:
    id: str
    created_at: float
    seq: int
    description: str | None = None


@dataclass
class Session:
    """One session: its settings and what was written into it."""

    id: str
    arn: str
    created_at: float
    updated_at: float
    seq: int
    ended: bool = False
    metadata: dict[str, str] | None = None
    encryption_key_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    invocations: dict[str, Invocation] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)

    def status(self, now: float, expiry_seconds: float) -> str:
        if self.ended:
            return ENDED
        return EXPIRED if now - self.updated_at >= expiry_seconds else ACTIVE

    def brief(self, status: str) -> Json:
        return {"sessionId": self.id, "sessionArn": self.arn, "sessionStatus": status}


class SessionStore:
    """Every session of one emulator process."""

    def __init__(
        self,
        region: str,
        account: str,
        *,
        expiry_seconds: float,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self._arn_prefix = f"arn:aws:bedrock:{region}:{account}:session/"
        self.expiry_seconds = expiry_seconds
        self._clock = clock
        self._rng = rng
        self._sessions: dict[str, Session] = {}
        self._seq = itertools.count()

    # --- sessions --------------------------------------------------------------------------

    def create_session(self, params: Params) -> Json:
        now = self._clock()
        session_id = self._uuid()
        session = Session(
            id=session_id,
            arn=self._arn_prefix + session_id,
            created_at=now,
            updated_at=now,
            seq=next(self._seq),
            metadata=params.get("sessionMetadata"),
            encryption_key_arn=params.get("encryptionKeyArn"),
        )
        tags.add(session.tags, params.get("tags", {}))
        self._sessions[session_id] = session
        return {**session.brief(ACTIVE), "createdAt": now}

    def get_session(self, params: Params) -> Json:
        session = self.session(params["sessionIdentifier"])
        answer = self._full(session)
        if session.metadata is not None:
            answer["sessionMetadata"] = dict(session.metadata)
        if session.encryption_key_arn is not None:
            answer["encryptionKeyArn"] = session.encryption_key_arn
        return answer

    def update_session(self, params: Params) -> Json:
        """Replaces the session's metadata (absent: keeps it); an ACTIVE session only."""
        session = self._active(params["sessionIdentifier"], "updated")
        if "sessionMetadata" in params:
            session.metadata = dict(params["sessionMetadata"])
        session.updated_at = self._clock()
        return self._full(session)

    def end_session(self, params: Params) -> Json:
        """Ending an ENDED session answers ENDED again (a retry after a lost answer); an
        EXPIRED one cannot be ended."""
        session = self.session(params["sessionIdentifier"])
        status = self._status(session)
        if status == EXPIRED:
            raise conflict(f"Session {session.id} is EXPIRED and cannot be ended; delete it")
        if status == ACTIVE:
            session.ended = True
            session.updated_at = self._clock()
        return session.brief(ENDED)

    def delete_session(self, params: Params) -> Json:
        session = self.session(params["sessionIdentifier"])
        if self._status(session) == ACTIVE:
            raise conflict(f"Session {session.id} is ACTIVE; end it with EndSession first")
        del self._sessions[session.id]
        return {}

    def list_sessions(self, params: Params) -> Json:
        """Newest first by creation (the docs give no order; the emulator's choice)."""
        sessions = sorted(self._sessions.values(), key=lambda s: s.seq, reverse=True)
        chosen, token = page_of(
            sessions,
            lambda s: (s.seq,),
            params,
            scope=scope_of("ListSessions"),
            default_limit=LIST_DEFAULT,
        )
        summaries = [self._full(session) for session in chosen]
        return _with_token({"sessionSummaries": summaries}, token)

    # --- invocations -----------------------------------------------------------------------

    def create_invocation(self, params: Params) -> Json:
        """A given ``invocationId`` must be new in the session; without one, a UUID."""
        session = self._active(params["sessionIdentifier"], "given invocations")
        invocation_id = params.get("invocationId") or self._uuid()
        if invocation_id in session.invocations:
            raise conflict(f"Session {session.id} already has invocation {invocation_id}")
        now = self._clock()
        invocation = Invocation(invocation_id, now, next(self._seq), params.get("description"))
        session.invocations[invocation_id] = invocation
        session.updated_at = now
        return {"invocationId": invocation_id, "sessionId": session.id, "createdAt": now}

    def list_invocations(self, params: Params) -> Json:
        """Newest first by creation (the docs give no order; the same as the steps')."""
        session = self.session(params["sessionIdentifier"])
        invocations = sorted(session.invocations.values(), key=lambda i: i.seq, reverse=True)
        chosen, token = page_of(
            invocations,
            lambda i: (i.seq,),
            params,
            scope=scope_of("ListInvocations", session.id),
            default_limit=LIST_DEFAULT,
        )
        summaries = [
            {"invocationId": i.id, "sessionId": session.id, "createdAt": i.created_at}
            for i in chosen
        ]
        return _with_token({"invocationSummaries": summaries}, token)

    # --- invocation steps ------------------------------------------------------------------

    def put_invocation_step(self, params: Params) -> Json:
        """A given ``invocationStepId`` that exists in the same invocation is replaced (a PUT);
        in another invocation it is a conflict. Without one, a UUID."""
        session = self._active(params["sessionIdentifier"], "given invocation steps")
        invocation = self._invocation(session, params["invocationIdentifier"])
        step_id = params.get("invocationStepId") or self._uuid()
        existing = session.steps.get(step_id)
        if existing is not None and existing.invocation_id != invocation.id:
            raise conflict(
                f"Invocation step {step_id} belongs to another invocation of session {session.id}"
            )
        session.steps[step_id] = Step(
            step_id, invocation.id, params["invocationStepTime"], params["payload"], next(self._seq)
        )
        session.updated_at = self._clock()
        return {"invocationStepId": step_id}

    def get_invocation_step(self, params: Params) -> Json:
        session = self.session(params["sessionIdentifier"])
        invocation = self._invocation(session, params["invocationIdentifier"])
        step = session.steps.get(params["invocationStepId"])
        if step is None or step.invocation_id != invocation.id:
            raise not_found(
                f"Invocation step {params['invocationStepId']} not found in invocation "
                f"{invocation.id}"
            )
        return {"invocationStep": {**_step_summary(session, step), "payload": step.payload}}

    def list_invocation_steps(self, params: Params) -> Json:
        """Newest first by ``invocationStepTime``, ties newest written first: the reverse
        chronological order AWS answers (which langgraph-checkpoint-aws relies on)."""
        session = self.session(params["sessionIdentifier"])
        wanted = params.get("invocationIdentifier")
        if wanted is not None:
            self._invocation(session, wanted)
        steps = [s for s in session.steps.values() if wanted in (None, s.invocation_id)]
        steps.sort(key=Step.key, reverse=True)
        chosen, token = page_of(
            steps,
            Step.key,
            params,
            scope=scope_of("ListInvocationSteps", session.id, wanted),
            default_limit=LIST_DEFAULT,
        )
        summaries = [_step_summary(session, step) for step in chosen]
        return _with_token({"invocationStepSummaries": summaries}, token)

    # --- tags (sessions are the service's only taggable resource) --------------------------

    def tag_resource(self, params: Params) -> Json:
        tags.add(self._tagged(params["resourceArn"]).tags, params["tags"])
        return {}

    def untag_resource(self, params: Params) -> Json:
        tags.remove(self._tagged(params["resourceArn"]).tags, params["tagKeys"])
        return {}

    def list_tags_for_resource(self, params: Params) -> Json:
        found = self._tagged(params["resourceArn"]).tags
        return {"tags": dict(found)} if found else {}  # the model's TagsMap has at least one

    # --- lookups ---------------------------------------------------------------------------

    def session(self, identifier: str) -> Session:
        """A session by id or ARN, or ResourceNotFoundException."""
        session_id = identifier.rpartition(":session/")[2]
        session = self._sessions.get(session_id)
        if session is None or (identifier != session_id and identifier != session.arn):
            raise not_found(f"Session {session_id} not found")
        return session

    def _active(self, identifier: str, doing: str) -> Session:
        session = self.session(identifier)
        status = self._status(session)
        if status != ACTIVE:
            raise conflict(
                f"Session {session.id} is {status} and cannot be {doing}; create a new session"
            )
        return session

    def _invocation(self, session: Session, invocation_id: str) -> Invocation:
        invocation = session.invocations.get(invocation_id)
        if invocation is None:
            raise not_found(f"Invocation {invocation_id} not found in session {session.id}")
        return invocation

    def _tagged(self, arn: str) -> Session:
        return tags.by_arn(self._sessions, arn, "session")

    def _status(self, session: Session) -> str:
        return session.status(self._clock(), self.expiry_seconds)

    def _full(self, session: Session) -> Json:
        return {
            **session.brief(self._status(session)),
            "createdAt": session.created_at,
            "lastUpdatedAt": session.updated_at,
        }

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _step_summary(session: Session, step: Step) -> Json:
    return {
        "invocationId": step.invocation_id,
        "invocationStepId": step.id,
        "invocationStepTime": step.time,
        "sessionId": session.id,
    }


def _with_token(answer: Json, token: str | None) -> Json:
    return answer if token is None else {**answer, "nextToken": token}
