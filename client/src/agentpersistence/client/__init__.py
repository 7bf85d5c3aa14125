"""agentpersistence client: LangGraph persistence through the agentpersistence sidecar.

``SidecarSaver`` is a LangGraph checkpointer, ``SidecarStore`` a long-term memory store and
``SidecarCache`` a node cache; each serializes values in this process and sends them to
the sidecar over a unix socket. Errors raised by it are all
``SidecarError`` subclasses, each saying what to do next.
"""

from .cache import SidecarCache
from .checkpoint import SidecarSaver
from .protocol.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    NotConfigured,
    PayloadTooLarge,
    ProtocolMismatch,
    RequestRejected,
    SidecarError,
    SidecarUnavailable,
    UnknownRoute,
)
from .store import SidecarStore

__all__ = [
    "BackendUnavailable",
    "DeadlineExceeded",
    "NotConfigured",
    "PayloadTooLarge",
    "ProtocolMismatch",
    "RequestRejected",
    "SidecarCache",
    "SidecarError",
    "SidecarSaver",
    "SidecarStore",
    "SidecarUnavailable",
    "UnknownRoute",
]
