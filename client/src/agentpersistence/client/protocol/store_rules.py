"""Store semantics every store backend follows (LangGraph's ``BaseStore``), as pure functions.

Validation of ops, what a filter matches, which namespaces a listing returns, how a
batch's puts combine and how a distance becomes a score live here once; backends decide
only how to store and find items quickly.

Where LangGraph's ``InMemoryStore`` raises on a comparison with a missing or non-numeric
field (``{"n": {"$gt": 1}}`` on an item without ``n``), the rule here is PostgreSQL's:
the item does not match. Booleans count as non-numeric for ``$gt $gte $lt $lte`` (JSON
has no ordering between booleans and numbers), where ``InMemoryStore`` compares them as
0 and 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from . import messages as m
from .errors import RequestRejected
from .rules import json_object

GET, PUT, SEARCH, LIST_NAMESPACES = "get", "put", "search", "list_namespaces"
OPS = (GET, PUT, SEARCH, LIST_NAMESPACES)
FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
DISTANCES = ("cosine", "l2", "ip")

Namespace = tuple[str, ...]


# --- validation --------------------------------------------------------------------------


def check_op(op: m.StoreOp) -> m.StoreOp:
    """Refuse an op that no backend could answer correctly, naming what is wrong."""
    if op.op not in OPS:
        raise RequestRejected(f"unknown store op {op.op!r}; use one of {', '.join(OPS)}")
    if op.op == PUT:
        check_namespace(op.namespace, allow_empty=False)
        if op.value is not None:
            parse_value(op.value)
    elif op.op == GET:
        check_namespace(op.namespace, allow_empty=False)
    elif op.op == SEARCH:
        check_namespace(op.namespace, allow_empty=True)
        parse_store_filter(op.filter)
    else:
        for condition in op.conditions:
            if condition.match_type not in ("prefix", "suffix"):
                raise RequestRejected(
                    f"namespace match type must be prefix or suffix, got {condition.match_type!r}"
                )
            check_namespace(condition.path, allow_empty=True)
        if op.max_depth is not None and op.max_depth < 1:
            raise RequestRejected(f"max_depth must be at least 1, got {op.max_depth}")
    if op.limit < 0 or op.offset < 0:
        raise RequestRejected(f"limit and offset must not be negative ({op.limit}, {op.offset})")
    return op


def check_namespace(namespace: Sequence[str], *, allow_empty: bool) -> None:
    if not namespace and not allow_empty:
        raise RequestRejected("namespace cannot be empty")
    for label in namespace:
        if not label:
            raise RequestRejected(f"namespace labels cannot be empty strings: {list(namespace)}")
        if "." in label or "\x00" in label:
            raise RequestRejected(
                f"namespace label {label!r} contains '.' or NUL, which namespaces cannot hold"
            )


def parse_value(raw: bytes) -> dict[str, Any]:
    return json_object(raw, "a store value")


def parse_store_filter(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = json_object(raw, "a search filter")
    for wanted in value.values():
        _check_condition(wanted)
    return value or None


def _check_condition(wanted: object) -> None:
    """A field's condition: a value, or a map of operators, or a map of nested fields.

    Keys of the filter itself and of nested-field maps are field names, so a field may be
    called ``$type``; a map with any ``$`` key is a map of operators, and then every key
    must be one.
    """
    if not isinstance(wanted, dict):
        return
    if any(key.startswith("$") for key in wanted):
        unknown = [key for key in wanted if key not in FILTER_OPERATORS]
        if unknown:
            raise RequestRejected(
                f"unsupported filter operator {unknown[0]!r}; "
                f"use one of {', '.join(FILTER_OPERATORS)}"
            )
        return
    for nested in wanted.values():
        _check_condition(nested)


# --- batches -----------------------------------------------------------------------------


def effective_puts(ops: Sequence[m.StoreOp]) -> dict[tuple[Namespace, str], m.StoreOp]:
    """The puts of a batch, one per item: the last put of an item wins."""
    return {(tuple(op.namespace), op.key): op for op in ops if op.op == PUT}


# --- filters -----------------------------------------------------------------------------


def filter_matches(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    return all(_compare(value.get(key), wanted) for key, wanted in filter.items())


def _compare(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            return all(_apply(actual, op, operand) for op, operand in wanted.items())
        if not isinstance(actual, dict):
            return False
        return all(_compare(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(_compare(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


def _apply(actual: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return bool(actual == operand)
    if operator == "$ne":
        return bool(actual != operand)
    left, right = _number(actual), _number(operand)
    if left is None or right is None:
        return False
    if operator == "$gt":
        return left > right
    if operator == "$gte":
        return left >= right
    if operator == "$lt":
        return left < right
    return left <= right


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- namespaces --------------------------------------------------------------------------


def namespace_matches(namespace: Namespace, condition: m.NamespaceCondition) -> bool:
    path = condition.path
    if len(namespace) < len(path):
        return False
    labels = (
        namespace if condition.match_type == "prefix" else namespace[len(namespace) - len(path) :]
    )
    return all(p == "*" or p == label for label, p in zip(labels, path, strict=False))


def list_namespaces(namespaces: Iterable[Namespace], op: m.StoreOp) -> list[list[str]]:
    """The answer to a ``list_namespaces`` op over every namespace holding an item."""
    found = [ns for ns in namespaces if all(namespace_matches(ns, c) for c in op.conditions)]
    if op.max_depth is not None:
        found = list({ns[: op.max_depth] for ns in found})
    return [list(ns) for ns in sorted(set(found))[op.offset : op.offset + op.limit]]


def has_prefix(namespace: Sequence[str], prefix: Sequence[str]) -> bool:
    return tuple(namespace[: len(prefix)]) == tuple(prefix)


def fixed_prefix(conditions: Sequence[m.NamespaceCondition]) -> list[str]:
    """Where every namespace a ``list_namespaces`` op can match starts: the longest run of
    leading labels without a wildcard among its prefix conditions."""
    best: list[str] = []
    for condition in conditions:
        if condition.match_type != "prefix":
            continue
        fixed: list[str] = []
        for label in condition.path:
            if label == "*":
                break
            fixed.append(label)
        best = max(best, fixed, key=len)
    return best


# --- scores ------------------------------------------------------------------------------


def similarity(distance_metric: str, a: Sequence[float], b: Sequence[float]) -> float:
    """Relevance of ``b`` to ``a``: higher means more similar, for every metric."""
    if distance_metric == "cosine":
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return dot / norms if norms else 0.0
    if distance_metric == "ip":
        return sum(x * y for x, y in zip(a, b, strict=True))
    return -math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))


def score_from_distance(distance_metric: str, distance: float) -> float:
    """Convert a vector index's distance (smaller is closer) to a LangGraph score.

    The score equals :func:`similarity` of the same vectors. Checked against RediSearch 2.10
    (``tests/integration/test_valkey_store_backend.py``): KNN reports COSINE as ``1 - cos``,
    IP as ``1 - dot`` and L2 as the *squared* euclidean distance. valkey-search uses hnswlib's
    spaces, which define the same distances; it is not run in these tests.
    """
    if distance_metric == "cosine":
        return 1.0 - distance
    if distance_metric == "ip":
        return 1.0 - distance
    return -math.sqrt(max(distance, 0.0))


# --- embedding inputs --------------------------------------------------------------------

Fields = list[tuple[str, "str | list[str]"]]


def tokenize_fields(paths: Sequence[str]) -> Fields:
    """Field paths (``"content"``, ``"tags[*]"``, ``"$"``) in the form LangGraph walks."""
    from langgraph.store.base.embed import tokenize_path  # imports langchain-core: on use

    return [(p, p if p == "$" else tokenize_path(p)) for p in paths]


def field_texts(value: Any, fields: Fields) -> list[tuple[str, str]]:
    """``(path, text)`` to embed for an item; several texts at one path get ``path.i``."""
    from langgraph.store.base.embed import get_text_at_path

    found: list[tuple[str, str]] = []
    for path, tokens in fields:
        texts = get_text_at_path(value, tokens)
        if len(texts) == 1:
            found.append((path, texts[0]))
        else:
            found.extend((f"{path}.{i}", text) for i, text in enumerate(texts))
    return found


EmbedText = tuple[int, str, str]
"""(position of the op in its batch, field path — empty for a query, text)"""


def texts_to_embed(
    ops: Sequence[m.StoreOp], fields: Fields, value_of: Callable[[int], Any]
) -> tuple[list[EmbedText], list[EmbedText]]:
    """What a batch needs embedded: the field texts of puts that carry no vectors (using
    ``fields`` unless the put names its own) and the queries of searches without one."""
    documents: list[EmbedText] = []
    queries: list[EmbedText] = []
    for i, op in enumerate(ops):
        if _wants_vectors(op):
            paths = fields if op.index is None else tokenize_fields(op.index)
            documents.extend((i, path, text) for path, text in field_texts(value_of(i), paths))
        elif op.op == SEARCH and op.query and op.query_vector is None:
            queries.append((i, "", op.query))
    return documents, queries


def attach_vectors(
    ops: Sequence[m.StoreOp],
    documents: Sequence[EmbedText],
    document_vectors: Sequence[Sequence[float]],
    queries: Sequence[EmbedText],
    query_vectors: Sequence[Sequence[float]],
) -> list[m.StoreOp]:
    """The batch with vectors in place; a put with nothing to embed gets an empty list."""
    by_put: dict[int, list[m.FieldVector]] = {}
    for (i, path, _), vector in zip(documents, document_vectors, strict=True):
        by_put.setdefault(i, []).append(m.FieldVector(path, [float(x) for x in vector]))
    by_search = {
        i: [float(x) for x in vector]
        for (i, _, _), vector in zip(queries, query_vectors, strict=True)
    }
    out = []
    for i, op in enumerate(ops):
        if _wants_vectors(op):
            op = dataclasses.replace(op, vectors=by_put.get(i, []))
        elif i in by_search:
            op = dataclasses.replace(op, query_vector=by_search[i])
        out.append(op)
    return out


def _wants_vectors(op: m.StoreOp) -> bool:
    return op.op == PUT and op.value is not None and op.embed and op.vectors is None
