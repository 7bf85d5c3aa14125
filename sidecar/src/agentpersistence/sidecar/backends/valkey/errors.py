"""The one mapping from valkey-py's exceptions to the protocol's errors.

Unreachable, overloaded, failing-over or refusing servers become ``BackendUnavailable``,
naming the server by host, port and database, never by the URL (it may carry a password).
Anything else Valkey answers is a bug here and becomes an internal ``SidecarError``. Messages
are cut short; they never include command arguments (so no payloads).

The store's search index adds its own cases: a server without a search module, an index that
was never created, and an existing index whose definition differs from the configured one.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

from valkey import exceptions as vx

from agentpersistence.client.protocol.errors import BackendUnavailable, SidecarError

_MAX_DETAIL = 200

_UNKNOWN_COMMAND = ("unknown command",)
_UNKNOWN_INDEX = ("unknown index", "no such index")
_MISSING = ("not found", "does not exist")


class IndexMismatch(BackendUnavailable):
    """The store's index exists with another definition than the configured one."""

    hint = (
        "Drop the index (FT.DROPINDEX, keeping the documents) so it is created again from the "
        "config, or give this store another keyPrefix."
    )

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(
            f"the search index {name!r} exists with another definition: " + "; ".join(problems)
        )


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
    if isinstance(exc, vx.NoPermissionError) or _ACL_IN_SCRIPT in str(exc):
        return permission_refused(str(exc), where)
    if isinstance(exc, vx.AuthenticationError | vx.AuthorizationError):
        return BackendUnavailable(
            f"Valkey at {where} refused the credentials ({detail}): check the user and "
            "password the sidecar logs in with (the URL's user:password, or the files of "
            "passwordFile and usernameFile) against the server's ACL users"
        )
    if isinstance(exc, vx.BusyLoadingError):
        return BackendUnavailable(f"Valkey at {where} is loading its dataset; retry shortly")
    if isinstance(exc, _UNREACHABLE):
        return BackendUnavailable(f"Valkey at {where} is unreachable: {detail}")
    # valkey-py raises a plain ClusterError only when a command's redirections ran out.
    if isinstance(exc, vx.TryAgainError) or type(exc) is vx.ClusterError:
        return BackendUnavailable(
            f"Valkey cluster at {where} is moving a slot this call needs ({detail}); "
            "retry the call once the move is done"
        )
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


def too_few_replicas(where: str, acknowledged: int, wanted: int, timeout_ms: int) -> SidecarError:
    """A write the primary applied but fewer than ``waitReplicas`` replicas confirmed."""
    return BackendUnavailable(
        f"Valkey at {where}: {acknowledged} of the {wanted} replicas required (waitReplicas) "
        f"confirmed the write within {timeout_ms} ms; it is on the primary but could be lost "
        "in a failover. Retry the call (writes are idempotent), and check the replicas' "
        "replication link (INFO replication)"
    )


def wait_on_cluster(where: str) -> SidecarError:
    return BackendUnavailable(
        f"Valkey at {where} runs in cluster mode, where waitReplicas is not supported: "
        "set waitReplicas to 0, or use a standalone primary with replicas"
    )


_ACL_IN_SCRIPT = "ACL failure in script"
_REFUSED_COMMAND = re.compile(r"permissions to run the '([^']+)' command")


class PermissionRefused(BackendUnavailable):
    """The ACL user the sidecar logs in as may not run a command or reach a key it needs."""

    hint = "Grant the user what the backend needs (docs/reliability.md lists the minimal ACLs)."


def permission_refused(message: str, where: str) -> PermissionRefused:
    """The error for a ``NOPERM`` reply (or an ACL failure inside a script), naming the
    refused command, or saying that a key is outside the user's key patterns."""
    command = _REFUSED_COMMAND.search(message)
    if command is not None:
        return PermissionRefused(
            f"Valkey at {where} refused the command {command.group(1).upper()!r} to the user "
            f"the sidecar logs in as: add +{command.group(1)} to that user's ACL (the "
            "backends' minimal ACLs are in docs/reliability.md)"
        )
    return PermissionRefused(
        f"Valkey at {where} refused the user the sidecar logs in as access to a key: its "
        f"key patterns must cover the backend's keyPrefix (~PREFIX:*) ({_cut(message)})"
    )


def _detail(exc: BaseException) -> str:
    return _cut(str(exc) or type(exc).__name__)


def is_unknown_command(message: str) -> bool:
    return any(phrase in message.lower() for phrase in _UNKNOWN_COMMAND)


def is_unknown_index(message: str) -> bool:
    text = message.lower()
    if any(phrase in text for phrase in _UNKNOWN_INDEX):
        return True
    return "index" in text and any(phrase in text for phrase in _MISSING)


def no_search_module(index: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"cannot create the search index {index!r}: the Valkey server has no search module; "
        "load valkey-search (or RediSearch), or let the sidecar search exactly (bounded by "
        "the store's maxExactSearch)"
    )


def search_refused(message: str, index: str, where: str) -> SidecarError:
    """The error for a refused ``FT.SEARCH``: a missing index names the way to create it."""
    if is_unknown_index(message):
        return BackendUnavailable(
            f"the search index {index!r} does not exist on Valkey at {where}; create it with "
            "the sidecar's --provision or let the operator reconcile the AgentPersistence"
        )
    return SidecarError(f"Valkey at {where} refused a vector search: {_cut(message)}")


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."
