"""Who may talk to the sidecar over its socket.

The socket (mode 0660, in a volume shared by the pod's containers) admits every process of
the pod that runs with the socket's group or as its owner: the pod is the trust boundary.
For pods that also run containers the agent should not share its state with (untrusted
helpers, debugging shells), ``--allow-uid`` and ``--allow-gid`` narrow it: the kernel's
record of a connecting process (``SO_PEERCRED``) must name an allowed uid or gid, or the
connection is answered ``peer_not_allowed`` and closed. Only the listed ids are admitted
(list the sidecar's own uid too if tools inside its container use the socket).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class PeerPolicy:
    """The uids and gids allowed to connect (either may admit a peer)."""

    uids: frozenset[int]
    gids: frozenset[int]

    @classmethod
    def of(cls, uids: Iterable[int] | None, gids: Iterable[int] | None) -> PeerPolicy | None:
        """The policy for these lists; None (everyone the socket admits) when both are empty."""
        allowed_uids, allowed_gids = frozenset(uids or ()), frozenset(gids or ())
        if not allowed_uids and not allowed_gids:
            return None
        return cls(allowed_uids, allowed_gids)

    def admits(self, peer: Peer) -> bool:
        return peer.uid in self.uids or peer.gid in self.gids

    def describe(self) -> str:
        return f"uids {sorted(self.uids)} and gids {sorted(self.gids)}"


def peer_of(transport: asyncio.BaseTransport) -> Peer | None:
    """The connecting process of a unix-socket transport, from the kernel (None elsewhere)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    pid, uid, gid = _CREDENTIALS.unpack(raw)
    return Peer(pid, uid, gid)
