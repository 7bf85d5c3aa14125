"""The format version a backend's payloads carry (``"ap": n`` in their header), and the refusal
of a payload in a format this sidecar does not read (written by a newer one): never misread.
"""

from __future__ import annotations

from agentpersistence.client.protocol.errors import SidecarError


def unreadable(where: str, what: str, found: object, known: int) -> SidecarError:
    """The error for ``what`` (an event, a step) in ``where``, stored in format ``found``."""
    return SidecarError(
        f"{where}: {what} has format {found!r}; this sidecar reads format {known}: upgrade it"
    )
