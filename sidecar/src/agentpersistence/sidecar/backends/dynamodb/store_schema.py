"""The store's table and item layout, defined once (for ``--provision``, the operator and the
backend alike).

**Table**: the checkpointer's layout (:func:`.schema.table_definition`: string keys ``PK`` and
``SK``, on-demand billing, TTL on the number attribute ``expires``), in a table of its own
(``store.dynamodb.tableName``); with ``vectorIndex`` one vector index beside it
(:data:`VECTOR_INDEX` on the attribute ``vec``). Items, with ``N(ns)`` the namespace's labels
each escaped (:func:`.schema.escape`: nothing below ``!`` is left) and ended by a space, so
that ``N`` of a prefix is a string prefix of ``N`` of every namespace under it, and of no
other::

    PK                 SK                kind
    s#N(ns)            k<key>            an item: value, created, updated, ttl, expiry, vectors
    s#N(ns)            v<iii><key>       one field vector of it (vectorIndex only): vec, nsf
    sreg#<shard>       N(ns)             "the namespace has (or had) items": at

An item's partition is its namespace, so a namespace's items are one ``Query``. The registry
(an item per namespace, spread over :data:`REGISTRY_SHARDS` partitions by the namespace's
first label) answers which namespaces lie under a prefix with a ``Query`` on one shard (a
prefix names its first label) or on every shard (an empty prefix): never a ``Scan``. Its
``at`` changes with every write of the entry, so an entry is dropped (a listing that finds
its namespace empty) only if no put re-registered it meanwhile.

**Expiry**: ``exp_ms`` is the precise expiry (epoch milliseconds) that reads compare with the
clock; ``expires`` (whole seconds, rounded up) is the table's TTL attribute, by which
DynamoDB deletes the item, late.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentpersistence.client.protocol.errors import RequestRejected

from . import schema

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import CreateTableInputTypeDef, VectorIndexTypeDef

PK, SK, EXPIRES = schema.PK, schema.SK, schema.EXPIRES
VALUE = "value"
"""The value's JSON bytes, as sent (or gzip-compressed, then ``encoding`` is ``gzip``)."""
ENCODING = "encoding"
CREATED, UPDATED = "created", "updated"
"""Epoch seconds (numbers)."""
TTL = "ttl"
"""The item's TTL in seconds, kept so a read can refresh it."""
EXPIRY_MS = "exp_ms"
VECTORS = "vecs"
"""The item's field vectors, each FLOAT32 little-endian bytes (ranked exactly here)."""
VECTOR_COUNT = "vn"
VECTOR = "vec"
"""A vector item's vector: a list of numbers (what DynamoDB's vector index reads)."""
NAMESPACE_FILTER = "nsf"
"""A vector item's ``N(ns)``: the index's inline filter for a namespace prefix."""
AT = "at"
"""A registry entry's write stamp."""

VECTOR_INDEX = "store-vectors"
REGISTRY_SHARDS = 8
"""Registry partitions; changing it needs a migration (entries would be looked up in the
wrong shard)."""
DISTANCE_FUNCTIONS = {"cosine": "COSINE", "l2": "EUCLIDEAN", "ip": "DOT_PRODUCT"}

_ITEM, _REGISTRY = "s#", "sreg#"
_KEY, _VECTOR = "k", "v"
_END = " "
_NEXT = chr(ord(_END) + 1)


# --- keys -----------------------------------------------------------------------------------


def encode_namespace(namespace: Sequence[str]) -> str:
    """``N``: each label escaped and ended by a space (a prefix's ``N`` is a string prefix)."""
    return "".join(schema.escape(label) + _END for label in namespace)


def decode_namespace(encoded: str) -> tuple[str, ...]:
    return tuple(schema.unescape(label) for label in encoded.split(_END)[:-1])


def prefix_upper(encoded_prefix: str) -> str:
    """Above every ``N`` that starts with ``encoded_prefix`` (non-empty), below the next."""
    return encoded_prefix[:-1] + _NEXT


def item_pk(namespace: Sequence[str]) -> str:
    return _ITEM + encode_namespace(namespace)


def namespace_of_pk(pk: str) -> tuple[str, ...]:
    return decode_namespace(pk[len(_ITEM) :])


def item_sk(key: str) -> str:
    return _KEY + key


def key_of_sk(sk: str) -> str:
    return sk[len(_KEY) :]


ITEM_SK_PREFIX = _KEY


def vector_sk(key: str, i: int) -> str:
    return f"{_VECTOR}{i:03d}{key}"


