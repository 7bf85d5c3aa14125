"""``clientToken`` handling: a repeated token replays the first answer instead of acting again.

The same token with other parameters is refused (a ValidationException whose reason is
``IdempotentParameterMismatchException``), so a retry after a lost response never creates a
second resource, and a reused token never silently drops a different request.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from .errors import mismatched_token

__all__ = ["Tokens"]


class Tokens:
    """The answers given to each (operation, clientToken) within one scope."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def replay(
        self, operation: str, token: str | None, params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The first answer to this token, None if it is new (or absent)."""
        if token is None:
            return None
        seen = self._answers.get((operation, token))
        if seen is None:
            return None
        fingerprint, answer = seen
        if fingerprint != _fingerprint(params):
            raise mismatched_token(operation)
        return copy.deepcopy(answer)

    def remember(
        self, operation: str, token: str | None, params: Mapping[str, Any], answer: dict[str, Any]
    ) -> None:
        if token is not None:
            self._answers[(operation, token)] = (_fingerprint(params), copy.deepcopy(answer))


def _fingerprint(params: Mapping[str, Any]) -> str:
    """The request without its token, canonically encoded."""
    rest = {k: v for k, v in params.items() if k != "clientToken"}
    return json.dumps(rest, sort_keys=True, default=_bytes_as_text)


def _bytes_as_text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    raise TypeError(f"cannot fingerprint {type(value).__name__}")
