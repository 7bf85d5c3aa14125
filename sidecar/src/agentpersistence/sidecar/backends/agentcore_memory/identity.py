"""Where a LangGraph thread lives in an AgentCore Memory, and how its events are tagged.

A thread is a session of an actor, as ``langgraph-checkpoint-aws`` lays it out: the actor is
``configurable.actor_id`` (else the configured default), the root namespace's session id is
the thread id itself, and a subgraph namespace's session is the SHA-256 of
``"<thread>_<namespace>"``. A thread id AgentCore cannot take as a session id (over 100
characters, or other characters than ``[a-zA-Z0-9-_]``) is hashed as well, with a prefix that
keeps it apart from the namespaces' hashes.

Event metadata carries what reads filter on (kind, checkpoint, run); AgentCore allows only
``[a-zA-Z0-9\\s._:/=+@-]`` and 256 characters in a value, so other values are replaced by a
hash (:func:`tag`), and the exact value is kept in the event's payload.
"""

from __future__ import annotations

import hashlib
import re

from agentpersistence.client.protocol.errors import RequestRejected

from ...settings import ACTOR_ID_PATTERN

_SESSION = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]{0,99}")
_ACTOR = re.compile(ACTOR_ID_PATTERN)
_METADATA_VALUE = re.compile(r"[a-zA-Z0-9\s._:/=+@-]{1,200}")
_HASHED = "h:"

KIND = "ap.kind"
CHECKPOINT = "ap.cid"
RUN = "ap.run"
KEY = "ap.key"
"""Metadata keys of the backend's events."""


def is_session_id(text: str) -> bool:
    """Whether AgentCore takes ``text`` as a sessionId as it is."""
    return _SESSION.fullmatch(text) is not None


def is_actor_id(text: str) -> bool:
    """Whether AgentCore takes ``text`` as an actorId."""
    return len(text) <= 255 and _ACTOR.fullmatch(text) is not None


def session_id(thread_id: str, checkpoint_ns: str) -> str:
    """The session of a thread's namespace."""
    if checkpoint_ns:
        return hashlib.sha256(f"{thread_id}_{checkpoint_ns}".encode()).hexdigest()
    if is_session_id(thread_id):
        return thread_id
    return "t" + hashlib.sha256(f"\0{thread_id}".encode()).hexdigest()


def actor_id(requested: str | None, default: str) -> str:
    """The actor of a request: its own, else the default; refused if AgentCore cannot take it."""
    actor = default if requested is None else requested
    if not is_actor_id(actor):
        raise RequestRejected(
            f"configurable.actor_id {actor[:80]!r} is not a valid AgentCore actorId: use 1-255 "
            "letters, digits, '-', '_', '/' or ':' (starting with a letter or digit)"
        )
    return actor


def tag(value: str) -> str:
    """``value`` as an event metadata value: itself when AgentCore accepts it, else a hash."""
    if _METADATA_VALUE.fullmatch(value):
        return value
    return _HASHED + hashlib.sha256(value.encode()).hexdigest()


def is_exact(tagged: str) -> bool:
    """Whether a tag is the value itself (not a hash)."""
    return not tagged.startswith(_HASHED)
