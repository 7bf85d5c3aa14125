"""The sidecar never deserializes a stored value.

A pickle whose loading would create a marker file is stored as a checkpoint and as a
pending write; the bytes come back identical and the marker never appears, so nothing in
the sidecar unpickled them.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from agentpersistence.client._transport import SocketTransport
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import routes
from rig.sidecar import SidecarProcess


class Tripwire:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_stored_pickles_are_never_loaded(any_sidecar: SidecarProcess, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Tripwire(marker))
    transport = SocketTransport(any_sidecar.socket)
    record = m.CheckpointRecord(
        "opaque-thread", "", "1f0-0001", None, "pickle", payload, b'{"source":"input"}'
    )
    transport.call(routes.CHECKPOINT_PUT, m.PutRequest(record), 5)
    write = m.PendingWrite("task", 0, "channel", "pickle", payload)
    transport.call(
        routes.CHECKPOINT_PUT_WRITES,
        m.PutWritesRequest("opaque-thread", "", "1f0-0001", [write]),
        5,
    )
    got = transport.call(routes.CHECKPOINT_GET_TUPLE, m.GetTupleRequest("opaque-thread"), 5).record
    listed = transport.call(routes.CHECKPOINT_LIST, m.ListRequest("opaque-thread"), 5).records
    transport.close()

    assert got is not None
    assert (got.type, got.checkpoint) == ("pickle", payload)
    assert [(w.type, w.value) for w in got.writes] == [("pickle", payload)]
    assert [r.checkpoint for r in listed] == [payload]
    assert not marker.exists(), "the sidecar unpickled a stored value"
    # The tripwire is live: loading it here does create the marker.
    pickle.loads(payload)
    assert marker.exists()
