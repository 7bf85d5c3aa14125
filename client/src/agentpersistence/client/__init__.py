"""agentpersistence client: LangGraph persistence through the agentpersistence sidecar.

``SidecarSaver`` is a LangGraph checkpointer; it serializes values in this process and
sends opaque bytes to the sidecar over a unix socket. Errors raised by it are all
``SidecarError`` subclasses, each saying what to do next.
"""

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

__all__ = [
    "BackendUnavailable",
    "DeadlineExceeded",
    "NotConfigured",
    "PayloadTooLarge",
    "ProtocolMismatch",
    "RequestRejected",
    "SidecarError",
    "SidecarSaver",
    "SidecarUnavailable",
    "UnknownRoute",
]
