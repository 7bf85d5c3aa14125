"""The errors operations answer with, named by the models' error shapes.

State raises :class:`ApiError`; the server finds the shape by its name in the operation's
model and renders it (``wire.error_response``). Messages never quote stored content.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ApiError",
    "conflict",
    "invalid",
    "mismatched_token",
    "not_found",
]

FIELD_VALIDATION_FAILED = "FieldValidationFailed"


class ApiError(Exception):
    """An answer that is an error: ``code`` is the error shape's name, ``fields`` its other
    members (``reason``, ``fieldList`` for a ValidationException)."""

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields


def invalid(
    message: str,
    *,
    reason: str = FIELD_VALIDATION_FAILED,
    fields: Sequence[tuple[str, str]] = (),
) -> ApiError:
    """A ValidationException (HTTP 400); ``fields`` are (member path, problem) pairs."""
    field_list = [{"name": name, "message": problem} for name, problem in fields] or None
    return ApiError("ValidationException", message, reason=reason, fieldList=field_list)


def mismatched_token(operation: str) -> ApiError:
    return invalid(
        f"The clientToken was already used for a {operation} request with other parameters; "
        "send a new token for a new request",
        reason="IdempotentParameterMismatchException",
    )


def not_found(message: str) -> ApiError:
    return ApiError("ResourceNotFoundException", message)


def conflict(message: str) -> ApiError:
    return ApiError("ConflictException", message)
