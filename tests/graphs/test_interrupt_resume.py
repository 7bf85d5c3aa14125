"""A graph interrupted in one saver's hands is resumed through another: all state is stored.

Each resume goes through a new ``SidecarSaver`` and a newly compiled graph, as a second
agent process would, so the interrupt, its pending writes and the resume values can only
have come from the sidecar.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability, StateSnapshot, interrupt

from agentpersistence.client import SidecarSaver
from rig.sidecar import SidecarProcess, valkey_checkpointer
from rig.valkey import ValkeyProcess

SaverFactory = Callable[[], SidecarSaver]


class Post(TypedDict, total=False):
    topic: str
    draft: str
    verdict: str
    log: Annotated[list[str], operator.add]


Graph = CompiledStateGraph[Post, None, Post, Post]


def review_graph(
    saver: BaseCheckpointSaver[Any], calls: Counter[str], interrupt_before: list[str] | None = None
) -> Graph:
    """draft → review (asks a human, unless interrupted before) → publish."""

    def draft(state: Post) -> Post:
        calls["draft"] += 1
        return {"draft": f"post about {state['topic']}", "log": ["draft"]}

    def review(state: Post) -> Post:
        calls["review"] += 1
        if interrupt_before:
            return {"verdict": "auto", "log": ["review"]}
        verdict = interrupt({"question": "publish?", "draft": state["draft"]})
        return {"verdict": verdict, "log": ["review"]}

    def publish(state: Post) -> Post:
        calls["publish"] += 1
        return {"log": [f"publish:{state['verdict']}"]}

    builder = StateGraph(Post)
    builder.add_node("draft", draft)
    builder.add_node("review", review)
    builder.add_node("publish", publish)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", "publish")
    builder.add_edge("publish", END)
    return builder.compile(checkpointer=saver, interrupt_before=interrupt_before)


def summary(history: list[StateSnapshot]) -> list[tuple[int, str, tuple[str, ...], list[str]]]:
    """(step, source, next nodes, log) for each checkpoint, newest first."""
    return [
        (s.metadata["step"], s.metadata["source"], s.next, s.values.get("log", []))
        for s in history
        if s.metadata is not None
    ]


def test_interrupt_in_node_is_resumed_through_a_new_saver(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    first = review_graph(new_saver(), calls)

    out = first.invoke({"topic": "otters"}, thread)

    assert [i.value for i in out["__interrupt__"]] == [
        {"question": "publish?", "draft": "post about otters"}
    ]
    second = review_graph(new_saver(), calls)
    waiting = second.get_state(thread)
    assert waiting.next == ("review",)
    assert [i.value["question"] for i in waiting.interrupts] == ["publish?"]

    final = second.invoke(Command(resume="yes"), thread)

    assert final == {
        "topic": "otters",
        "draft": "post about otters",
        "verdict": "yes",
        "log": ["draft", "review", "publish:yes"],
    }
    assert calls == {"draft": 1, "review": 2, "publish": 1}
    assert summary(list(second.get_state_history(thread))) == [
        (3, "loop", (), ["draft", "review", "publish:yes"]),
        (2, "loop", ("publish",), ["draft", "review"]),
        (1, "loop", ("review",), ["draft"]),
        (0, "loop", ("draft",), []),
        (-1, "input", ("__start__",), []),
    ]
    assert review_graph(new_saver(), calls).get_state(thread).interrupts == ()


def test_interrupt_before_a_node_is_resumed_through_a_new_saver(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    first = review_graph(new_saver(), calls, interrupt_before=["review"])

    out = first.invoke({"topic": "owls"}, thread)

    assert out == {"topic": "owls", "draft": "post about owls", "log": ["draft"]}
    assert calls == {"draft": 1}
    second = review_graph(new_saver(), calls, interrupt_before=["review"])
    assert second.get_state(thread).next == ("review",)

    final = second.invoke(None, thread)

    assert final["log"] == ["draft", "review", "publish:auto"]
    assert calls == {"draft": 1, "review": 1, "publish": 1}
    assert summary(list(second.get_state_history(thread))) == [
        (3, "loop", (), ["draft", "review", "publish:auto"]),
        (2, "loop", ("publish",), ["draft", "review"]),
        (1, "loop", ("review",), ["draft"]),
        (0, "loop", ("draft",), []),
        (-1, "input", ("__start__",), []),
    ]


@pytest.mark.parametrize(
    ("durability", "steps"),
    [("sync", [3, 2, 1, 0, -1]), ("exit", [3, 1])],
)
def test_every_durability_mode_resumes_through_a_new_saver(
    new_saver: SaverFactory, thread: RunnableConfig, durability: Durability, steps: list[int]
) -> None:
    """``exit`` stores only where a run stops (the interrupt, the end); ``sync`` every step."""
    calls: Counter[str] = Counter()
    review_graph(new_saver(), calls).invoke({"topic": "eels"}, thread, durability=durability)

    graph = review_graph(new_saver(), calls)
    final = graph.invoke(Command(resume="ok"), thread, durability=durability)

    assert final["log"] == ["draft", "review", "publish:ok"]
    assert calls == {"draft": 1, "review": 2, "publish": 1}
    assert [s[0] for s in summary(list(graph.get_state_history(thread)))] == steps


class Form(TypedDict, total=False):
    answers: list[str]


def form_graph(saver: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Form, None, Form, Form]:
    """One node asks three questions in a row; each answer arrives in a later process."""

    def ask(state: Form) -> Form:
        return {"answers": [interrupt(q) for q in ("name?", "quest?", "colour?")]}

    builder = StateGraph(Form)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    return builder.compile(checkpointer=saver)


def test_each_of_several_interrupts_is_resumed_by_another_saver(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    out = form_graph(new_saver()).invoke({}, thread)
    assert [i.value for i in out["__interrupt__"]] == ["name?"]

    out = form_graph(new_saver()).invoke(Command(resume="arthur"), thread)
    assert [i.value for i in out["__interrupt__"]] == ["quest?"]

    out = form_graph(new_saver()).invoke(Command(resume="the grail"), thread)
    assert [i.value for i in out["__interrupt__"]] == ["colour?"]

    out = form_graph(new_saver()).invoke(Command(resume="blue"), thread)
    assert out == {"answers": ["arthur", "the grail", "blue"]}
    assert form_graph(new_saver()).get_state(thread).next == ()


def test_an_interrupted_thread_survives_a_sidecar_restart_on_valkey(
    sidecar_factory: Callable[..., SidecarProcess],
    valkey_server: ValkeyProcess,
    thread: RunnableConfig,
) -> None:
    """The sidecar keeps nothing itself: a new sidecar process on the same Valkey resumes."""
    calls: Counter[str] = Counter()
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    with SidecarSaver(sidecar.socket) as saver:
        review_graph(saver, calls).invoke({"topic": "herons"}, thread)

    sidecar.stop()
    sidecar.start()

    with SidecarSaver(sidecar.socket) as saver:
        final = review_graph(saver, calls).invoke(Command(resume="after restart"), thread)
    assert final["log"] == ["draft", "review", "publish:after restart"]
    assert calls == {"draft": 1, "review": 2, "publish": 1}
