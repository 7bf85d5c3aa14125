"""The one mapping from valkey-py's exceptions to the protocol's errors.

Unreachable, overloaded, failing-over or refusing servers become ``BackendUnavailable``,
naming the server by host, port and database, never by the URL (it may carry a password).
Anything else Valkey answers is a bug here and becomes an internal ``SidecarError``. Messages
are cut short; they never include command arguments (so no payloads).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from valkey import exceptions as vx

from agentpersistence.client.protocol.errors import BackendUnavailable, SidecarError

_MAX_DETAIL = 200

_OVERLOADED = (vx.OutOfMemoryError, vx.ReadOnlyError, vx.ClusterDownError, vx.TryAgainError)
_UNREACHABLE = (vx.ConnectionError, vx.TimeoutError, asyncio.TimeoutError, OSError)


def describe_url(url: str) -> str:
    """``host:port/db`` of a Valkey URL (the path of a unix socket), without user or password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        host, port = parts.hostname or "localhost", parts.port or 6379
    except ValueError:
        return "(unparsable URL)"
    db = parts.path.strip("/") or "0"
    return f"{host}:{port}/{db}"


def translate(exc: BaseException, where: str) -> SidecarError:
    """The protocol error for an exception raised while talking to Valkey at ``where``."""
    detail = _detail(exc)
    if isinstance(exc, vx.AuthenticationError | vx.AuthorizationError | vx.NoPermissionError):
        return BackendUnavailable(f"Valkey at {where} refused the credentials: {detail}")
    if isinstance(exc, vx.BusyLoadingError):
        return BackendUnavailable(f"Valkey at {where} is loading its dataset; retry shortly")
    if isinstance(exc, _UNREACHABLE):
        return BackendUnavailable(f"Valkey at {where} is unreachable: {detail}")
    if isinstance(exc, _OVERLOADED):
        return BackendUnavailable(f"Valkey at {where} cannot take writes now: {detail}")
    if isinstance(exc, vx.ValkeyClusterException):  # e.g. slots not covered
        return BackendUnavailable(f"Valkey cluster at {where} is not ready: {detail}")
    if isinstance(exc, vx.AskError):  # MovedError too: a cluster node, not a single server
        return BackendUnavailable(
            f"Valkey at {where} is a cluster node that redirected a command; "
            "point the URL at a standalone server or a cluster-aware proxy"
        )
    return SidecarError(f"Valkey at {where} answered an unexpected error: {detail}")


def _detail(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
