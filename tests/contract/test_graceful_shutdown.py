"""A sidecar stopped with SIGTERM and replaced by a new process on the same socket costs its
clients a pause, not an error: sync and async clients writing and reading throughout see
no exception, and on a backend whose storage outlives the process every put the sidecar
acknowledged reads back afterwards."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint

from agentpersistence.client import SidecarSaver
from rig.sidecar import MEMORY_CONFIG, SidecarProcess, valkey_checkpointer

SYNC_CLIENTS = 2
ASYNC_CLIENTS = 2
CALLS_PER_PHASE = 20
"""Calls each client completes before the SIGTERM, and again once the new sidecar is up."""
TIMEOUT = 30.0
"""Each call's deadline: a restart must fit in it (it takes well under a second here)."""
JOIN_TIMEOUT = 60.0


@dataclass
class Traffic:
    """What the clients did: calls completed per client, puts acknowledged, exceptions."""

    clients: int
    done: list[int] = field(default_factory=list)
    acknowledged: list[RunnableConfig] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.done = [0] * self.clients

    def record(self, client: int, stored: RunnableConfig) -> None:
        with self.changed:
            self.acknowledged.append(stored)
            self.done[client] += 1
            self.changed.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.changed:
            self.failures.append(exc)
            self.stop.set()
            self.changed.notify_all()

    def wait_for(self, calls: int) -> list[int]:
        """Block until every client has completed ``calls`` calls (or one failed)."""
        with self.changed:
            reached = self.changed.wait_for(
                lambda: self.failures or min(self.done) >= calls, timeout=JOIN_TIMEOUT
            )
        assert reached, f"clients stalled at {self.done} calls, waiting for {calls}"
        assert not self.failures, f"a client raised: {self.failures[0]!r}"
        return list(self.done)


def _checkpoint() -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"n": uuid.uuid4().hex}
    return checkpoint


def _config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def _sync_client(socket: str, traffic: Traffic, client: int) -> None:
    config = _config(f"sync-{client}-{uuid.uuid4()}")
    try:
        with SidecarSaver(socket, timeout=TIMEOUT) as saver:
            while not traffic.stop.is_set():
                stored = saver.put(config, _checkpoint(), {"source": "loop", "step": 0}, {})
                saver.get_tuple(config)
                traffic.record(client, stored)
    except BaseException as exc:
        traffic.fail(exc)


async def _async_client(saver: SidecarSaver, traffic: Traffic, client: int) -> None:
    config = _config(f"async-{client}-{uuid.uuid4()}")
    while not traffic.stop.is_set():
        stored = await saver.aput(config, _checkpoint(), {"source": "loop", "step": 0}, {})
        await saver.aget_tuple(config)
        traffic.record(client, stored)


def _async_clients(socket: str, traffic: Traffic, first: int) -> None:
    async def run() -> None:
        with SidecarSaver(socket, timeout=TIMEOUT) as saver:
            await asyncio.gather(
                *(_async_client(saver, traffic, first + i) for i in range(ASYNC_CLIENTS))
            )

    try:
        asyncio.run(run())
    except BaseException as exc:
        traffic.fail(exc)


@pytest.fixture
def traffic_on() -> Iterator[Callable[[str], Traffic]]:
    """Starts the clients on a socket; stops and joins them at the end of the test."""
    threads: list[threading.Thread] = []
    started: list[Traffic] = []

    def start(socket: str) -> Traffic:
        traffic = Traffic(SYNC_CLIENTS + ASYNC_CLIENTS)
        started.append(traffic)
        for client in range(SYNC_CLIENTS):
            threads.append(threading.Thread(target=_sync_client, args=(socket, traffic, client)))
        threads.append(
            threading.Thread(target=_async_clients, args=(socket, traffic, SYNC_CLIENTS))
        )
        for thread in threads:
            thread.start()
        return traffic

    yield start
    for traffic in started:
        traffic.stop.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "a client did not stop"


@pytest.mark.parametrize("backend", ["valkey", "memory"])
def test_sigterm_and_restart_cost_clients_a_pause_not_an_error(
    backend: str,
    sidecar_factory: Callable[..., SidecarProcess],
    valkey_server: Any,
    traffic_on: Callable[[str], Traffic],
) -> None:
    config = valkey_checkpointer(valkey_server.url) if backend == "valkey" else MEMORY_CONFIG
    sidecar = sidecar_factory(config)
    traffic = traffic_on(sidecar.socket)

    before = traffic.wait_for(CALLS_PER_PHASE)
    assert sidecar.stop() == 0  # SIGTERM, then the process's exit
    sidecar.start()  # a new process; returns once its socket has appeared
    traffic.wait_for(max(before) + CALLS_PER_PHASE)
    traffic.stop.set()
    with traffic.changed:
        acknowledged = list(traffic.acknowledged)

    assert "outlived the grace period" not in sidecar.log()
    if backend == "valkey":  # the storage outlived the process: nothing acknowledged is lost
        with SidecarSaver(sidecar.socket, timeout=TIMEOUT) as saver:
            missing = [stored for stored in acknowledged if saver.get_tuple(stored) is None]
        assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged puts lost"
