"""The saver's sync API, called directly (LangGraph's conformance suite only calls async).

Every method goes through the real socket to the sidecar: put, get_tuple, list (thread,
namespace, filter, before, limit, pages), put_writes, delete_thread, delete_for_runs,
copy_thread and prune. The last test calls the sync API from a thread pool while an
event loop runs in the main thread, as LangGraph does for sync nodes of async graphs.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    empty_checkpoint,
)
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT

from agentpersistence.client import RequestRejected, SidecarSaver

SaverFactory = Callable[[], SidecarSaver]


def new_thread_id() -> str:
    return f"sync-{uuid.uuid4()}"


def root(thread_id: str, ns: str = "", **extra: Any) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, **extra}}


_versions = itertools.count(1)


def checkpoint(values: dict[str, Any]) -> Checkpoint:
    """A checkpoint holding ``values``; its id and channel versions are later than any before."""
    result = empty_checkpoint()
    result["id"] = str(uuid6(clock_seq=0))
    result["channel_values"] = values
    version = f"{next(_versions):032}.0"
    result["channel_versions"] = dict.fromkeys(values, version)
    return result


def put(
    saver: BaseCheckpointSaver[Any],
    config: RunnableConfig,
    ckpt: Checkpoint,
    metadata: CheckpointMetadata,
) -> RunnableConfig:
    """Put as LangGraph does, with every channel of the checkpoint as a new version."""
    return saver.put(config, ckpt, metadata, ckpt["channel_versions"])


def put_chain(
    saver: BaseCheckpointSaver[Any],
    thread_id: str,
    count: int,
    *,
    ns: str = "",
    source: Literal["input", "loop"] = "loop",
    run_id: str | None = None,
) -> list[RunnableConfig]:
    """Put ``count`` checkpoints, each the parent of the next; their configs, oldest first."""
    config = root(thread_id, ns)
    if run_id is not None:
        config["metadata"] = {"run_id": run_id}
    stored: list[RunnableConfig] = []
    for step in range(count):
        metadata: CheckpointMetadata = {"source": source, "step": step, "parents": {}}
        parent = stored[-1]["configurable"] if stored else {}
        config = {**config, "configurable": {**config["configurable"], **parent}}
        stored.append(put(saver, config, checkpoint({"step": step}), metadata))
    return stored


def ids(tuples: Any) -> list[str]:
    return [t.config["configurable"]["checkpoint_id"] for t in tuples]


def cid(config: RunnableConfig) -> str:
    checkpoint_id: str = config["configurable"]["checkpoint_id"]
    return checkpoint_id


# --- put / get_tuple ---------------------------------------------------------------------


def test_put_returns_the_stored_config_and_get_tuple_reads_it_back(
    new_saver: SaverFactory,
) -> None:
    saver, thread_id = new_saver(), new_thread_id()
    values = {
        "messages": [HumanMessage("hi", id="h1"), AIMessage("hello", id="a1")],
        "raw": b"\x00\xff",
        "when": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
        "tags": {"a", "b"},
    }
    first = put(saver, root(thread_id), checkpoint({"n": 1}), {"source": "input", "step": -1})
    second_ckpt = checkpoint(values)
    config = root(thread_id, checkpoint_id=cid(first), user="ada", attempts=3)
    second = put(saver, config, second_ckpt, {"source": "loop", "step": 0})

    assert second == root(thread_id, checkpoint_id=second_ckpt["id"])
    latest = new_saver().get_tuple(root(thread_id))
    assert latest is not None
    assert latest.config == second
    assert latest.parent_config == first
    assert latest.checkpoint == second_ckpt
    assert latest.checkpoint["channel_values"] == values
    assert latest.metadata == {"source": "loop", "step": 0, "user": "ada", "attempts": 3}
    assert latest.pending_writes == []
    oldest = new_saver().get_tuple(first)
    assert oldest is not None
    assert oldest.checkpoint["channel_values"] == {"n": 1}
    assert oldest.parent_config is None
    assert new_saver().get(first) == oldest.checkpoint


def test_get_tuple_of_what_is_not_there_is_none(new_saver: SaverFactory) -> None:
    saver, thread_id = new_saver(), new_thread_id()
    assert saver.get_tuple(root(thread_id)) is None
    put_chain(saver, thread_id, 1)
    assert saver.get_tuple(root(thread_id, checkpoint_id=str(uuid6()))) is None
    assert saver.get_tuple(root(thread_id, ns="elsewhere")) is None


def test_a_put_with_the_same_id_replaces_the_checkpoint(new_saver: SaverFactory) -> None:
    saver, thread_id = new_saver(), new_thread_id()
    ckpt = checkpoint({"v": "old"})
    config = put(saver, root(thread_id), ckpt, {"source": "loop", "step": 1})
    put(saver, root(thread_id), {**ckpt, "channel_values": {"v": "new"}}, {"step": 2})

    stored = saver.get_tuple(config)
    assert stored is not None
    assert stored.checkpoint["channel_values"] == {"v": "new"}
    assert stored.metadata == {"step": 2}
    assert len(list(saver.list(root(thread_id)))) == 1


# --- list --------------------------------------------------------------------------------


def test_list_is_newest_first_and_honours_namespace_filter_before_and_limit(
    new_saver: SaverFactory,
) -> None:
    saver, thread_id = new_saver(), new_thread_id()
    main = put_chain(saver, thread_id, 4)
    child = put_chain(saver, thread_id, 2, ns="child:1", source="input")
    put_chain(saver, new_thread_id(), 2)

    every = list(saver.list({"configurable": {"thread_id": thread_id}}))
    assert sorted(ids(every)) == sorted(map(cid, main + child))
    assert ids(saver.list(root(thread_id))) == [cid(c) for c in reversed(main)]
    assert ids(saver.list(root(thread_id, "child:1"))) == [cid(c) for c in reversed(child)]
    assert ids(saver.list(root(thread_id), limit=2)) == [cid(main[3]), cid(main[2])]
    assert ids(saver.list(root(thread_id), before=main[2])) == [cid(main[1]), cid(main[0])]
    assert ids(saver.list(root(thread_id), before=main[3], limit=1)) == [cid(main[2])]
    assert ids(saver.list(root(thread_id), filter={"step": 1})) == [cid(main[1])]
    filtered = saver.list({"configurable": {"thread_id": thread_id}}, filter={"source": "input"})
    assert ids(filtered) == [cid(c) for c in reversed(child)]
    assert ids(saver.list(root(thread_id), filter={"source": "loop", "step": 9})) == []
    assert ids(saver.list(root(thread_id), filter={"missing": None})) == ids(
        saver.list(root(thread_id))
    )
    assert ids(saver.list(root(thread_id, checkpoint_id=cid(main[1])))) == [cid(main[1])]
    assert list(saver.list(root(thread_id), limit=0)) == []


def test_list_without_a_thread_finds_matching_checkpoints_everywhere(
    new_saver: SaverFactory,
) -> None:
    saver, marker = new_saver(), str(uuid.uuid4())
    threads = [new_thread_id() for _ in range(3)]
    for thread_id in threads:
        config: RunnableConfig = {**root(thread_id), "metadata": {"marker": marker}}
        put(saver, config, checkpoint({}), {"source": "loop", "step": 0})

    found = list(saver.list(None, filter={"marker": marker}))

    assert sorted(t.config["configurable"]["thread_id"] for t in found) == sorted(threads)


def test_list_follows_pages_past_the_page_size(new_saver: SaverFactory) -> None:
    saver, thread_id = new_saver(), new_thread_id()
    stored = [cid(c) for c in put_chain(saver, thread_id, 230)]
    newest_first = stored[::-1]

    assert ids(new_saver().list(root(thread_id))) == newest_first
    assert ids(new_saver().list(root(thread_id), limit=150)) == newest_first[:150]
    before = root(thread_id, checkpoint_id=stored[200])
    assert (
        ids(new_saver().list(root(thread_id), before=before, limit=120)) == stored[:200][::-1][:120]
    )
    odd = list(new_saver().list(root(thread_id), filter={"source": "loop"}, limit=205))
    assert ids(odd) == newest_first[:205]


# --- put_writes --------------------------------------------------------------------------


def test_pending_writes_come_back_in_the_order_and_with_the_values_of_the_reference_saver(
    new_saver: SaverFactory,
) -> None:
    """The same calls on ``InMemorySaver`` give the same pending writes, in the same order."""
    thread_id = new_thread_id()
    results = []
    for saver in (new_saver(), InMemorySaver()):
        config = put(saver, root(thread_id), checkpoint({}), {"step": 0})
        saver.put_writes(config, [("b", 1), ("a", 2)], "task-2", "~__pregel_pull, b")
        saver.put_writes(config, [("c", 3)], "task-1", "~__pregel_pull, a")
        saver.put_writes(config, [(ERROR, "first failure")], "task-3", "~__pregel_pull, c")
        saver.put_writes(config, [("b", "again"), ("a", "again")], "task-2", "~__pregel_pull, b")
        saver.put_writes(config, [(ERROR, "second failure")], "task-3", "~__pregel_pull, c")
        saver.put_writes(config, [(INTERRUPT, {"ask": "ok?"})], "task-4", "~__pregel_push, 0")
        stored = saver.get_tuple(config)
        assert stored is not None
        assert stored.pending_writes is not None
        results.append(stored.pending_writes)

    ours, reference = results
    assert ours == reference
    assert ("task-2", "b", 1) in ours
    assert ("task-3", ERROR, "second failure") in ours
    assert len(ours) == 5


def test_writes_are_kept_per_checkpoint_and_namespace(new_saver: SaverFactory) -> None:
    saver, thread_id = new_saver(), new_thread_id()
    first, second = put_chain(saver, thread_id, 2)
    (child,) = put_chain(saver, thread_id, 1, ns="child:1")
    saver.put_writes(first, [("x", "on first")], "t")
    saver.put_writes(child, [("x", "on child")], "t")

    def writes(config: RunnableConfig) -> list[tuple[str, str, Any]]:
        stored = new_saver().get_tuple(config)
        assert stored is not None
        return stored.pending_writes or []

    assert writes(first) == [("t", "x", "on first")]
    assert writes(second) == []
    assert writes(child) == [("t", "x", "on child")]
    (listed,) = [t for t in saver.list(root(thread_id)) if t.config == first]
    assert listed.pending_writes == [("t", "x", "on first")]


# --- delete / copy / prune ---------------------------------------------------------------


def test_delete_thread_removes_only_that_thread(new_saver: SaverFactory) -> None:
    saver, doomed, kept = new_saver(), new_thread_id(), new_thread_id()
    for thread_id in (doomed, kept):
        configs = put_chain(saver, thread_id, 2) + put_chain(saver, thread_id, 1, ns="child:1")
        saver.put_writes(configs[0], [("x", 1)], "t")

    new_saver().delete_thread(doomed)

    assert saver.get_tuple(root(doomed)) is None
    assert list(saver.list({"configurable": {"thread_id": doomed}})) == []
    assert len(list(saver.list({"configurable": {"thread_id": kept}}))) == 3
    new_saver().delete_thread(doomed)  # deleting nothing is fine


def test_delete_for_runs_removes_the_checkpoints_of_those_runs(new_saver: SaverFactory) -> None:
    saver, thread_id = new_saver(), new_thread_id()
    run_a, run_b, run_c = (str(uuid.uuid4()) for _ in range(3))
    a = put_chain(saver, thread_id, 2, run_id=run_a)
    b = put_chain(saver, thread_id, 2, run_id=run_b)
    c = put_chain(saver, new_thread_id(), 1, run_id=run_c)
    saver.put_writes(a[1], [("x", 1)], "t")

    new_saver().delete_for_runs([run_a, str(uuid.uuid4())])

    assert ids(saver.list(root(thread_id))) == [cid(b[1]), cid(b[0])]
    assert saver.get_tuple(a[1]) is None
    assert saver.get_tuple(c[0]) is not None
    stored = saver.get_tuple(b[1])
    assert stored is not None
    assert stored.metadata["run_id"] == run_b


def test_copy_thread_copies_every_checkpoint_namespace_and_write(
    new_saver: SaverFactory,
) -> None:
    saver, source, target = new_saver(), new_thread_id(), new_thread_id()
    main = put_chain(saver, source, 3)
    child = put_chain(saver, source, 2, ns="child:1")
    saver.put_writes(main[1], [("x", "w1"), ("y", "w2")], "task")
    saver.put_writes(child[0], [(ERROR, "boom")], "task")

    new_saver().copy_thread(source, target)

    def contents(thread_id: str) -> list[tuple[Any, ...]]:
        return [
            (
                t.config["configurable"]["checkpoint_ns"],
                t.config["configurable"]["checkpoint_id"],
                t.checkpoint,
                t.metadata,
                t.pending_writes,
                t.parent_config and cid(t.parent_config),
            )
            for t in saver.list({"configurable": {"thread_id": thread_id}})
        ]

    copied, original = contents(target), contents(source)
    assert copied == original
    assert len(copied) == 5
    assert all(t.config["configurable"]["thread_id"] == target for t in saver.list(root(target)))
    latest = saver.get_tuple(root(target))
    assert latest is not None
    assert latest.parent_config == root(target, checkpoint_id=cid(main[1]))


def test_prune_keeps_the_latest_checkpoint_of_each_namespace(new_saver: SaverFactory) -> None:
    saver, pruned, untouched = new_saver(), new_thread_id(), new_thread_id()
    main = put_chain(saver, pruned, 3)
    child = put_chain(saver, pruned, 2, ns="child:1")
    saver.put_writes(main[2], [("x", 1)], "t")
    put_chain(saver, untouched, 3)

    new_saver().prune([pruned])

    left = list(saver.list({"configurable": {"thread_id": pruned}}))
    assert sorted(ids(left)) == sorted([cid(main[2]), cid(child[1])])
    latest = saver.get_tuple(root(pruned))
    assert latest is not None
    assert latest.pending_writes == [("t", "x", 1)]
    assert len(list(saver.list(root(untouched)))) == 3


def test_prune_with_delete_removes_the_threads(new_saver: SaverFactory) -> None:
    saver, doomed, kept = new_saver(), new_thread_id(), new_thread_id()
    put_chain(saver, doomed, 2)
    put_chain(saver, kept, 2)

    saver.prune([doomed], strategy="delete")

    assert list(saver.list({"configurable": {"thread_id": doomed}})) == []
    assert len(list(saver.list(root(kept)))) == 2
    with pytest.raises(RequestRejected, match="keep_latest"):
        saver.prune([kept], strategy="shred")


# --- threads -----------------------------------------------------------------------------


async def test_sync_calls_from_a_thread_pool_while_the_loop_runs(
    new_saver: SaverFactory,
) -> None:
    saver = new_saver()
    loop = asyncio.get_running_loop()
    thread_ids = [new_thread_id() for _ in range(16)]

    def work(thread_id: str) -> list[CheckpointTuple]:
        configs = put_chain(saver, thread_id, 5)
        saver.put_writes(configs[-1], [("done", thread_id)], "worker")
        return list(saver.list(root(thread_id)))

    async def heartbeat() -> int:
        beats, async_thread = 0, new_thread_id()
        config = root(async_thread)
        for step in range(20):
            beat = checkpoint({"beat": step})
            config = await saver.aput(config, beat, {"step": step}, beat["channel_versions"])
            beats += 1
        assert len([t async for t in saver.alist(root(async_thread))]) == 20
        return beats

    with ThreadPoolExecutor(max_workers=8) as pool:
        listed, beats = await asyncio.gather(
            asyncio.gather(*(loop.run_in_executor(pool, work, t) for t in thread_ids)),
            heartbeat(),
        )
    await saver.__aexit__(None, None, None)

    assert beats == 20
    for thread_id, tuples in zip(thread_ids, listed, strict=True):
        assert [t.checkpoint["channel_values"]["step"] for t in tuples] == [4, 3, 2, 1, 0]
        assert tuples[0].pending_writes == [("worker", "done", thread_id)]
