"""Subgraphs checkpoint under their own namespace; an interrupt deep inside one resumes.

A compiled subgraph used as a node writes its checkpoints with a non-empty
``checkpoint_ns`` (``child:<task id>``, and ``child:<id>|grandchild:<id>`` one level
down). The parent's state, read through a new saver with ``subgraphs=True``, must show
the subgraph's own state and its pending interrupt.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot, interrupt

from agentpersistence.client import SidecarSaver

SaverFactory = Callable[[], SidecarSaver]


class Request(TypedDict, total=False):
    request: str
    answer: str
    steps: Annotated[list[str], operator.add]


class Approval(TypedDict, total=False):
    request: str
    answer: str
    trail: Annotated[list[str], operator.add]


def approval_graph(calls: Counter[str], *, nest: bool) -> CompiledStateGraph[Any, None, Any, Any]:
    """prepare → ask (interrupts) → done; with ``nest``, ``ask`` is itself a subgraph."""

    def prepare(state: Approval) -> Approval:
        calls["prepare"] += 1
        return {"trail": ["prepare"]}

    def ask(state: Approval) -> Approval:
        calls["ask"] += 1
        return {"answer": interrupt(f"approve {state['request']}?"), "trail": ["ask"]}

    def done(state: Approval) -> Approval:
        return {"trail": ["done"]}

    builder = StateGraph(Approval)
    builder.add_node("prepare", prepare)
    if nest:
        builder.add_node("ask", approval_graph(calls, nest=False))
    else:
        builder.add_node("ask", ask)
    builder.add_node("done", done)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "ask")
    builder.add_edge("ask", "done")
    return builder.compile()


def parent_graph(
    saver: BaseCheckpointSaver[Any], calls: Counter[str], *, nest: bool = False
) -> CompiledStateGraph[Request, None, Request, Request]:
    """before → child (the approval subgraph) → after."""

    def before(state: Request) -> Request:
        calls["before"] += 1
        return {"steps": ["before"]}

    def after(state: Request) -> Request:
        return {"steps": [f"after:{state['answer']}"]}

    builder = StateGraph(Request)
    builder.add_node("before", before)
    builder.add_node("child", approval_graph(calls, nest=nest))
    builder.add_node("after", after)
    builder.add_edge(START, "before")
    builder.add_edge("before", "child")
    builder.add_edge("child", "after")
    return builder.compile(checkpointer=saver)


def only_subgraph_state(snapshot: StateSnapshot) -> StateSnapshot:
    """The state of the single subgraph a snapshot's only task is running."""
    (task,) = snapshot.tasks
    assert isinstance(task.state, StateSnapshot)
    return task.state


def namespaces(saver: SidecarSaver, thread: RunnableConfig) -> set[str]:
    return {t.config["configurable"]["checkpoint_ns"] for t in saver.list(thread)}


def test_interrupt_inside_a_subgraph_is_resumed_through_a_new_saver(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    out = parent_graph(new_saver(), calls).invoke({"request": "deploy"}, thread)
    assert [i.value for i in out["__interrupt__"]] == ["approve deploy?"]

    second = parent_graph(new_saver(), calls)
    parent = second.get_state(thread, subgraphs=True)
    assert parent.next == ("child",)
    child = only_subgraph_state(parent)
    child_ns = child.config["configurable"]["checkpoint_ns"]
    assert child_ns.startswith("child:")
    assert child.values == {"request": "deploy", "trail": ["prepare"]}
    assert child.next == ("ask",)
    assert [i.value for i in child.interrupts] == ["approve deploy?"]
    assert namespaces(new_saver(), thread) == {"", child_ns}

    final = second.invoke(Command(resume="granted"), thread)

    assert final == {
        "request": "deploy",
        "answer": "granted",
        "steps": ["before", "after:granted"],
    }
    assert calls == {"before": 1, "prepare": 1, "ask": 2}
    assert second.get_state(thread, subgraphs=True).tasks == ()
    child_thread: RunnableConfig = {
        "configurable": {**thread["configurable"], "checkpoint_ns": child_ns}
    }
    child_history = list(parent_graph(new_saver(), calls).get_state_history(child_thread))
    assert [(s.metadata["step"], s.next) for s in child_history if s.metadata] == [
        (3, ()),
        (2, ("done",)),
        (1, ("ask",)),
        (0, ("prepare",)),
        (-1, ("__start__",)),
    ]
    assert child_history[0].values["trail"] == ["prepare", "ask", "done"]
    assert {s.config["configurable"]["checkpoint_ns"] for s in child_history} == {child_ns}


def test_interrupt_two_subgraphs_deep_is_resumed_through_a_new_saver(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    out = parent_graph(new_saver(), calls, nest=True).invoke({"request": "merge"}, thread)
    assert [i.value for i in out["__interrupt__"]] == ["approve merge?"]

    second = parent_graph(new_saver(), calls, nest=True)
    grandchild = only_subgraph_state(only_subgraph_state(second.get_state(thread, subgraphs=True)))
    grandchild_ns = grandchild.config["configurable"]["checkpoint_ns"]
    assert grandchild_ns.startswith("child:")
    assert "|ask:" in grandchild_ns
    assert grandchild.next == ("ask",)
    assert len(namespaces(new_saver(), thread)) == 3

    final = second.invoke(Command(resume="lgtm"), thread)

    assert final["steps"] == ["before", "after:lgtm"]
    assert calls == {"before": 1, "prepare": 2, "ask": 2}


def test_a_thread_of_a_named_actor_reads_its_subgraphs_and_time_travels_on_that_actor(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    """``configurable.actor_id`` scopes threads on agentcore-memory (other backends ignore
    it). LangGraph reads subgraph state with configs that drop it; those reads, and the
    configs handed back for time travel, must stay on the actor."""
    calls: Counter[str] = Counter()
    owned: RunnableConfig = {"configurable": {**thread["configurable"], "actor_id": "user-42"}}
    parent_graph(new_saver(), calls).invoke({"request": "ship"}, owned)

    second = parent_graph(new_saver(), calls)
    parent = second.get_state(owned, subgraphs=True)
    assert parent.config["configurable"]["actor_id"] == "user-42"
    child = only_subgraph_state(parent)
    assert child.values == {"request": "ship", "trail": ["prepare"]}
    assert [i.value for i in child.interrupts] == ["approve ship?"]

    final = second.invoke(Command(resume="yes"), owned)
    assert final["steps"] == ["before", "after:yes"]

    history = list(second.get_state_history(owned))
    first_step = next(s for s in history if s.metadata and s.metadata["step"] == 0)
    assert first_step.config["configurable"]["actor_id"] == "user-42"
    replayed = second.invoke(None, first_step.config)  # from the start of the same thread
    assert [i.value for i in replayed["__interrupt__"]] == ["approve ship?"]
