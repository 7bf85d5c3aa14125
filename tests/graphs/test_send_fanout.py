"""Map-reduce with ``Send``: the packets, each branch's writes and the reduction are stored.

Sends are pending writes of the checkpoint that scheduled them; a resume in another
saver must find them there, with their arguments, to run the same branches.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.types import TASKS
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Send, interrupt

from agentpersistence.client import SidecarSaver

SaverFactory = Callable[[], SidecarSaver]


class Jokes(TypedDict, total=False):
    subjects: list[str]
    jokes: Annotated[list[str], operator.add]
    best: str


class Assignment(TypedDict):
    subject: str


Graph = CompiledStateGraph[Jokes, None, Jokes, Jokes]


def jokes_graph(
    saver: BaseCheckpointSaver[Any],
    calls: Counter[str],
    *,
    ask_about: str | None = None,
    interrupt_before: list[str] | None = None,
) -> Graph:
    """START fans out one ``write`` per subject; ``pick`` reduces the jokes to the best."""

    def fan_out(state: Jokes) -> list[Send]:
        return [Send("write", Assignment(subject=s)) for s in state["subjects"]]

    def write(state: Assignment) -> Jokes:
        subject = state["subject"]
        calls[subject] += 1
        if subject == ask_about:
            subject = interrupt(f"is a joke about {subject} fine?")
        return {"jokes": [f"joke about {subject}"]}

    def pick(state: Jokes) -> Jokes:
        calls["pick"] += 1
        return {"best": max(state["jokes"])}

    builder = StateGraph(Jokes)
    builder.add_node("write", write)
    builder.add_node("pick", pick)
    builder.add_conditional_edges(START, fan_out, ["write"])
    builder.add_edge("write", "pick")
    builder.add_edge("pick", END)
    return builder.compile(checkpointer=saver, interrupt_before=interrupt_before)


def test_fan_out_reduces_every_branch_and_stores_each_step(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    saver = new_saver()
    graph = jokes_graph(saver, calls)

    out = graph.invoke({"subjects": ["cats", "dogs", "bats"]}, thread)

    assert out["jokes"] == ["joke about cats", "joke about dogs", "joke about bats"]
    assert out["best"] == "joke about dogs"
    history = list(jokes_graph(new_saver(), calls).get_state_history(thread))
    assert [(s.next, len(s.values.get("jokes", []))) for s in history] == [
        ((), 3),
        (("pick",), 3),
        (("write", "write", "write"), 0),
        (("__start__",), 0),
    ]
    scheduling = history[-1]
    stored = new_saver().get_tuple(scheduling.config)
    assert stored is not None
    sends = [value for _, channel, value in stored.pending_writes or () if channel == TASKS]
    assert sends == [Send("write", {"subject": s}) for s in ("cats", "dogs", "bats")]
    branches = history[-2].tasks
    assert [t.name for t in branches] == ["write"] * 3
    assert [t.result for t in branches] == [{"jokes": [f"joke about {s}"]} for s in out["subjects"]]


def test_sends_scheduled_before_an_interrupt_run_in_the_next_saver(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    first = jokes_graph(new_saver(), calls, interrupt_before=["write"])

    first.invoke({"subjects": ["ants", "bees"]}, thread)

    assert calls == {}
    second = jokes_graph(new_saver(), calls, interrupt_before=["write"])
    assert second.get_state(thread).next == ("write", "write")
    out = second.invoke(None, thread)
    assert out["jokes"] == ["joke about ants", "joke about bees"]
    assert calls == {"ants": 1, "bees": 1, "pick": 1}


def test_branches_that_finished_do_not_rerun_when_another_is_resumed(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    first = jokes_graph(new_saver(), calls, ask_about="bats")

    out = first.invoke({"subjects": ["cats", "dogs", "bats", "rats"]}, thread)

    assert [i.value for i in out["__interrupt__"]] == ["is a joke about bats fine?"]
    second = jokes_graph(new_saver(), calls, ask_about="bats")
    out = second.invoke(Command(resume="wombats"), thread)
    assert out["jokes"] == [
        "joke about cats",
        "joke about dogs",
        "joke about wombats",
        "joke about rats",
    ]
    assert calls == {"cats": 1, "dogs": 1, "bats": 2, "rats": 1, "pick": 1}


def test_a_wide_fan_out_keeps_every_write(new_saver: SaverFactory, thread: RunnableConfig) -> None:
    calls: Counter[str] = Counter()
    subjects = [f"s{i:03}" for i in range(150)]

    out = jokes_graph(new_saver(), calls).invoke({"subjects": subjects}, thread)

    assert out["jokes"] == [f"joke about {s}" for s in subjects]
    state = jokes_graph(new_saver(), calls).get_state(thread)
    assert state.values["jokes"] == out["jokes"]
    assert sum(calls.values()) == 151
