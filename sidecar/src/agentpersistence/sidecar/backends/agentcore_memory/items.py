"""Where a store item lives in an AgentCore Memory (records mode), and what its record holds.

**Namespace.** An item is one memory record whose AgentCore namespace is the item's
LangGraph namespace followed by its key, one path segment each::

    ("users", "alice"), "prefs"       ->  /users/alice/_kprefs
    ("a b", "ünï"), "k:1"             ->  /a_20b/_c3_bcn_c3_af/_kk_3a1

A label keeps ``[a-zA-Z0-9-]`` and writes every other character as ``_`` and two hex digits
per UTF-8 byte (``_`` itself included, so ``*``, AgentCore's wildcard, is never one). The
key's segment starts with ``_k``, which no escaped label starts with: the namespace path of
a LangGraph prefix (``/users/alice``) covers exactly the items under that prefix, so
``namespacePath`` answers a prefix search and ``namespace`` (an exact match) a ``get``, with
no metadata filter (AgentCore filters only on keys a memory declares as ``indexedKeys``). A
segment longer than :data:`SEGMENT_MAX` characters is replaced by ``_h`` and the SHA-256 of
the label or key, which no escaped text starts with either. A path over AgentCore's 1,024
characters is refused.

**Content.** The record's text is a JSON document with the exact namespace, key, value,
``created_at`` and ``updated_at`` (seconds since the epoch), so nothing depends on decoding
a path. It must fit a record's 16,000 characters (counted as UTF-16 code units, as AWS
counts them); a larger item is refused. Metadata marks the record as an item
(``ap.kind: item``) and tags its key (``ap.key``, a hash when the key is not a valid
metadata value), for people browsing the memory; reads never filter on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected

from . import identity

log = logging.getLogger("agentpersistence.sidecar.agentcore_memory")

KEY_MARK = "_k"
HASH_MARK = "_h"
SEGMENT_MAX = 240
"""Longest escaped label or key kept readable; longer ones are hashed (66 characters)."""
NAMESPACE_MAX = 1024
"""AgentCore's longest namespace."""
CONTENT_MAX = 16_000
"""AgentCore's longest record text (``MemoryContent.text``)."""
KIND = "ap.kind"
KEY = "ap.key"
ITEM = "item"
_KEPT = re.compile(r"[a-zA-Z0-9-]")

Namespace = tuple[str, ...]


def escape(text: str) -> str:
    """``text`` in the characters of an AgentCore namespace segment (reversible)."""
    out = []
    for char in text:
        if _KEPT.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _segment(text: str) -> str:
    escaped = escape(text)
    if len(escaped) <= SEGMENT_MAX:
        return escaped
    return HASH_MARK + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def prefix_path(prefix: Sequence[str]) -> str:
    """The AgentCore namespace path holding every item under a LangGraph prefix."""
    return "/" + "/".join(_segment(label) for label in prefix)


def item_path(namespace: Sequence[str], key: str) -> str:
    """The AgentCore namespace of one item; refused if longer than AgentCore allows."""
    path = prefix_path(namespace) + "/" + KEY_MARK + _segment(key)
    if len(path) > NAMESPACE_MAX:
        raise RequestRejected(
            f"namespace {list(namespace)[:4]}... and key make an AgentCore namespace of "
            f"{len(path)} characters; AgentCore allows {NAMESPACE_MAX}: use fewer or "
            "shorter labels"
        )
    return path


# --- records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """An item read back from its record."""

    record_id: str
    namespace: Namespace
    key: str
    value: dict[str, Any]
    created_at: float
    updated_at: float

    def item(self, score: float | None = None) -> m.StoreItem:
        value = value_bytes(self.value)
        return m.StoreItem(
            list(self.namespace), self.key, value, self.created_at, self.updated_at, score
        )

    @property
    def ident(self) -> tuple[Namespace, str]:
        return self.namespace, self.key

    @property
    def order(self) -> tuple[float, Namespace, str]:
        """The search order without a query: newest update first, then namespace and key."""
        return -self.updated_at, self.namespace, self.key


def value_bytes(value: Mapping[str, Any]) -> bytes:
    """A value as the client sends it: compact JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def content(
    namespace: Sequence[str], key: str, value: Mapping[str, Any], created_at: float, now: float
) -> str:
    """The text of an item's record; refused when it does not fit AgentCore's 16,000."""
    document = {
        "namespace": list(namespace),
        "key": key,
        "value": value,
        "created_at": created_at,
        "updated_at": now,
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    size = _utf16_length(text)
    if size > CONTENT_MAX:
        raise RequestRejected(
            f"the item {list(namespace)}/{key[:80]!r} takes {size} characters as an AgentCore "
            f"memory record (its JSON with namespace, key and timestamps); a record holds at "
            f"most {CONTENT_MAX}: store less in one item (the agentcore-memory store's limit)"
        )
    return text


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def metadata(key: str) -> dict[str, Any]:
    return {KIND: {"stringValue": ITEM}, KEY: {"stringValue": identity.tag(key)}}


def timestamp(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def decode(summary: Mapping[str, Any]) -> Found | None:
    """The item a record summary holds, or None for records that are not items."""
    kind = ((summary.get("metadata") or {}).get(KIND) or {}).get("stringValue")
    if kind != ITEM:
        return None
    record_id = str(summary.get("memoryRecordId", ""))
    try:
        document = json.loads((summary.get("content") or {}).get("text", ""))
        found = Found(
            record_id,
            tuple(_strings(document["namespace"])),
            _string(document["key"]),
            _object(document["value"]),
            float(document["created_at"]),
            float(document["updated_at"]),
        )
    except (ValueError, TypeError, KeyError):
        log.warning("skipping a damaged item record", extra={"record": record_id})
        return None
    return found


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("not a list of strings")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def newest_first(found: Sequence[Found]) -> list[Found]:
    """Records of one item (normally one; more after racing creates), the one to read first."""
    return sorted(found, key=lambda f: (f.updated_at, f.record_id), reverse=True)
