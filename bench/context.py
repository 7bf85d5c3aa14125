"""What every group of the benchmark shares: arguments, work directory, event loop, sidecars."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from . import report
from .procs import SidecarProcess
from .runner import Schedule
from .workload import GetMode, chat_messages

GROUPS = ("checkpoint", "dynamodb", "store", "cache")

FULL: dict[str, Schedule] = {
    "checkpoint": Schedule(rounds=12, pairs=150, warmup=150),
    "dynamodb": Schedule(rounds=12, pairs=50, warmup=120),
    "store": Schedule(rounds=10, pairs=50, warmup=20),
    "cache": Schedule(rounds=10, pairs=100, warmup=50),
}
QUICK: dict[str, Schedule] = {
    "checkpoint": Schedule(rounds=2, pairs=20, warmup=10),
    "dynamodb": Schedule(rounds=2, pairs=10, warmup=10),
    "store": Schedule(rounds=2, pairs=10, warmup=5),
    "cache": Schedule(rounds=2, pairs=20, warmup=10),
}
FULL_STARTS, QUICK_STARTS = 3, 1


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def error_text(exc: BaseException) -> str:
    """An exception as the report shows it: its type and its exact message."""
    return f"{type(exc).__name__}: {exc}"


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Bench:
    """Everything one run starts; ``stack`` stops all of it (groups stop theirs sooner)."""

    def __init__(
        self, args: argparse.Namespace, stack: contextlib.ExitStack, result: report.BenchResult
    ) -> None:
        self.args = args
        self.stack = stack
        self.result = result
        self.exit_code = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="ap-bench-"))
        if args.keep_workdir:
            progress(f"workdir kept: {self.workdir}")
        else:
            stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)
        self.loop = _new_loop(args.uvloop)
        stack.callback(self.loop.close)
        self.messages: list[BaseMessage] = chat_messages()
        self.get_mode: GetMode = args.get

    @property
    def sync_only(self) -> bool:
        return bool(self.args.no_async)

    def schedule(self, group: str) -> Schedule:
        default = (QUICK if self.args.quick else FULL)[group]
        return Schedule(
            rounds=self.args.rounds or default.rounds,
            pairs=self.args.pairs or default.pairs,
            warmup=self.args.warmup if self.args.warmup is not None else default.warmup,
        )

    @property
    def starts(self) -> int:
        if self.args.starts is not None:
            return int(self.args.starts)
        return QUICK_STARTS if self.args.quick else FULL_STARTS

    def dir_for(self, name: str) -> Path:
        return self.workdir / re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")

    def sidecar(
        self,
        name: str,
        config: dict[str, Any],
        stack: contextlib.ExitStack,
        *,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        stats: report.SidecarStats | None = None,
    ) -> tuple[SidecarProcess, report.SidecarStats]:
        """Start a sidecar (stopped when ``stack`` closes) and record its start and RSS."""
        sidecar = SidecarProcess(
            name,
            config,
            self.dir_for(f"sidecar-{name}"),
            env=env or {},
            extra_args=extra_args or [],
        )
        stack.callback(sidecar.stop)
        progress(f"starting sidecar {name}")
        sidecar.start()
        if stats is None:
            stats = report.SidecarStats(name)
            self.result.sidecars.append(stats)
        assert sidecar.ready_seconds is not None
        stats.start_ms.insert(0, sidecar.ready_seconds * 1000)
        mem = sidecar.memory()
        if mem is not None:
            stats.rss_ready_kib = mem.rss_kib
        return sidecar, stats

    def sidecar_done(
        self, sidecar: SidecarProcess, stats: report.SidecarStats, group: report.GroupResult
    ) -> None:
        """After the group's run: RSS now and at peak; a note (and exit 1) if it died."""
        mem = sidecar.memory()
        if mem is not None:
            stats.rss_after_kib = mem.rss_kib
            stats.hwm_kib = mem.hwm_kib
        if sidecar.proc is not None and sidecar.proc.poll() is not None:
            group.notes.append(f"sidecar {stats.backend} died during the run")
            self.exit_code = 1