def key_of_vector_sk(sk: str) -> str:
    return sk[len(_VECTOR) + 3 :]


def registry_pk(shard: int) -> str:
    return f"{_REGISTRY}{shard}"


def shard_of(first_label: str) -> int:
    digest = hashlib.sha256(first_label.encode(), usedforsecurity=False).digest()
    return digest[0] % REGISTRY_SHARDS


def registry_key(namespace: Sequence[str]) -> dict[str, Any]:
    return {
        PK: {"S": registry_pk(shard_of(namespace[0]))},
        SK: {"S": encode_namespace(namespace)},
    }


def shards_under(prefix: Sequence[str]) -> list[int]:
    """The registry shards holding every namespace under ``prefix``."""
    return [shard_of(prefix[0])] if prefix else list(range(REGISTRY_SHARDS))


def check_item_key(namespace: Sequence[str], key: str) -> None:
    """Refuse a namespace or key too long for DynamoDB's keys, naming which."""
    encoded = encode_namespace(namespace)
    if len(encoded.encode()) > schema.MAX_SK_BYTES - 1:
        raise RequestRejected(
            f"namespace {list(namespace)[:4]!r}... is too long for the dynamodb store: "
            f"escaped, its labels take {len(encoded.encode())} bytes, over "
            f"{schema.MAX_SK_BYTES - 1} (DynamoDB's key limit); use shorter labels"
        )
    size = len(item_sk(key).encode()) + 3
    if size > schema.MAX_SK_BYTES:
        raise RequestRejected(
            f"key {key[:40]!r} is too long for the dynamodb store: {size} bytes with its "
            f"prefix, over DynamoDB's {schema.MAX_SK_BYTES}-byte sort key; use a shorter key"
        )


# --- expiry ---------------------------------------------------------------------------------


def expiry_attributes(now: float, ttl_seconds: float) -> dict[str, Any]:
    expiry_ms = math.ceil((now + ttl_seconds) * 1000)
    return {
        EXPIRY_MS: {"N": str(expiry_ms)},
        EXPIRES: {"N": str(math.ceil(expiry_ms / 1000))},
    }


def live(item: dict[str, Any], now: float) -> bool:
    """Not past its expiry (DynamoDB deletes expired items late: reads check this)."""
    expiry = item.get(EXPIRY_MS)
    return expiry is None or int(expiry["N"]) > now * 1000


# --- the table ------------------------------------------------------------------------------


def table_definition(
    table_name: str, vector_index: tuple[int, str] | None = None
) -> CreateTableInputTypeDef:
    """The checkpointer's table definition, with the vector index when ``vector_index``
    (dimensions, distance) is given."""
    definition = schema.table_definition(table_name)
    if vector_index is not None:
        dims, distance = vector_index
        index: VectorIndexTypeDef = {
            "IndexName": VECTOR_INDEX,
            "VectorAttribute": {"AttributeName": VECTOR},
            "SearchSchema": [
                {"AttributeName": NAMESPACE_FILTER, "SearchSchemaElementType": "INLINE_FILTER"}
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
            "Dimensions": dims,
            "DistanceFunction": DISTANCE_FUNCTIONS[distance],  # type: ignore[typeddict-item]
        }
        definition["VectorIndexes"] = [index]
    return definition


def search_vectors_request(
    table_name: str, prefix: Sequence[str], query: Sequence[float], top_k: int
) -> dict[str, Any]:
    """A ``SearchVectors`` request: the ``top_k`` field vectors nearest ``query`` whose
    namespace lies under ``prefix`` (an inline-filter range on ``nsf``)."""
    request: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": VECTOR_INDEX,
        "SearchVector": [{"N": repr(float(x))} for x in query],
        "TopK": top_k,
    }
    if prefix:
        low = encode_namespace(prefix)
        request["SearchConditionExpression"] = "#ns >= :lo AND #ns < :hi"
        request["ExpressionAttributeNames"] = {"#ns": NAMESPACE_FILTER}
        request["ExpressionAttributeValues"] = {
            ":lo": {"S": low},
            ":hi": {"S": prefix_upper(low)},
        }
    return request


def score_of(distance: str, score: float) -> float:
    """A ``SearchVectors`` score as a LangGraph score (``store_rules.similarity``): COSINE
    answers ``1 - cos``, EUCLIDEAN the distance, DOT_PRODUCT the product itself."""
    if distance == "cosine":
        return 1.0 - score
    if distance == "l2":
        return -score
    return score
