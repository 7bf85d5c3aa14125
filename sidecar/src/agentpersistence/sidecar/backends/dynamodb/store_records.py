"""How store items map to DynamoDB items (see :mod:`.store_schema`), and back.

The value is stored as sent (JSON bytes), gzip-compressed when that saves and it is at least
:data:`COMPRESS_MIN` bytes (DynamoDB items hold at most 400 KB); it is parsed only to evaluate
a filter. Field vectors are FLOAT32 little-endian bytes, as the Valkey store keeps them.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import RequestRejected, SidecarError

from . import schema
from . import store_schema as s

Item = dict[str, Any]
COMPRESS_MIN = 2048
GZIP = "gzip"
_ROOM = 16 * 1024
"""Room kept in a 400 KB item for its other attributes."""


@dataclass(frozen=True)
class Stored:
    """An item as read from the table."""

    namespace: tuple[str, ...]
    key: str
    raw: Item

    @classmethod
    def of(cls, item: Item) -> Stored:
        pk, sk = item[s.PK]["S"], item[s.SK]["S"]
        return cls(s.namespace_of_pk(pk), s.key_of_sk(sk), item)

    @cached_property
    def value(self) -> bytes:
        data = bytes(self.raw[s.VALUE]["B"])
        if s.ENCODING in self.raw:
            try:
                return gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise SidecarError(f"a stored value is not valid gzip: {exc}") from None
        return data

    @property
    def updated_at(self) -> float:
        return float(self.raw[s.UPDATED]["N"])

    @property
    def ttl(self) -> float | None:
        ttl = self.raw.get(s.TTL)
        return float(ttl["N"]) if ttl else None

    @property
    def order(self) -> tuple[float, tuple[str, ...], str]:
        """Searches without a query: updated_at descending, then namespace and key."""
        return -self.updated_at, self.namespace, self.key

    @cached_property
    def parsed(self) -> dict[str, Any]:
        return rules.parse_value(self.value)

    def matches(self, wanted: dict[str, Any] | None) -> bool:
        return wanted is None or rules.filter_matches(self.parsed, wanted)

    @cached_property
    def vectors(self) -> list[list[float]]:
        return [unpack_vector(bytes(v["B"])) for v in self.raw.get(s.VECTORS, {}).get("L", [])]

    def item(self, score: float | None = None) -> m.StoreItem:
        created = float(self.raw[s.CREATED]["N"])
        return m.StoreItem(
            list(self.namespace), self.key, self.value, created, self.updated_at, score
        )


def pack_vector(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack_vector(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def check_vector(vector: Sequence[float], dims: int | None, what: str) -> None:
    if dims is not None and len(vector) != dims:
        raise RequestRejected(f"{what} has {len(vector)} dimensions; the index has {dims}")


def stored_value(op: m.StoreOp) -> Item:
    """The ``value`` (and ``encoding``) attributes of a put, within DynamoDB's item size."""
    assert op.value is not None
    data, extra = op.value, {}
    if len(data) >= COMPRESS_MIN:
        packed = gzip.compress(data, compresslevel=6, mtime=0)
        if len(packed) < len(data):
            data, extra = packed, {s.ENCODING: {"S": GZIP}}
    if len(data) > schema.MAX_ITEM_BYTES - _ROOM:
        raise RequestRejected(
            f"the value of {op.key[:40]!r} takes {len(data)} bytes even compressed, over what "
            f"a DynamoDB item holds ({schema.MAX_ITEM_BYTES - _ROOM}); store large blobs "
            "elsewhere and keep a reference in the item"
        )
    return {s.VALUE: {"B": data}, **extra}


def vector_attribute(op: m.StoreOp) -> Item:
    vectors = op.vectors or []
    if not vectors:
        return {}
    return {s.VECTORS: {"L": [{"B": pack_vector(v.vector)} for v in vectors]}}
