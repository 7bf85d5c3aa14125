"""Which session holds a thread: the seed's way, or a mapping the sidecar keeps.

A thread id that is a session's id or ARN, of a session that exists, is that session (as
``langgraph-checkpoint-aws`` requires: the caller creates the session and uses its id as
thread id). Any other thread id gets a session the sidecar creates (with the configured KMS
key). Both are recorded in the *directory*: a session of its own whose ``THREADS``
invocation has one step per thread (its id derived from the thread id, so a lookup is one
GetInvocationStep), which is also how the sidecar lists every thread. The directory is
``directorySessionId``, else the oldest ACTIVE session whose metadata names
``directoryName`` (found once per process by listing the account's sessions), else one the
sidecar creates.

Mapping is last-writer-wins (the API has no conditional write): a sidecar that creates a
session for a thread reads the mapping back and, if another sidecar's landed, deletes its
own and uses theirs. Lookups are cached (an LRU); a cached session found gone is looked up
again.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict

from agentpersistence.client.protocol.errors import BackendUnavailable

from ...settings import SESSION_ID_PATTERN, BedrockSessionSettings
from .. import stamps
from . import layout
from .client import SessionsClient

DIRECTORY_KEY = "agentpersistence.directory"
"""Session metadata naming a directory session."""
THREAD_KEY = "agentpersistence.kind"
"""Session metadata marking the sessions the sidecar creates for threads."""
CACHED_MAX = 65_536
LOCKS = 64
"""Lookups of threads whose ids hash alike wait for each other (a fixed pool of locks)."""
_SESSION = re.compile(SESSION_ID_PATTERN)


def is_session_id(text: str) -> bool:
    """Whether ``text`` has the shape of a session id or ARN."""
    return _SESSION.fullmatch(text) is not None


class Directory:
    """Thread id → session id, through the directory session."""

    def __init__(self, calls: SessionsClient, settings: BedrockSessionSettings) -> None:
        self.calls = calls
        self.settings = settings
        self._session: str | None = settings.directory_session_id
        self._opened = False
        self._cached: OrderedDict[str, str] = OrderedDict()
        self._locks = [asyncio.Lock() for _ in range(LOCKS)]
        self._open_lock = asyncio.Lock()
        self._clock = stamps.Clock()

    # --- the directory session -----------------------------------------------------------

    async def session(self) -> str:
        """The directory session's id (found or created at the first call)."""
        async with self._open_lock:
            if not self._opened:
                if self._session is None:
                    self._session = await self._find() or await self._create()
                await self.calls.create_invocation(self._session, layout.THREADS)
                self._opened = True
        assert self._session is not None
        return self._session

    async def _find(self) -> str | None:
        """The oldest ACTIVE session whose metadata names this directory."""
        found: list[tuple[str, str]] = []
        async for summary in self.calls.sessions():
            if summary.get("sessionStatus") != "ACTIVE":
                continue
            state = await self.calls.get_session(str(summary["sessionId"]))
            metadata = (state or {}).get("sessionMetadata") or {}
            if metadata.get(DIRECTORY_KEY) == self.settings.directory_name:
                found.append((str(summary["createdAt"]), str(summary["sessionId"])))
        return min(found)[1] if found else None

    async def _create(self) -> str:
        """A new directory; if another sidecar created one meanwhile, the oldest wins."""
        mine = await self.calls.create_session({DIRECTORY_KEY: self.settings.directory_name})
        chosen = await self._find()
        if chosen is None:
            raise BackendUnavailable(
                f"the directory session {mine} is not listed right after its creation; "
                "retry, or set bedrockSession.directorySessionId"
            )
        if chosen != mine:
            await self.calls.delete_session(mine)
        return chosen

    # --- threads -------------------------------------------------------------------------

    async def session_of(self, thread_id: str, *, create: bool, verify: bool = False) -> str | None:
        """The thread's session; with ``create``, made (and recorded) if it has none.
        ``verify`` checks that a recorded session still exists (after a call found it gone)."""
        if not verify and thread_id in self._cached:
            self._cached.move_to_end(thread_id)
            return self._cached[thread_id]
        async with self._locks[hash(thread_id) % LOCKS]:  # one creation per thread at a time
            if not verify and thread_id in self._cached:
                return self._cached[thread_id]
            found = await self._lookup(thread_id, create=create, verify=verify)
            if found is not None:
                self._remember(thread_id, found)
        return found

    async def _lookup(self, thread_id: str, *, create: bool, verify: bool) -> str | None:
        directory = await self.session()
        step = await self.calls.get_step(directory, layout.THREADS, layout.thread_step(thread_id))
        if step is not None and step.kind == layout.THREAD:
            mapped = str(step.header["session"])
            if not verify or await self.calls.get_session(mapped) is not None:
                return mapped
        if is_session_id(thread_id) and await self.calls.get_session(thread_id) is not None:
            await self._record(directory, thread_id, thread_id)
            return thread_id
        if not create:
            return None
        mine = await self.calls.create_session({THREAD_KEY: "thread"})
        await self._record(directory, thread_id, mine)
        step = await self.calls.get_step(directory, layout.THREADS, layout.thread_step(thread_id))
        winner = str(step.header["session"]) if step and step.kind == layout.THREAD else mine
        if winner != mine:  # another sidecar mapped the thread at the same time
            await self.calls.delete_session(mine)
        return winner

    async def _record(self, directory: str, thread_id: str, session: str) -> None:
        content = layout.payload(layout.THREAD, {"thread": thread_id, "session": session})
        step = layout.thread_step(thread_id)
        await self.calls.put_step(directory, layout.THREADS, step, self._clock.now(), content)

    async def forget(self, thread_id: str) -> None:
        """Drop a thread's mapping (its session is deleted)."""
        self.evict(thread_id)
        directory = await self.session()
        step = layout.thread_step(thread_id)
        await self.calls.put_step(
            directory, layout.THREADS, step, layout.TOMBSTONE_TIME, layout.tombstone()
        )

    def evict(self, thread_id: str) -> None:
        self._cached.pop(thread_id, None)

    async def threads(self) -> list[tuple[str, str]]:
        """Every recorded ``(thread_id, session)``, by thread id."""
        directory = await self.session()
        found: list[tuple[str, str]] = []
        async for summary in self.calls.summaries(directory, layout.THREADS):
            if summary["invocationStepTime"] <= layout.TOMBSTONE_TIME:
                continue
            step = await self.calls.get_step(
                directory, layout.THREADS, str(summary["invocationStepId"])
            )
            if step is not None and step.kind == layout.THREAD:
                found.append((str(step.header["thread"]), str(step.header["session"])))
        return sorted(found)

    def _remember(self, thread_id: str, session: str) -> None:
        self._cached[thread_id] = session
        self._cached.move_to_end(thread_id)
        if len(self._cached) > CACHED_MAX:
            self._cached.popitem(last=False)
