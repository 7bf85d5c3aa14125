"""The same client adapter over the in-process transport: LangGraph's suite, no socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate

from agentpersistence.client import RequestRejected, SidecarSaver
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import routes
from agentpersistence.sidecar.inprocess import InProcessTransport, open_saver
from agentpersistence.sidecar.settings import parse_config


async def test_conformance_in_process() -> None:
    @checkpointer_test(name="SidecarSaver[in-process memory]")
    async def factory() -> AsyncIterator[SidecarSaver]:
        saver = open_saver({"checkpointer": {"backend": "memory"}})
        yield saver
        saver.close()

    report = await validate(factory)
    assert report.conformance_level() == "FULL"


def test_sync_calls_and_typed_errors_in_process() -> None:
    transport = InProcessTransport(parse_config({"checkpointer": {"backend": "memory"}}))
    try:
        got = transport.call(routes.CHECKPOINT_GET_TUPLE, m.GetTupleRequest("t"), 5)
        assert got == m.GetTupleResponse(None)
        with pytest.raises(RequestRejected, match="unknown prune strategy 'x'") as caught:
            transport.call(routes.CHECKPOINT_PRUNE, m.PruneRequest(["t"], "x"), 5)
        assert caught.type is RequestRejected
    finally:
        transport.close()
