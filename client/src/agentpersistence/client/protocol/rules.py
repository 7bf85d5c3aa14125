"""Storage rules every backend follows, as pure functions (LangGraph's semantics, once).

Backends import these instead of re-deciding what a filter matches or which pending write
wins, so the memory, Valkey and later backends answer the same questions the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import RequestRejected

KEEP_LATEST = "keep_latest"
DELETE = "delete"
PRUNE_STRATEGIES = (KEEP_LATEST, DELETE)

MAX_PAGE = 1000


def metadata_matches(metadata: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    """A checkpoint matches when every filter key's metadata value equals the filter's."""
    return all(metadata.get(key) == value for key, value in filter.items())


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Decode ``raw`` as a JSON object, or refuse it naming ``what`` it was meant to be."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise RequestRejected(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RequestRejected(f"{what} must be a JSON object")
    return value


def parse_filter(raw: bytes | None) -> dict[str, Any] | None:
    """Decode a list filter (a JSON object), rejecting anything else."""
    return None if raw is None else json_object(raw, "a list filter") or None


def parse_metadata(raw: bytes) -> dict[str, Any]:
    return json_object(raw, "checkpoint metadata")


def write_replaces(idx: int) -> bool:
    """Whether a pending write replaces a stored one with the same ``(task_id, idx)``.

    Regular writes (``idx >= 0``) are idempotent: the first stored copy wins, so a retried
    task cannot reorder them. LangGraph's special channels (error, interrupt, scheduled,
    resume) use negative indexes and always take the newest value.
    """
    return idx < 0


def check_page_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise RequestRejected(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    return limit


def check_prune_strategy(strategy: str) -> str:
    if strategy not in PRUNE_STRATEGIES:
        raise RequestRejected(
            f"unknown prune strategy {strategy!r}; use one of {', '.join(PRUNE_STRATEGIES)}"
        )
    return strategy
