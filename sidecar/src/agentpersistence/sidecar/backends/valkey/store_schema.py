"""The store's key layout and vector index, defined once (``store_keys.lua`` mirrors the keys).

The operator reuses :func:`index_definition` and :func:`ensure_index`; the sidecar's
``--provision`` calls the same code.

Every key starts with the escaped prefix and the hash tag ``{s}`` (``S`` = ``P:{s}:``): all
keys of a store live in one cluster slot, so each put, read or listing is one atomic script,
and on a cluster the ``FT.*`` commands go to the node owning that slot (whose index, even a
shard-local one, holds every document). A store larger than one node would need a tag per
namespace root; the checkpoints, the bulk of the data, spread over slots per thread.

Encodings of a namespace ``(l1, ..., ln)`` and an item key ``k``:

- **member**: ``l1 NUL l2 NUL ... ln NUL`` (the *namespace member*), then ``NUL`` and ``k``
  (the *item member*). Labels hold no NUL (``store_rules.check_namespace``) and NUL is the
  smallest byte, so members sort byte-wise exactly as ``(namespace, key)`` tuples sort in
  Python: a sorted set orders items of equal score by namespace, then key, for free.
- **path**: the member escaped with :func:`.schema.escape` and NUL written ``:``
  (``l1:l2::k``); injective, used in key names. **nspath**: ``l1:l2:`` (each escaped label
  and ``:``).
- **tag**: the labels percent-encoded except ``[A-Za-z0-9_]``, joined with ``.``
  (``["a-b", "x:y"]`` -> ``a%2Db.x%3Ay``). A tag holds only letters, digits, ``_``, ``%`` and
  ``.``: never the TAG separator ``,``, and nothing a query parser can misread once
  :func:`tag_query` escapes it.

Keys::

    S d:<path>        HASH  an item: m (member), value (JSON bytes as sent), created_at,
                            updated_at (seconds, sidecar clock), ttl (ms, 0 = none), nvec
    S v:<path>:<i>    HASH  its i-th field vector (i < nvec): vec (FLOAT32, little-endian),
                            nsp (the tags of every prefix of its namespace, comma separated),
                            m (member). The only documents the search index covers.
    S p:<nspath>      ZSET  item members under this namespace prefix (every depth, and the
                            empty prefix ``S p:``), score -updated_at: rank order is the
                            order of searches without a query (updated_at desc, namespace, key)
    S n:<nspath>      ZSET  item members of exactly this namespace, score = expiry in ms since
                            the epoch (server clock; +inf without TTL): a namespace is listed
                            while one of its scores is in the future
    S ns              ZSET  namespace members holding an item, score 0 (lex ranges by prefix)
    S exp             ZSET  item members with a TTL, score = expiry; swept before writes

A TTL is real: the item's hash and vector hashes get ``PEXPIREAT`` (so the index drops them),
the index entries of expired items are swept or dropped by the reads that meet them.

The index (:func:`index_definition`)::

    FT.CREATE S store ON HASH PREFIX 1 S v: SCHEMA
        nsp TAG SEPARATOR , CASESENSITIVE
        vec VECTOR HNSW 12 TYPE FLOAT32 DIM d DISTANCE_METRIC COSINE|L2|IP
                           M m EF_CONSTRUCTION c EF_RUNTIME r        (or FLAT 6 ...)

Queries use the subset RediSearch 2.10 and valkey-search both accept (:func:`knn_query`):
``DIALECT 2``, a KNN clause with an optional TAG pre-filter, ``PARAMS``, ``RETURN``,
``LIMIT``; results are sorted in the sidecar (RediSearch does not sort KNN replies).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from valkey import exceptions as vx

from ...settings import IndexSettings, ValkeyStoreSettings
from . import errors
from .connection import Arg, Client, execute
from .schema import escape, namespace_path

log = logging.getLogger("agentpersistence.sidecar.valkey")

TAG_FIELD, VECTOR_FIELD, MEMBER_FIELD, DISTANCE_FIELD = "nsp", "vec", "m", "dist"
TAG_SEPARATOR = ","
BACKFILL_WAIT_S = 60.0
"""How long creating an index waits for it to index the documents already stored."""
METRICS = {"cosine": "COSINE", "l2": "L2", "ip": "IP"}

_TAG_SAFE = re.compile(r"[A-Za-z0-9_]")
_QUERY_SPECIAL = re.compile(r"[^A-Za-z0-9_]")
_NUL = "\x00"


# --- members, paths and tags -------------------------------------------------------------


def namespace_member(labels: Sequence[str]) -> str:
    return "".join(label + _NUL for label in labels)


def item_member(namespace: Sequence[str], key: str) -> str:
    return namespace_member(namespace) + _NUL + key


def split_member(member: str) -> tuple[list[str], str]:
    """The namespace and key of an item member."""
    end = member.index(_NUL + _NUL)
    return member[:end].split(_NUL), member[end + 2 :]


def split_namespace_member(member: str) -> tuple[str, ...]:
    return tuple(member[:-1].split(_NUL)) if member else ()


def path(member: str) -> str:
    return escape(member).replace(_NUL, ":")


def _percent(label: str) -> str:
    return "".join(
        c if _TAG_SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in label
    )


def tag(labels: Sequence[str]) -> str:
    """The TAG value naming the namespace prefix ``labels``."""
    return ".".join(_percent(label) for label in labels)


def prefix_tags(namespace: Sequence[str]) -> str:
    """The ``nsp`` field of a vector document: the tag of every non-empty prefix."""
    return TAG_SEPARATOR.join(tag(namespace[:depth]) for depth in range(1, len(namespace) + 1))


def tag_query(value: str) -> str:
    """``value`` escaped for a TAG clause (``@nsp:{...}``): a backslash before every symbol."""
    return _QUERY_SPECIAL.sub(lambda found: "\\" + found.group(), value)


def lex_range(labels: Sequence[str]) -> tuple[str, str]:
    """ZRANGEBYLEX bounds of the namespace members starting with the labels ``labels``."""
    if not labels:
        return "-", "+"
    start = namespace_member(labels)
    return "[" + start, "(" + start[:-1] + "\x01"


@dataclass(frozen=True)
class StoreKeys:
    """Key names of one store (``store_keys.lua`` builds the same names from members)."""

    prefix: str

    @property
    def base(self) -> str:
        """The hash-tagged start of every key (``KEYS[1]`` of the store scripts)."""
        return f"{escape(self.prefix)}:{{s}}:"

    @property
    def vector_prefix(self) -> str:
        return self.base + "v:"

    def doc(self, member: str) -> str:
        return f"{self.base}d:{path(member)}"

    def vector(self, member: str, i: int) -> str:
        return f"{self.vector_prefix}{path(member)}:{i}"

    def prefix_index(self, labels: Sequence[str]) -> str:
        return f"{self.base}p:{namespace_path(labels)}"

    def namespace_items(self, labels: Sequence[str]) -> str:
        return f"{self.base}n:{namespace_path(labels)}"

    @property
    def namespaces(self) -> str:
        return self.base + "ns"

    @property
    def expiry(self) -> str:
        return self.base + "exp"


# --- the index ---------------------------------------------------------------------------


def index_name(settings: ValkeyStoreSettings) -> str:
    """``S store``: the store's hash tag in the name puts the index in the store's slot.

    RediSearch routes ``FT.*`` commands in cluster mode by the index name's slot, and an
    index sees only the documents of its own node: named without the tag, it lands on
    another node than the documents and finds nothing. (valkey-search ignores the slot.)"""
    return StoreKeys(settings.key_prefix).base + "store"


def index_definition(settings: ValkeyStoreSettings, index: IndexSettings) -> list[Arg]:
    """What follows ``FT.CREATE <index_name>``: the documents and fields indexed."""
    vector: list[Arg] = ["TYPE", "FLOAT32", "DIM", index.dims]
    vector += ["DISTANCE_METRIC", METRICS[index.distance]]
    if index.algorithm == "hnsw":
        vector += ["M", index.m, "EF_CONSTRUCTION", index.ef_construction]
        vector += ["EF_RUNTIME", index.ef_runtime]
    return [
        *("ON", "HASH", "PREFIX", 1, StoreKeys(settings.key_prefix).vector_prefix),
        *("SCHEMA", TAG_FIELD, "TAG", "SEPARATOR", TAG_SEPARATOR, "CASESENSITIVE"),
        *(VECTOR_FIELD, "VECTOR", index.algorithm.upper(), len(vector), *vector),
    ]


def knn_query(prefix: Sequence[str], k: int, index: IndexSettings) -> str:
    """The KNN query over the vectors under the namespace prefix (``$BLOB`` the query vector)."""
    where = f"(@{TAG_FIELD}:{{{tag_query(tag(prefix))}}})" if prefix else "*"
    ef = f" EF_RUNTIME {max(index.ef_runtime, k)}" if index.algorithm == "hnsw" else ""
    return f"{where}=>[KNN {k} @{VECTOR_FIELD} $BLOB{ef} AS {DISTANCE_FIELD}]"


@dataclass(frozen=True)
class IndexShape:
    """What an index definition says about the fields this store relies on."""

    prefixes: tuple[str, ...]
    fields: dict[str, dict[str, str]]


def expected_shape(settings: ValkeyStoreSettings, index: IndexSettings) -> IndexShape:
    vector = {
        "type": "VECTOR",
        "algorithm": index.algorithm.upper(),
        "data_type": "FLOAT32",
        "dim": str(index.dims),
        "distance_metric": METRICS[index.distance],
    }
    if index.algorithm == "hnsw":
        vector |= {"m": str(index.m), "ef_construction": str(index.ef_construction)}
    return IndexShape(
        (StoreKeys(settings.key_prefix).vector_prefix,),
        {TAG_FIELD: {"type": "TAG", "separator": TAG_SEPARATOR}, VECTOR_FIELD: vector},
    )


_ALIASES = {"dim": ("dim", "dimensions")}
_COMPARED: tuple[str, ...] = ("type", "separator", "algorithm", "data_type", "dim")
_COMPARED += ("distance_metric", "m", "ef_construction")


def parse_info(reply: Sequence[Any]) -> IndexShape:
    """The :class:`IndexShape` of an ``FT.INFO`` reply (RediSearch's or valkey-search's shape)."""
    definition = _lookup(reply, "index_definition")
    prefixes = _lookup(definition, "prefixes") if definition is not None else None
    fields: dict[str, dict[str, str]] = {}
    for attribute in _lookup(reply, "attributes") or []:
        name = _lookup(attribute, "identifier")
        if name is None:
            continue
        fields[_text(name)] = {
            key: value for key in _COMPARED if (value := _attribute(attribute, key)) is not None
        }
    return IndexShape(tuple(_text(p) for p in prefixes or []), fields)


def _attribute(attribute: Any, key: str) -> str | None:
    for alias in _ALIASES.get(key, (key,)):
        value = _lookup(attribute, alias)
        if isinstance(value, list):  # valkey-search: algorithm [name HNSW m 16 ...]
            value = _lookup(value, "name")
        if value is not None:
            return _text(value).upper() if key != "separator" else _text(value)
    return None


def _lookup(tree: Any, key: str) -> Any:
    """The value after the first element equal to ``key`` (any case), searched depth first."""
    if not isinstance(tree, list):
        return None
    for i, element in enumerate(tree):
        is_key = isinstance(element, bytes | str) and _text(element).lower() == key.lower()
        if is_key and i + 1 < len(tree):
            return tree[i + 1]
    for element in tree:
        found = _lookup(element, key)
        if found is not None:
            return found
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def differences(found: IndexShape, expected: IndexShape) -> list[str]:
    """How ``found`` departs from ``expected`` (only what ``found`` reports is compared)."""
    problems = []
    if found.prefixes != expected.prefixes:
        problems.append(f"prefixes {list(found.prefixes)} (want {list(expected.prefixes)})")
    for name, want in expected.fields.items():
        have = found.fields.get(name)
        if have is None:
            problems.append(f"no field {name!r}")
            continue
        problems += [
            f"{name}.{key} is {have[key]!r} (want {value!r})"
            for key, value in want.items()
            if key in have and have[key] != value.upper() and have[key] != value
        ]
    return problems


async def ensure_index(client: Client, settings: ValkeyStoreSettings, index: IndexSettings) -> str:
    """Create the store's index, or adopt an existing one with the same definition.

    Returns ``"created"`` or ``"adopted"``. A new index is returned once it has indexed the
    documents already stored (at most :data:`BACKFILL_WAIT_S`). Raises
    :class:`.errors.IndexMismatch` if an index of that name exists with another definition,
    and ``BackendUnavailable`` if the server has no search module. valkey-py's connection
    errors propagate (the caller maps them).
    """
    name, route = index_name(settings), StoreKeys(settings.key_prefix).base
    expected = expected_shape(settings, index)
    info = await _info(client, name, route)
    if info is None:
        create = ("FT.CREATE", name, *index_definition(settings, index))
        try:
            await execute(client, create, route=route)
        except vx.ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        else:
            await _wait_for_backfill(client, name, route)
            log.info("created the store's search index", extra={"index": name})
            return "created"
        info = await _info(client, name, route)  # created meanwhile by another sidecar
    problems = differences(parse_info(info or []), expected)
    if problems:
        raise errors.IndexMismatch(name, problems)
    return "adopted"


async def _wait_for_backfill(client: Client, name: str, route: str) -> None:
    """Wait until the index has scanned the documents stored before it existed."""
    deadline = time.monotonic() + BACKFILL_WAIT_S
    while time.monotonic() < deadline:
        info = await _info(client, name, route)
        busy = _lookup(info, "indexing") or _lookup(info, "backfill_in_progress")
        if busy is None or _text(busy) in ("0", "false"):
            return
        await asyncio.sleep(0.05)
    log.warning("the new index is still indexing stored documents", extra={"index": name})


async def _info(client: Client, name: str, route: str) -> list[Any] | None:
    """``FT.INFO name``, or None if there is no such index."""
    try:
        reply: list[Any] = await execute(client, ("FT.INFO", name), route=route)
    except vx.ResponseError as exc:
        if errors.is_unknown_command(str(exc)):
            raise errors.no_search_module(name) from None
        if errors.is_unknown_index(str(exc)):
            return None
        raise
    return reply
