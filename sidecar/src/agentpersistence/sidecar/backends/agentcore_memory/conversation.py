"""The store's ``conversational`` mode: messages go in as events, AgentCore's extracted
memories come out.

AgentCore Memory builds long-term memories itself: its strategies (semantic facts, user
preferences, summaries, episodes) read the conversational events of a session and write
records under their namespace template (``/users/{actorId}/facts``). In this mode the store
is that loop, in LangGraph's terms:

- ``put(namespace, key, value)`` appends messages to a conversation: ``value`` is
  ``{"messages": [message, ...]}`` or one message, a message being ``{"role", "content"}``
  (``role``, or LangChain's ``type``: ``user``/``human`` → ``USER``, ``assistant``/``ai`` →
  ``ASSISTANT``, ``tool`` → ``TOOL``, ``system`` → ``OTHER``; ``content`` a string, or
  LangChain content blocks whose ``text`` parts are joined). Messages without text are
  skipped. One ``CreateEvent`` per 100 messages: the actor is the namespace's first label
  (a valid AgentCore actorId without ``/``), the session is the key when the namespace has
  one label and the key is a valid session id, else ``s`` and the SHA-256 of the
  namespace's other labels and the key. Every put appends (events are a log); its
  ``clientToken`` makes a retried call append nothing twice. Other values are refused.
- ``search(prefix, query=...)`` reads the records the memory's strategy extracted for the
  prefix's actor (its first label; further labels do not narrow): ``namespaceTemplate`` with
  ``{actorId}`` (and ``{memoryStrategyId}`` from ``memoryStrategyId``) filled in, up to the
  first variable left (``{sessionId}``: every session). With a query,
  ``RetrieveMemoryRecords`` ranks them (as in records mode); without, ``ListMemoryRecords``
  pages, newest first, bounded by ``maxScan``. An empty prefix reads every actor's.
- Items are extracted records: namespace ``(actorId,)``, key the record id, value
  ``{"content": text, "namespace": the record's namespace, "memoryStrategyId": ...}``,
  ``created_at`` = ``updated_at`` = the record's creation. Filters apply to that value.
- ``get((actorId,), record_id)`` is ``GetMemoryRecord`` (None unless the record is that
  actor's under the template); a put of None deletes such a record (``DeleteMemoryRecord``),
  which is how an agent forgets a memory. Message events are never read back.
- ``list_namespaces`` lists ``(actorId,)`` of the actors with records (bounded by
  ``maxScan``).

Extraction is asynchronous on AWS (seconds to minutes after the event); the emulator's
stand-in extracts as the event is created.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import RequestRejected

from ...settings import AgentCoreMemoryStoreSettings
from . import identity
from .items import value_bytes
from .records import Records, Summary, top_k

ROLES = {
    "user": "USER",
    "human": "USER",
    "assistant": "ASSISTANT",
    "ai": "ASSISTANT",
    "tool": "TOOL",
    "system": "OTHER",
}
EVENT_MESSAGES = 100
"""Payload items per CreateEvent (AgentCore's limit)."""
MESSAGE_MAX = 100_000
"""Characters of one conversational message (AgentCore's limit)."""
_RECORD_ID = re.compile(r"mem-[a-zA-Z0-9\-_]{36,46}")
_VARIABLE = re.compile(r"\{(actorId|sessionId|memoryStrategyId)\}")
_SHAPE = (
    "a conversational store takes messages: put {'messages': [{'role': 'user', 'content': "
    "'...'}]} or one {'role', 'content'} (roles: " + ", ".join(ROLES) + ")"
)

Message = tuple[str, str]
"""(AgentCore role, text)"""


class Template:
    """The namespace template of the strategy whose records searches read."""

    def __init__(self, text: str, strategy_id: str | None) -> None:
        self.text = text.rstrip("/") or "/"
        self.strategy_id = strategy_id
        self.pattern = re.compile(self._regex())

    def _regex(self) -> str:
        parts, position, actor_seen = [], 0, False
        for match in _VARIABLE.finditer(self.text):
            parts.append(re.escape(self.text[position : match.start()]))
            if match[1] == "actorId":
                parts.append("(?P=actor)" if actor_seen else "(?P<actor>[^/]+)")
                actor_seen = True
            elif match[1] == "memoryStrategyId" and self.strategy_id is not None:
                parts.append(re.escape(self.strategy_id))
            else:
                parts.append("[^/]+")
            position = match.end()
        parts.append(re.escape(self.text[position:]))
        return "".join(parts)

    def path(self, actor: str | None) -> str:
        """The namespace path of an actor's records (every actor's: None)."""
        values = {"actorId": actor, "memoryStrategyId": self.strategy_id}
        out, position = [], 0
        for match in _VARIABLE.finditer(self.text):
            out.append(self.text[position : match.start()])
            value = values.get(match[1])
            if value is None:  # cut before the segment holding the first variable left
                done = "".join(out)
                cut = max(done.rfind("/"), 0)
                return done[:cut].rstrip("/") or "/"
            out.append(value)
            position = match.end()
        out.append(self.text[position:])
        return "".join(out).rstrip("/") or "/"

    def actor_of(self, summary: Summary) -> str | None:
        """The actor whose record this is, or None if it is not under the template."""
        for namespace in summary.get("namespaces", []):
            match = self.pattern.fullmatch(str(namespace).rstrip("/"))
            if match:
                return match["actor"]
        return None


class Conversations:
    """The ``conversational`` mode of the agentcore-memory store."""

    def __init__(self, records: Records, settings: AgentCoreMemoryStoreSettings) -> None:
        assert settings.namespace_template is not None  # enforced by the settings model
        self.records = records
        self.memory = records.memory
        self.settings = settings
        self.template = Template(settings.namespace_template, settings.memory_strategy_id)

    async def batch(self, ops: Sequence[m.StoreOp]) -> list[m.StoreResult]:
        for op in ops:
            if op.op == rules.PUT:
                actor_of_label(op.namespace[0])
                if op.value is not None:
                    messages_of(rules.parse_value(op.value))
            elif op.op == rules.SEARCH and op.namespace:
                actor_of_label(op.namespace[0])
        results = await asyncio.gather(*map(self._read, ops))
        now = time.time()
        puts = rules.effective_puts(ops).items()
        await asyncio.gather(*(self._write(ns, key, op, now) for (ns, key), op in puts))
        return list(results)

    # --- reads ---------------------------------------------------------------------------

    async def _read(self, op: m.StoreOp) -> m.StoreResult:
        if op.op == rules.GET:
            summary = await self._own_record(op.namespace, op.key)
            return m.StoreResult(item=None if summary is None else self._item(summary))
        if op.op == rules.SEARCH:
            return m.StoreResult(items=await self._search(op))
        if op.op == rules.LIST_NAMESPACES:
            summaries = await self._under(None, "namespace listing")
            actors = {(a,) for s in summaries if (a := self.template.actor_of(s)) is not None}
            return m.StoreResult(namespaces=rules.list_namespaces(actors, op))
        return m.StoreResult()

    async def _own_record(self, namespace: Sequence[str], key: str) -> Summary | None:
        """Record ``key``, if it belongs to the actor ``namespace`` names (one call)."""
        if len(namespace) != 1 or not _RECORD_ID.fullmatch(key):
            return None
        summary = await self.records.get(key)
        if summary is None or self.template.actor_of(summary) != namespace[0]:
            return None
        return summary

    async def _search(self, op: m.StoreOp) -> list[m.StoreItem]:
        if op.limit == 0:
            return []
        wanted = rules.parse_store_filter(op.filter)
        actor = op.namespace[0] if op.namespace else None
        if op.query:
            ranked = top_k(op.offset + op.limit, wanted is not None, self.settings.max_scan)
            path, strategy = self.template.path(actor), self.settings.memory_strategy_id
            summaries = await self.records.retrieve(path, op.query, ranked, strategy)
        else:
            summaries = await self._under(actor, "search")
            summaries.sort(key=lambda s: (s["createdAt"], s["memoryRecordId"]), reverse=True)
        found = [
            item
            for s in summaries
            if (item := self._item(s, actor)) is not None
            and (wanted is None or rules.filter_matches(json.loads(item.value), wanted))
        ]
        return found[op.offset : op.offset + op.limit]

    async def _under(self, actor: str | None, what: str) -> list[Summary]:
        path = self.template.path(actor)
        too_many = functools.partial(_too_many, self.settings.max_scan, what, path)
        return await self.records.under(
            path, self.settings.max_scan, too_many, self.settings.memory_strategy_id
        )

    def _item(self, summary: Summary, actor: str | None = None) -> m.StoreItem | None:
        owner = self.template.actor_of(summary)
        if owner is None or (actor is not None and owner != actor):
            return None
        value = {
            "content": summary["content"].get("text", ""),
            "namespace": (summary.get("namespaces") or [""])[0],
            "memoryStrategyId": summary.get("memoryStrategyId"),
        }
        created = summary["createdAt"].timestamp()
        score = summary.get("score")
        return m.StoreItem(
            namespace=[owner],
            key=summary["memoryRecordId"],
            value=value_bytes(value),
            created_at=created,
            updated_at=created,
            score=None if score is None else float(score),
        )

    # --- writes --------------------------------------------------------------------------

    async def _write(self, namespace: Sequence[str], key: str, op: m.StoreOp, now: float) -> None:
        if op.value is None:
            summary = await self._own_record(namespace, key)
            if summary is not None:
                record_namespace = (summary.get("namespaces") or ["/"])[0]
                await self.records.delete(key, record_namespace)
            return
        actor = actor_of_label(namespace[0])
        session = session_of(namespace, key)
        messages = messages_of(rules.parse_value(op.value))
        start = dt.datetime.fromtimestamp(now, dt.UTC)
        for n, first in enumerate(range(0, len(messages), EVENT_MESSAGES)):
            chunk = messages[first : first + EVENT_MESSAGES]
            await self._create_event(actor, session, chunk, start + dt.timedelta(microseconds=n))

    async def _create_event(
        self, actor: str, session: str, messages: Sequence[Message], stamp: dt.datetime
    ) -> None:
        payload: list[Any] = [
            {"conversational": {"content": {"text": text}, "role": role}} for role, text in messages
        ]
        token = hashlib.sha256(
            json.dumps([actor, session, stamp.isoformat(), payload], ensure_ascii=False).encode(
                "utf-8", "surrogatepass"
            )
        ).hexdigest()
        with self.memory.translated():
            await self.memory.client.create_event(
                memoryId=self.memory.memory_id,
                actorId=actor,
                sessionId=session,
                eventTimestamp=stamp,
                payload=payload,
                clientToken=token,
            )


def actor_of_label(label: str) -> str:
    """The actor a namespace's first label names; refused if AgentCore cannot take it."""
    if "/" in label or not identity.is_actor_id(label):
        raise RequestRejected(
            f"in a conversational store the namespace's first label is the AgentCore actorId; "
            f"{label[:80]!r} is not one: use 1-255 letters, digits, '-', '_' or ':' (starting "
            "with a letter or digit)"
        )
    return label


def session_of(namespace: Sequence[str], key: str) -> str:
    """The session of a conversation: the key itself when it can be, else a hash."""
    if len(namespace) == 1 and identity.is_session_id(key):
        return key
    whole = json.dumps([list(namespace[1:]), key], ensure_ascii=False)
    return "s" + hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()


def messages_of(value: Mapping[str, Any]) -> list[Message]:
    """The messages of a put's value, as (role, text); refused if it holds none."""
    raw = value.get("messages", [value])
    if not isinstance(raw, list) or not raw:
        raise RequestRejected(_SHAPE)
    found = []
    for message in raw:
        if not isinstance(message, dict):
            raise RequestRejected(_SHAPE + f"; got a message of type {type(message).__name__}")
        role = message.get("role", message.get("type"))
        if role not in ROLES or "content" not in message:
            raise RequestRejected(_SHAPE + f"; got a message with keys {sorted(message)[:8]}")
        text = _text(message["content"])
        if len(text) > MESSAGE_MAX:
            raise RequestRejected(
                f"a message of {len(text)} characters; AgentCore takes at most {MESSAGE_MAX}"
            )
        if text.strip():
            found.append((ROLES[role], text))
    return found


def _text(content: Any) -> str:
    """A message's text: the string, or the ``text`` of LangChain's content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block if isinstance(block, str) else str(block.get("text", ""))
            for block in content
            if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")
        ]
        return "\n".join(part for part in parts if part)
    raise RequestRejected(_SHAPE + f"; got content of type {type(content).__name__}")


def _too_many(max_scan: int, what: str, path: str) -> RequestRejected:
    return RequestRejected(
        f"this {what} would examine more than {max_scan} AgentCore memory records under "
        f"{path}; the store's agentcoreMemory.maxScan setting bounds it: narrow the prefix, "
        "or raise maxScan"
    )
