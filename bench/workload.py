"""The measured work: put + get_tuple pairs of a realistic checkpoint, as LangGraph makes them.

A chat agent's state: 20 messages, ``HumanMessage`` and ``AIMessage`` alternating, about
5 KB once serialized. Each thread is a chain of ``STEPS_PER_THREAD`` checkpoints built like
LangGraph's loop builds them (``empty_checkpoint()``, then channel values and versions,
``new_versions`` from the saver's own ``get_next_version``, metadata ``{"source": "loop",
"step": n, "parents": {}}``), each put with its parent's id in the config. The pair is
timed from before ``put`` to after ``get_tuple`` returns; building the next checkpoint,
checking the answer and deleting finished threads happen outside the timed part.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    empty_checkpoint,
)
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

MESSAGES = 20
STEPS_PER_THREAD = 20
"""Checkpoints per thread before the stream moves to a new thread (a 20-step conversation)."""

GetMode = Literal["latest", "id"]
"""``latest``: get_tuple with the thread only (what LangGraph does when a run starts);
``id``: get_tuple of the checkpoint just put."""

_HUMAN = "Turn {i}: three days in Lisbon with two kids, what should we see?"
_AI = "Turn {i}: Belém and pastéis de nata; Alfama by tram 28; if it rains, the Oceanário."

_FIRST_STEP_CHANNELS = ("__start__", "messages", "branch:to:agent")
_STEP_CHANNELS = ("messages", "branch:to:agent")


class BenchError(RuntimeError):
    """A saver gave a wrong answer: the measurement would be meaningless."""


def chat_messages(n: int = MESSAGES) -> list[BaseMessage]:
    messages: list[BaseMessage] = []
    for i in range(n):
        if i % 2 == 0:
            messages.append(HumanMessage(content=_HUMAN.format(i=i), id=f"msg-{i:04d}"))
        else:
            messages.append(AIMessage(content=_AI.format(i=i), id=f"msg-{i:04d}"))
    return messages


def serialized_size(checkpoint: Checkpoint) -> int:
    """Bytes of ``checkpoint`` as LangGraph's default serde writes it."""
    return len(JsonPlusSerializer().dumps_typed(checkpoint)[1])


@dataclass
class Step:
    """One pair's inputs, built before the timer starts."""

    config: RunnableConfig
    checkpoint: Checkpoint
    metadata: CheckpointMetadata
    new_versions: ChannelVersions
    get_config: RunnableConfig


@dataclass
class CheckpointStream:
    """Checkpoint chains of one saver; a new thread every ``STEPS_PER_THREAD`` steps."""

    saver: BaseCheckpointSaver[Any]
    label: str
    messages: list[BaseMessage]
    get_mode: GetMode = "latest"
    threads: list[str] = field(default_factory=list)
    _prev: Checkpoint | None = None
    _step: int = 0

    def next(self) -> Step:
        if self._prev is None or self._step >= STEPS_PER_THREAD:
            self.threads.append(f"bench-{self.label}-{len(self.threads)}-{uuid6().hex[:12]}")
            self._prev, self._step = None, 0
        thread_id = self.threads[-1]
        prev = self._prev if self._prev is not None else empty_checkpoint()
        versions = dict(prev["channel_versions"])
        new_versions: ChannelVersions = {}
        channels = _FIRST_STEP_CHANNELS if self._prev is None else _STEP_CHANNELS
        for channel in channels:
            version = self.saver.get_next_version(versions.get(channel), None)
            versions[channel] = new_versions[channel] = version
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=self._step))
        checkpoint["channel_values"] = {"messages": self.messages}
        checkpoint["channel_versions"] = versions
        checkpoint["versions_seen"] = {
            "__input__": {},
            "__start__": {"__start__": versions["__start__"]},
            "agent": {"branch:to:agent": versions["branch:to:agent"]},
        }
        checkpoint["updated_channels"] = ["messages"]
        configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
        if self._prev is not None:
            configurable["checkpoint_id"] = self._prev["id"]
        metadata: CheckpointMetadata = {"source": "loop", "step": self._step, "parents": {}}
        get_conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
        if self.get_mode == "id":
            get_conf["checkpoint_id"] = checkpoint["id"]
        self._prev = checkpoint
        self._step += 1
        return Step({"configurable": configurable}, checkpoint, metadata, new_versions,
                    {"configurable": get_conf})  # fmt: skip

    def take_threads(self) -> list[str]:
        """Threads started so far, except the one still being written; forgets them."""
        done, self.threads = self.threads[:-1], self.threads[-1:]
        return done


def _check(step: Step, got: CheckpointTuple | None, label: str) -> None:
    if got is None or got.checkpoint["id"] != step.checkpoint["id"]:
        found = None if got is None else got.checkpoint["id"]
        raise BenchError(
            f"{label}: get_tuple returned checkpoint {found!r}, expected {step.checkpoint['id']!r}"
        )
    sent, back = step.checkpoint["channel_values"], got.checkpoint["channel_values"]
    if len(back.get("messages", ())) != len(sent["messages"]):
        raise BenchError(f"{label}: get_tuple returned a checkpoint with the wrong messages")


def run_sync_block(stream: CheckpointStream, pairs: int) -> list[float]:
    """``pairs`` sync put + get_tuple pairs; their latencies in µs."""
    put, get = stream.saver.put, stream.saver.get_tuple
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(pairs):
        step = stream.next()
        t0 = clock()
        put(step.config, step.checkpoint, step.metadata, step.new_versions)
        got = get(step.get_config)
        t1 = clock()
        _check(step, got, stream.label)
        out.append((t1 - t0) / 1000.0)
    return out


async def run_async_block(stream: CheckpointStream, pairs: int) -> list[float]:
    """``pairs`` async aput + aget_tuple pairs; their latencies in µs."""
    put, get = stream.saver.aput, stream.saver.aget_tuple
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(pairs):
        step = stream.next()
        t0 = clock()
        await put(step.config, step.checkpoint, step.metadata, step.new_versions)
        got = await get(step.get_config)
        t1 = clock()
        _check(step, got, stream.label)
        out.append((t1 - t0) / 1000.0)
    return out


def delete_threads_sync(saver: BaseCheckpointSaver[Any], threads: list[str]) -> None:
    for thread_id in threads:
        saver.delete_thread(thread_id)


async def delete_threads_async(saver: BaseCheckpointSaver[Any], threads: list[str]) -> None:
    for thread_id in threads:
        await saver.adelete_thread(thread_id)


AsyncBlock = Callable[[CheckpointStream, int], Awaitable[list[float]]]


def checkpoint_block(
    stream: CheckpointStream, api: Literal["sync", "async"], loop: asyncio.AbstractEventLoop
) -> Callable[[int], list[float]]:
    """The runner's block function: ``n`` timed pairs, then finished threads deleted."""
    saver = stream.saver

    def sync_block(n: int) -> list[float]:
        samples = run_sync_block(stream, n)
        delete_threads_sync(saver, stream.take_threads())
        return samples

    def async_block(n: int) -> list[float]:
        samples = loop.run_until_complete(run_async_block(stream, n))
        loop.run_until_complete(delete_threads_async(saver, stream.take_threads()))
        return samples

    return sync_block if api == "sync" else async_block
