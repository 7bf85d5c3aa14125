"""agentpersistence client: LangGraph persistence through the agentpersistence sidecar.

``SidecarSaver`` is a LangGraph checkpointer, ``SidecarStore`` a long-term memory store and
``SidecarCache`` a node cache; each serializes values in this process and sends them to
the sidecar over a unix socket. Errors raised by it are all
``SidecarError`` subclasses, each saying what to do next.
"""

from typing import TYPE_CHECKING, Any

from .protocol.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    NotConfigured,
    PayloadTooLarge,
    PeerNotAllowed,
    ProtocolMismatch,
    RequestRejected,
    SidecarError,
    SidecarUnavailable,
    UnknownRoute,
)

if TYPE_CHECKING:
    from .cache import SidecarCache
    from .checkpoint import SidecarSaver
    from .store import SidecarStore

# The adapters pull in LangGraph (and langchain-core): load them on first use, so that
# importing the protocol package alone (as the sidecar does) stays cheap.
_ADAPTERS = {"SidecarCache": ".cache", "SidecarSaver": ".checkpoint", "SidecarStore": ".store"}


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        import importlib

        value = getattr(importlib.import_module(_ADAPTERS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendUnavailable",
    "DeadlineExceeded",
    "NotConfigured",
    "PayloadTooLarge",
    "PeerNotAllowed",
    "ProtocolMismatch",
    "RequestRejected",
    "SidecarCache",
    "SidecarError",
    "SidecarSaver",
    "SidecarStore",
    "SidecarUnavailable",
    "UnknownRoute",
]
