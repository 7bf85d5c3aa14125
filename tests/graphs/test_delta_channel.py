"""``DeltaChannel`` state is rebuilt from the chain of stored checkpoints and writes.

A delta channel stores only a snapshot every few updates; in between, LangGraph walks
the parent chain (``get_tuple`` after ``get_tuple``) and replays the pending writes. Every
turn here runs through a new saver, and each checkpoint's values must equal what
LangGraph's own ``InMemorySaver`` gives for the same turns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agentpersistence.client import SidecarSaver

SaverFactory = Callable[[], SidecarSaver]
TURNS = 8


def extend(notes: list[str] | None, batches: Sequence[list[str]]) -> list[str]:
    """A batching-invariant reducer: append every batch in order."""
    return [*(notes or []), *(note for batch in batches for note in batch)]


class Notebook(TypedDict, total=False):
    notes: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=3)]
    turn: int


def notebook_graph(
    saver: BaseCheckpointSaver[Any],
) -> CompiledStateGraph[Notebook, None, Notebook, Notebook]:
    def write(state: Notebook) -> Notebook:
        turn = state.get("turn", 0)
        return {"notes": [f"turn {turn}"], "turn": turn + 1}

    builder = StateGraph(Notebook)
    builder.add_node("write", write)
    builder.add_edge(START, "write")
    return builder.compile(checkpointer=saver)


def reference_history(thread: RunnableConfig) -> list[Any]:
    graph = notebook_graph(InMemorySaver())
    for _ in range(TURNS):
        graph.invoke({}, thread)
    return [s.values for s in graph.get_state_history(thread)]


def test_every_checkpoint_of_a_delta_channel_reads_back_as_langgraph_wrote_it(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    for _ in range(TURNS):
        notebook_graph(new_saver()).invoke({}, thread)

    graph = notebook_graph(new_saver())
    assert graph.get_state(thread).values["notes"] == [f"turn {i}" for i in range(TURNS)]
    assert [s.values for s in graph.get_state_history(thread)] == reference_history(thread)


async def test_a_delta_channel_through_the_async_api(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    for _ in range(TURNS):
        async with new_saver() as saver:
            await notebook_graph(saver).ainvoke({}, thread)

    async with new_saver() as saver:
        graph = notebook_graph(saver)
        state = await graph.aget_state(thread)
        history = [s.values async for s in graph.aget_state_history(thread)]
    assert state.values["notes"] == [f"turn {i}" for i in range(TURNS)]
    assert history == reference_history(thread)


def test_a_copied_thread_rebuilds_the_same_delta_state(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    for _ in range(TURNS):
        notebook_graph(new_saver()).invoke({}, thread)
    source = thread["configurable"]["thread_id"]
    copy: RunnableConfig = {"configurable": {"thread_id": f"{source}-copy"}}

    new_saver().copy_thread(source, copy["configurable"]["thread_id"])

    graph = notebook_graph(new_saver())
    assert graph.get_state(copy).values == graph.get_state(thread).values
    out = graph.invoke({}, copy)
    assert out["notes"] == [f"turn {i}" for i in range(TURNS + 1)]
