"""Async graphs (``ainvoke``, ``astream``) on the saver's async API.

The same interrupt-and-resume story as the sync tests, with async nodes, and many
threads at once on one event loop: each resumed through a new saver.
"""

from __future__ import annotations

import asyncio
import operator
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from agentpersistence.client import SidecarSaver

SaverFactory = Callable[[], SidecarSaver]


class Order(TypedDict, total=False):
    item: str
    quantity: int
    approved_by: str
    log: Annotated[list[str], operator.add]


Graph = CompiledStateGraph[Order, None, Order, Order]


def order_graph(saver: BaseCheckpointSaver[Any], calls: Counter[str]) -> Graph:
    """price → approve (interrupts) → ship, every node async."""

    async def price(state: Order) -> Order:
        calls["price"] += 1
        await asyncio.sleep(0)
        return {"log": [f"priced {state['quantity']} x {state['item']}"]}

    async def approve(state: Order) -> Order:
        calls["approve"] += 1
        who = interrupt({"approve": state["item"], "quantity": state["quantity"]})
        return {"approved_by": who, "log": [f"approved by {who}"]}

    async def ship(state: Order) -> Order:
        calls["ship"] += 1
        await asyncio.sleep(0)
        return {"log": ["shipped"]}

    builder = StateGraph(Order)
    builder.add_node("price", price)
    builder.add_node("approve", approve)
    builder.add_node("ship", ship)
    builder.add_edge(START, "price")
    builder.add_edge("price", "approve")
    builder.add_edge("approve", "ship")
    builder.add_edge("ship", END)
    return builder.compile(checkpointer=saver)


def thread_config(thread: RunnableConfig, suffix: str) -> RunnableConfig:
    return {"configurable": {"thread_id": f"{thread['configurable']['thread_id']}-{suffix}"}}


async def test_ainvoke_interrupts_and_astream_resumes_through_a_new_saver(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    async with new_saver() as saver:
        out = await order_graph(saver, calls).ainvoke({"item": "kayak", "quantity": 2}, thread)
    assert [i.value for i in out["__interrupt__"]] == [{"approve": "kayak", "quantity": 2}]

    async with new_saver() as saver:
        graph = order_graph(saver, calls)
        waiting = await graph.aget_state(thread)
        assert waiting.next == ("approve",)
        updates = [
            chunk
            async for chunk in graph.astream(Command(resume="ada"), thread, stream_mode="updates")
        ]
        assert updates == [
            {"approve": {"approved_by": "ada", "log": ["approved by ada"]}},
            {"ship": {"log": ["shipped"]}},
        ]
        final = await graph.aget_state(thread)
        history = [s async for s in graph.aget_state_history(thread)]

    assert final.next == ()
    assert final.values["log"] == ["priced 2 x kayak", "approved by ada", "shipped"]
    assert [s.next for s in history] == [(), ("ship",), ("approve",), ("price",), ("__start__",)]
    assert calls == {"price": 1, "approve": 2, "ship": 1}


async def test_many_threads_interrupt_and_resume_concurrently(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    threads = [thread_config(thread, str(i)) for i in range(20)]

    async with new_saver() as saver:
        graph = order_graph(saver, calls)
        await asyncio.gather(
            *(graph.ainvoke({"item": f"item-{i}", "quantity": i}, t) for i, t in enumerate(threads))
        )
    async with new_saver() as saver:
        graph = order_graph(saver, calls)
        outs = await asyncio.gather(
            *(graph.ainvoke(Command(resume=f"approver-{i}"), t) for i, t in enumerate(threads))
        )

    for i, out in enumerate(outs):
        assert out["approved_by"] == f"approver-{i}"
        assert out["log"] == [f"priced {i} x item-{i}", f"approved by approver-{i}", "shipped"]
    assert calls == {"price": 20, "approve": 40, "ship": 20}


async def test_astream_values_sees_each_stored_step(
    new_saver: SaverFactory, thread: RunnableConfig
) -> None:
    calls: Counter[str] = Counter()
    async with new_saver() as saver:
        graph = order_graph(saver, calls)
        seen = [
            values["log"]
            async for values in graph.astream(
                {"item": "tent", "quantity": 1}, thread, stream_mode="values"
            )
        ]
        checkpoints = [t async for t in saver.alist(thread)]
    assert seen == [[], ["priced 1 x tent"], ["priced 1 x tent"]]
    assert len(checkpoints) == 3
    async with new_saver() as saver:
        resumed = [
            values["log"][-1]
            async for values in order_graph(saver, calls).astream(
                Command(resume="bo"), thread, stream_mode="values"
            )
        ]
    assert resumed == ["priced 1 x tent", "approved by bo", "shipped"]
