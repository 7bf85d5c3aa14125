"""Vector search exactly in the sidecar, within a bound: the one rule for every store backend
that has no usable vector index (Valkey without a search module, DynamoDB without its index).

Items are scored with ``store_rules.similarity`` (an item scores as its best field vector),
ranked best first, and the page is cut at ``offset``/``limit``; as in the memory backend,
when fewer than ``limit`` items with vectors match, items without vectors (in search order)
fill the page. A search that would examine more than ``maxExactSearch`` items is refused
with :func:`too_many`, naming the setting; it is never answered differently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import RequestRejected

T = TypeVar("T")
Vectors = Callable[[T], Sequence[Sequence[float]]]


def too_many(bound: int, prefix: Sequence[str], how: str) -> RequestRejected:
    """The refusal of a search that needs more than ``bound`` items examined here."""
    return RequestRejected(
        f"this search would examine more than {bound} items under the namespace "
        f"prefix {list(prefix)} (vector search runs {how}); the store's maxExactSearch "
        "setting bounds it: narrow the prefix or the filter, or raise maxExactSearch"
    )


def best_similarity(
    distance: str, query: Sequence[float], vectors: Sequence[Sequence[float]]
) -> float:
    for vector in vectors:
        if len(vector) != len(query):
            raise RequestRejected(
                f"the query vector has {len(query)} dimensions, a stored one {len(vector)}"
            )
    return max(rules.similarity(distance, query, v) for v in vectors)


def rank(
    found: Sequence[T],
    vectors_of: Vectors[T],
    query: Sequence[float],
    distance: str,
    offset: int,
    limit: int,
) -> list[tuple[float | None, T]]:
    """The page of ``found`` (matching items, in search order) for ``query``."""
    scored = [
        (best_similarity(distance, query, vectors), f) for f in found if (vectors := vectors_of(f))
    ]
    scored.sort(key=lambda pair: pair[0], reverse=True)
    page: list[tuple[float | None, T]] = list(scored[offset : offset + limit])
    unscored = [(None, f) for f in found if not vectors_of(f)]
    return page + unscored[: limit - len(page)]
