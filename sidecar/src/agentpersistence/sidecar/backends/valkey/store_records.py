"""How store items map to the fields of their hashes and the arguments of ``store_put.lua``.

The value is stored as sent (JSON bytes) and parsed only to evaluate a filter; vectors are
FLOAT32 little-endian blobs, the index's ``TYPE FLOAT32``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import RequestRejected

from . import store_schema
from .connection import Arg

_FIELDS = 6
"""m, value, created_at, updated_at, ttl, nvec: the head of every item reply."""


@dataclass(frozen=True)
class Found:
    """A live item as a script returned it."""

    member: str
    value: bytes
    created_at: float
    updated_at: float
    ttl_ms: int
    vector_count: int
    blobs: tuple[bytes, ...] = ()

    @cached_property
    def location(self) -> tuple[list[str], str]:
        return store_schema.split_member(self.member)

    @property
    def order(self) -> tuple[float, list[str], str]:
        """Sort key of searches without a query: updated_at descending, namespace, key."""
        namespace, key = self.location
        return -self.updated_at, namespace, key

    @cached_property
    def parsed(self) -> dict[str, Any]:
        return rules.parse_value(self.value)

    def matches(self, wanted: dict[str, Any] | None) -> bool:
        return wanted is None or rules.filter_matches(self.parsed, wanted)

    @cached_property
    def vectors(self) -> list[list[float]]:
        return [unpack_vector(blob) for blob in self.blobs]

    def item(self, score: float | None = None) -> m.StoreItem:
        namespace, key = self.location
        return m.StoreItem(namespace, key, self.value, self.created_at, self.updated_at, score)


def decode(reply: Any) -> Found | None:
    """An item reply of ``store_read.lua``/``store_scan.lua`` (None: no such live item)."""
    if not reply:
        return None
    member, value, created_at, updated_at, ttl, nvec = reply[:_FIELDS]
    return Found(
        text(member),
        bytes(value),
        float(created_at),
        float(updated_at),
        int(ttl),
        int(nvec),
        tuple(bytes(blob) for blob in reply[_FIELDS:]),
    )


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def pack_vector(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack_vector(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def ttl_ms(ttl_seconds: float | None) -> int:
    """The ``ttl`` field: 0 keeps the item; any positive TTL lasts at least a millisecond."""
    if ttl_seconds is None:
        return 0
    return max(1, round(ttl_seconds * 1000))


def put_args(op: m.StoreOp, now: float) -> list[Arg]:
    """``store_put.lua``'s arguments for a put (``op.value`` set) or a delete."""
    member = store_schema.item_member(op.namespace, op.key)
    if op.value is None or (op.ttl_seconds is not None and op.ttl_seconds <= 0):
        return [member, "del"]  # a TTL of zero or less: gone as soon as written
    blobs = [pack_vector(v.vector) for v in op.vectors or []]
    tags = store_schema.prefix_tags(op.namespace)
    return [member, "put", repr(now), ttl_ms(op.ttl_seconds), op.value, tags, *blobs]


def check_vector(vector: Sequence[float], dims: int | None, what: str) -> None:
    """Refuse a vector the index could not hold (wrong length, NaN or infinity)."""
    if dims is not None and len(vector) != dims:
        raise RequestRejected(f"{what} has {len(vector)} dimensions; the store's index has {dims}")
    if not all(math.isfinite(x) for x in vector):
        raise RequestRejected(f"{what} holds NaN or infinity")
