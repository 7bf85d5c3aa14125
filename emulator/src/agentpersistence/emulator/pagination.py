"""Pages of a list and their opaque ``nextToken``.

A token carries the sort key of the last item it returned and the scope it belongs to (the
operation and what it lists). The next page starts after that key, so a token stays valid
while items are added or deleted; a token from another scope, or not made here, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from .errors import invalid

__all__ = ["Key", "page", "page_of", "scope_of"]

T = TypeVar("T")
Key = tuple[float, ...]


def scope_of(*parts: object) -> str:
    """A short digest naming what a token lists (parts are JSON-encoded first)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def page(
    items: Sequence[T],
    key: Callable[[T], Key],
    *,
    scope: str,
    token: str | None,
    limit: int,
    descending: bool = True,
) -> tuple[list[T], str | None]:
    """One page of ``items`` (already sorted by ``key`` in that direction) and the token
    for the next one, None when nothing follows."""
    if token is not None:
        after = _decode(token, scope)
        if descending:
            items = [item for item in items if key(item) < after]
        else:
            items = [item for item in items if key(item) > after]
    chosen = list(items[:limit])
    if len(items) <= limit or not chosen:
        return chosen, None
    return chosen, _encode(scope, key(chosen[-1]))


def page_of(
    items: Sequence[T],
    key: Callable[[T], Key],
    params: Mapping[str, object],
    *,
    scope: str,
    default_limit: int,
) -> tuple[list[T], str | None]:
    """:func:`page` (newest first) for a request's ``nextToken`` and ``maxResults``."""
    token = params.get("nextToken")
    limit = params.get("maxResults", default_limit)
    assert token is None or isinstance(token, str)  # validated against the input shape
    assert isinstance(limit, int)
    return page(items, key, scope=scope, token=token, limit=limit)


def _encode(scope: str, key: Key) -> str:
    document = json.dumps({"s": scope, "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode("ascii")


def _decode(token: str, scope: str) -> Key:
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        key = document["k"]
        if document["s"] != scope or not isinstance(key, list):
            raise ValueError("another scope")
        if not all(isinstance(part, int | float) and not isinstance(part, bool) for part in key):
            raise ValueError("not a key")
        return tuple(key)
    except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError):
        raise invalid(
            "The nextToken is not valid for this request; start again without it"
        ) from None
