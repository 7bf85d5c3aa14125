"""The key layout of the Valkey backend, defined once (``keys.lua`` mirrors the per-thread part).

Every key starts with the configured prefix ``P``. Each component taken from user input
(prefix, thread id, namespace, checkpoint id, run id) is escaped with :func:`escape`, which
percent-encodes ``%``, ``{``, ``}`` and ``:``: an escaped component contains none of the
separators, so two different inputs never give the same key, and the only ``{`` in a key is
the one of its hash tag.

Per thread (hash tag ``{t:T}``, ``T`` = escaped thread id; the ``t:`` keeps the tag non-empty
for the empty thread id, so all keys of a thread share one cluster slot)::

    P:{t:T}:ns          ZSET, score 0: the thread's namespaces (raw names, so they sort as sent)
    P:{t:T}:latest      HASH: namespace -> id of its newest checkpoint (the O(1) "latest")
    P:{t:T}:ids:N       ZSET, score 0: ids of namespace N that have a checkpoint hash
    P:{t:T}:cp:N:I      HASH: checkpoint I of namespace N and its pending writes

A checkpoint hash holds the fields of :data:`RECORD_FIELDS` plus one field per pending write,
``w:`` + msgpack ``[task_id, idx]`` -> msgpack ``[task_id, idx, channel, type, value,
task_path]`` (see :mod:`.records`). Writes stored for a checkpoint that was never put make a
hash without ``checkpoint``; it is indexed under ``ids:N`` so deletes find it, and readers
skip it.

Cross-slot bookkeeping, written in the same pipeline as the thread's script::

    P:{g}:threads       ZSET, score 0: every thread id, for listing all threads
    P:{g}:expiry        ZSET, score = unix time after which the thread's keys are gone (TTL only)
    P:run:R             SET: msgpack [thread, namespace, id] of checkpoints put by run R

With a TTL, every key a write touches gets ``EXPIRE ttl``: a thread's index keys live as long
as its newest write, older checkpoint hashes expire first and readers drop index entries whose
hash is gone.

The store's layout is in :mod:`.store_schema`. The cache's (:class:`CacheKeys`), per
namespace ``(l1, ..., ln)`` with hash tag ``{c:N}``, ``N`` = :func:`namespace_path` (each
escaped label followed by ``:``, so every entry of a namespace shares one cluster slot)::

    P:{c:N}:e:K         STRING msgpack [type, value, ttl_seconds]; PX = the TTL (none: no expiry)
    P:{c:N}:keys        ZSET   the escaped keys K, score = expiry (ms, sidecar clock; +inf):
                               what clearing the namespace deletes, trimmed on writes
    P:{c}:namespaces    SET    N of every namespace written, for clearing them all
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RECORD_FIELDS = ("type", "checkpoint", "metadata", "parent", "run")
"""Fields of a checkpoint hash that are not pending writes (``parent`` and ``run`` optional)."""
WRITE_FIELD_PREFIX = b"w:"

_ESCAPES = {ord(c): f"%{ord(c):02X}" for c in "%{}:"}


def escape(component: str) -> str:
    """Percent-encode the characters that delimit keys and hash tags."""
    return component.translate(_ESCAPES)


def namespace_path(labels: Sequence[str]) -> str:
    """A namespace as one key component: each escaped label followed by ``:`` (injective)."""
    return "".join(escape(label) + ":" for label in labels)


@dataclass(frozen=True)
class Scope:
    """Where a request's namespaces live among a thread's stored namespaces.

    The ``valkey`` backend stores namespaces as sent (no prefix). A backend that keeps several
    owners' checkpoints in one thread (``agentcore-valkey``: one per actor) stores each
    owner's namespaces under ``prefix``, the owner's escaped name and ``:``: every stored
    namespace of one owner then lies in ``[prefix, below)`` and sorts as the names sent.
    """

    prefix: str = ""

    def stored(self, checkpoint_ns: str) -> str:
        return self.prefix + checkpoint_ns

    def public(self, stored: str) -> str:
        return stored[len(self.prefix) :]

    def owns(self, stored: str) -> bool:
        return stored.startswith(self.prefix)

    @property
    def below(self) -> str | None:
        """The first stored namespace past this scope's (None: no bound)."""
        if not self.prefix:
            return None
        return self.prefix[:-1] + chr(ord(self.prefix[-1]) + 1)


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str

    @property
    def _root(self) -> str:
        return escape(self.prefix)

    def thread_base(self, thread_id: str) -> str:
        """The hash-tagged start of every key of the thread (``KEYS[1]`` of thread scripts)."""
        return f"{self._root}:{{t:{escape(thread_id)}}}:"

    def namespaces(self, thread_id: str) -> str:
        return self.thread_base(thread_id) + "ns"

    def latest(self, thread_id: str) -> str:
        return self.thread_base(thread_id) + "latest"

    def ids(self, thread_id: str, checkpoint_ns: str) -> str:
        return f"{self.thread_base(thread_id)}ids:{escape(checkpoint_ns)}"

    def checkpoint(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> str:
        return f"{self.thread_base(thread_id)}cp:{escape(checkpoint_ns)}:{escape(checkpoint_id)}"

    @property
    def threads(self) -> str:
        return f"{self._root}:{{g}}:threads"

    @property
    def thread_expiry(self) -> str:
        return f"{self._root}:{{g}}:expiry"

    def run(self, run_id: str) -> str:
        return f"{self._root}:run:{escape(run_id)}"


@dataclass(frozen=True)
class CacheKeys:
    """Key names of the node cache under one prefix."""

    prefix: str

    def base(self, namespace_path: str) -> str:
        """The hash-tagged start of a namespace's keys, from its :func:`namespace_path`."""
        return f"{escape(self.prefix)}:{{c:{namespace_path}}}:"

    def entry(self, namespace: Sequence[str], key: str) -> str:
        return f"{self.base(namespace_path(namespace))}e:{escape(key)}"

    def index(self, namespace_path: str) -> str:
        return self.base(namespace_path) + "keys"

    @property
    def namespaces(self) -> str:
        return f"{escape(self.prefix)}:{{c}}:namespaces"
