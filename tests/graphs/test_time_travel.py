"""Time travel: replay a past checkpoint, or fork it with ``update_state`` and run the fork.

Forks are new checkpoints whose parent is the past one; the original history must stay
exactly as it was, and every step runs through a new saver.
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
from langgraph.types import StateSnapshot

from agentpersistence.client import SidecarSaver

SaverFactory = Callable[[], SidecarSaver]


class Trail(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


Graph = CompiledStateGraph[Trail, None, Trail, Trail]


def abc_graph(saver: BaseCheckpointSaver[Any], calls: Counter[str]) -> Graph:
    """a → b → c, each appending its name to the log."""

    def record(state: Trail, config: RunnableConfig) -> Trail:
        name = config["metadata"]["langgraph_node"]
        calls[name] += 1
        return {"log": [name]}

    builder = StateGraph(Trail)
    for name in "abc":
        builder.add_node(name, record)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    return builder.compile(checkpointer=saver)


def checkpoint_id(config: RunnableConfig | None) -> str | None:
    return None if config is None else config["configurable"]["checkpoint_id"]


def by_id(history: list[StateSnapshot]) -> dict[str | None, tuple[Any, ...]]:
    """Each checkpoint's values, next nodes, source and parent, keyed by its id."""
    return {
        checkpoint_id(s.config): (
            s.values,
            s.next,
            s.metadata["source"] if s.metadata else None,
            checkpoint_id(s.parent_config),
        )
        for s in history
    }


def run_to_end(
    new_saver: SaverFactory, thread: RunnableConfig, calls: Counter[str]
) -> list[StateSnapshot]:
    """Run a → b → c once and return the history, newest first."""
    abc_graph(new_saver(), calls).invoke({"log": ["in"]}, thread)
    history = list(abc_graph(new_saver(), calls).get_state_history(thread))
    assert [s.next for s in history] == [(), ("c",), ("b",), ("a",), ("__start__",)]
    return history


def test_a_fork_made_with_update_state_runs_from_there(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    original = run_to_end(new_saver, thread, calls)
    before_b = original[2]

    fork = abc_graph(new_saver(), calls).update_state(before_b.config, {"log": ["edited"]})
    forked = abc_graph(new_saver(), calls).get_state(fork)
    assert forked.values == {"log": ["in", "a", "edited"]}
    assert forked.next == ("b",)
    assert forked.metadata is not None
    assert forked.metadata["source"] == "update"
    assert checkpoint_id(forked.parent_config) == checkpoint_id(before_b.config)

    out = abc_graph(new_saver(), calls).invoke(None, fork)

    assert out == {"log": ["in", "a", "edited", "b", "c"]}
    assert calls == {"a": 1, "b": 2, "c": 2}
    graph = abc_graph(new_saver(), calls)
    assert graph.get_state(thread).values == out
    history = list(graph.get_state_history(thread))
    assert len(history) == len(original) + 3
    assert by_id(original).items() <= by_id(history).items()
    assert [s.next for s in history[:3]] == [(), ("c",), ("b",)]
    assert graph.get_state(original[0].config).values == {"log": ["in", "a", "b", "c"]}


def test_update_state_as_a_node_skips_that_node(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    original = run_to_end(new_saver, thread, calls)

    fork = abc_graph(new_saver(), calls).update_state(
        original[2].config, {"log": ["instead of b"]}, as_node="b"
    )
    assert abc_graph(new_saver(), calls).get_state(fork).next == ("c",)
    out = abc_graph(new_saver(), calls).invoke(None, fork)

    assert out == {"log": ["in", "a", "instead of b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 2}


def test_replaying_a_past_checkpoint_reruns_only_the_later_nodes(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    original = run_to_end(new_saver, thread, calls)

    out = abc_graph(new_saver(), calls).invoke(None, original[2].config)

    assert out == {"log": ["in", "a", "b", "c"]}
    assert calls == {"a": 1, "b": 2, "c": 2}
    history = list(abc_graph(new_saver(), calls).get_state_history(thread))
    assert by_id(original).items() <= by_id(history).items()
    replayed = history[: len(history) - len(original)]
    assert [(s.metadata["source"], s.next) for s in replayed if s.metadata] == [
        ("loop", ()),
        ("loop", ("c",)),
        ("fork", ("b",)),
    ]
    assert checkpoint_id(replayed[-1].parent_config) == checkpoint_id(original[2].config)
