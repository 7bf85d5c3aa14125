"""A parallel step where one node fails: the nodes that succeeded are not run again.

LangGraph stores each finished task's writes as pending writes of the step's checkpoint,
and the failure as an error write. Resuming after the cause is fixed, through a new
saver, must run only the failed node: that is only possible if the sidecar kept them.
"""

from __future__ import annotations

import operator
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.types import ERROR
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agentpersistence.client import SidecarSaver
from rig.sidecar import SidecarProcess

SaverFactory = Callable[[], SidecarSaver]


class Log(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


class Outage(Exception):
    """The flaky node's dependency is down."""


class WatchedSaver(SidecarSaver):
    """A saver that lets the failing node wait until its siblings' writes are stored.

    When a task fails, LangGraph stops waiting for the step's other tasks; a sibling that
    has not finished by then loses its writes and runs again on resume. Waiting makes the
    test say what it means: siblings that finished are not re-run.
    """

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self._stored: set[str] = set()
        self._changed = threading.Condition()

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        super().put_writes(config, writes, task_id, task_path)
        with self._changed:
            self._stored.update(value[0] for channel, value in writes if channel == "log")
            self._changed.notify_all()

    def wait_stored(self, names: set[str]) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: names <= self._stored, timeout=10)


Graph = CompiledStateGraph[Log, None, Log, Log]


def fan_graph(
    saver: SidecarSaver,
    calls: Counter[str],
    *,
    broken: bool,
    siblings: set[str] | None = None,
) -> Graph:
    """START → (fetch, lookup, flaky) in parallel → join; ``flaky`` fails while ``broken``.

    Before failing, ``flaky`` waits until ``siblings`` have stored their writes.
    """

    def node(state: Log, config: RunnableConfig) -> Log:
        name = config["metadata"]["langgraph_node"]
        calls[name] += 1
        if name == "flaky" and broken:
            if siblings:
                assert isinstance(saver, WatchedSaver)
                saver.wait_stored(siblings)
            raise Outage(f"{name} is down (attempt {calls[name]})")
        return {"log": [name]}

    builder = StateGraph(Log)
    for name in ("fetch", "lookup", "flaky", "join"):
        builder.add_node(name, node)
    for name in ("fetch", "lookup", "flaky"):
        builder.add_edge(START, name)
    builder.add_edge(["fetch", "lookup", "flaky"], "join")
    return builder.compile(checkpointer=saver)


def test_successful_nodes_do_not_rerun_when_the_failed_one_is_retried(
    any_sidecar: SidecarProcess, new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    with WatchedSaver(any_sidecar.socket) as watched, pytest.raises(Outage, match="attempt 1"):
        fan_graph(watched, calls, broken=True, siblings={"fetch", "lookup"}).invoke(
            {"log": []}, thread
        )
    assert calls == {"fetch": 1, "lookup": 1, "flaky": 1}

    state = fan_graph(new_saver(), calls, broken=True).get_state(thread)
    assert state.next == ("flaky",)
    tasks = {t.name: t for t in state.tasks}
    assert tasks["fetch"].result == {"log": ["fetch"]}
    assert tasks["lookup"].result == {"log": ["lookup"]}
    assert "flaky is down" in str(tasks["flaky"].error)
    stored = new_saver().get_tuple(thread)
    assert stored is not None
    channels = Counter(channel for _, channel, _ in stored.pending_writes or ())
    assert channels["log"] == 2
    assert channels[ERROR] == 1

    out = fan_graph(new_saver(), calls, broken=False).invoke(None, thread)

    assert sorted(out["log"][:3]) == ["fetch", "flaky", "lookup"]
    assert out["log"][3:] == ["join"]
    assert calls == {"fetch": 1, "lookup": 1, "flaky": 2, "join": 1}


def test_a_failure_that_repeats_replaces_the_stored_error(
    any_sidecar: SidecarProcess, new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    with WatchedSaver(any_sidecar.socket) as watched, pytest.raises(Outage, match="attempt 1"):
        fan_graph(watched, calls, broken=True, siblings={"fetch", "lookup"}).invoke(
            {"log": []}, thread
        )
    with pytest.raises(Outage, match="attempt 2"):
        fan_graph(new_saver(), calls, broken=True).invoke(None, thread)

    state = fan_graph(new_saver(), calls, broken=True).get_state(thread)
    flaky_id = next(t.id for t in state.tasks if t.name == "flaky")
    stored = new_saver().get_tuple(thread)
    assert stored is not None
    errors = [
        (task, str(value))
        for task, channel, value in stored.pending_writes or ()
        if channel == ERROR
    ]
    assert errors == [(flaky_id, "Outage('flaky is down (attempt 2)')")]
    assert state.next == ("flaky",)

    out = fan_graph(new_saver(), calls, broken=False).invoke(None, thread)

    assert out["log"][-1] == "join"
    assert calls == {"fetch": 1, "lookup": 1, "flaky": 3, "join": 1}
