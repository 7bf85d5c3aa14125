"""LangGraph's own checkpointer conformance suite, over a real unix socket, per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from agentpersistence.client import SidecarSaver
from rig.sidecar import SidecarProcess


async def test_langgraph_conformance_suite(any_sidecar: SidecarProcess) -> None:
    @checkpointer_test(name=f"SidecarSaver[{any_sidecar.config['checkpointer']['backend']}]")
    async def factory() -> AsyncIterator[SidecarSaver]:
        with SidecarSaver(any_sidecar.socket) as saver:
            yield saver

    report = await validate(factory)
    results = report.to_dict()["results"]
    assert {cap.value for cap in ALL_CAPABILITIES} == set(results)
    detected = {name for name, r in results.items() if r["detected"]}
    failures = {name: r["failures"] for name, r in results.items() if r["tests_failed"]}
    assert detected == set(results), f"not detected: {set(results) - detected}"
    assert failures == {}
    assert sum(r["tests_passed"] for r in results.values()) >= 80
    assert report.conformance_level() == "FULL"
