"""The one error hierarchy of the wire protocol, and its mapping to HTTP statuses.

Every error that crosses the socket travels as ``(status, {"code", "message"})``; both
ends translate with :func:`error_for` and :meth:`SidecarError.to_wire`, so a code means the
same thing in the sidecar's logs, in an HTTP response and in the exception the agent sees.
"""

from __future__ import annotations

from typing import Any, ClassVar

_MAX_MESSAGE = 2000


class SidecarError(Exception):
    """Base of every error raised by the agentpersistence client or sidecar."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    hint: ClassVar[str] = (
        "This is a bug in agentpersistence; please report it with the sidecar's log."
    )

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({self.code}). {self.hint}" if self.hint else self.message

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message[:_MAX_MESSAGE]}


class RequestRejected(SidecarError):
    """The sidecar refused the request as sent; retrying it unchanged will fail again."""

    code = "invalid_request"
    status = 400
    hint = "Fix the argument the message names; retrying the same call will fail again."


class UnknownRoute(RequestRejected):
    code = "unknown_route"
    status = 404
    hint = "The client and the sidecar come from different releases; align their versions."


class PayloadTooLarge(RequestRejected):
    code = "payload_too_large"
    status = 413
    hint = "Raise the sidecar's --max-body-bytes or store less state per checkpoint."


class ProtocolMismatch(RequestRejected):
    code = "protocol_mismatch"
    status = 426
    hint = "The client and the sidecar speak different protocol versions; upgrade the older one."


class NotConfigured(RequestRejected):
    code = "not_configured"
    status = 409
    hint = "Add the missing block (checkpointer, store or cache) to the sidecar's config file."


class PeerNotAllowed(SidecarError):
    """The sidecar admits only some users and groups, and this process is not among them."""

    code = "peer_not_allowed"
    status = 403
    hint = (
        "Run the agent under a uid or gid the sidecar allows (--allow-uid/--allow-gid; "
        "spec.sidecar.allowedPeers in the AgentPersistence)."
    )


class DeadlineExceeded(SidecarError):
    """The call did not finish within its deadline; it may or may not have been applied."""

    code = "deadline_exceeded"
    status = 504
    hint = "Raise the client's timeout, or check the sidecar's backend latency in its metrics."


class SidecarUnavailable(SidecarError):
    """The sidecar could not be reached (socket missing, refused, or the connection dropped)."""

    code = "unavailable"
    status = 503
    hint = (
        "Check that the sidecar container is running and that AGENTPERSISTENCE_SOCKET "
        "points at its socket; calls succeed again once it is back."
    )


class BackendUnavailable(SidecarError):
    """The sidecar is up but its storage backend could not be reached."""

    code = "backend_unavailable"
    status = 502
    hint = (
        "Check the backend's address and credentials in the sidecar config, "
        "and its readiness at /readyz."
    )


_BY_CODE: dict[str, type[SidecarError]] = {
    cls.code: cls
    for cls in (
        SidecarError,
        RequestRejected,
        UnknownRoute,
        PayloadTooLarge,
        ProtocolMismatch,
        NotConfigured,
        PeerNotAllowed,
        DeadlineExceeded,
        SidecarUnavailable,
        BackendUnavailable,
    )
}


def error_for(status: int, body: object) -> SidecarError:
    """Rebuild the typed error that a sidecar sent as ``(status, body)``."""
    if isinstance(body, dict):
        code, message = body.get("code"), body.get("message")
        cls = _BY_CODE.get(code) if isinstance(code, str) else None
        if cls is not None and isinstance(message, str):
            return cls(message)
    text = repr(body)[:200]
    if 400 <= status < 500:
        return RequestRejected(f"sidecar answered {status}: {text}")
    return SidecarError(f"sidecar answered {status}: {text}")


def all_error_types() -> tuple[type[SidecarError], ...]:
    return tuple(_BY_CODE.values())
