"""Alternating blocks: every comparison's two savers run back to back in each round.

A round runs, for each comparison ``(A, B)``, a block of A then a block of B (B then A on
odd rounds), so slow drifts of the machine (other processes, CPU frequency) hit both
sides alike. Every saver first runs a discarded warm-up block. Threads a block finished
are deleted after it, untimed, so every block sees the same amount of stored data.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver

from .workload import (
    CheckpointStream,
    delete_threads_async,
    delete_threads_sync,
    run_async_block,
    run_sync_block,
)

Api = Literal["sync", "async"]


@dataclass
class Contender:
    name: str
    api: Api
    saver: BaseCheckpointSaver[Any]
    stream: CheckpointStream
    samples: list[float] = field(default_factory=list)
    """Latency of each timed pair, µs."""
    block_medians: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.api})"


@dataclass
class Comparison:
    """``a`` measured against ``b``: a ratio, a difference, or both."""

    key: str
    a: Contender
    b: Contender
    round_ratios: list[float] = field(default_factory=list)
    round_diffs: list[float] = field(default_factory=list)


@dataclass
class Schedule:
    rounds: int
    pairs: int
    warmup: int


def run_block(contender: Contender, pairs: int, loop: asyncio.AbstractEventLoop) -> list[float]:
    gc.collect()
    stream = contender.stream
    if contender.api == "sync":
        samples = run_sync_block(stream, pairs)
        delete_threads_sync(contender.saver, stream.take_threads())
    else:
        samples = loop.run_until_complete(run_async_block(stream, pairs))
        loop.run_until_complete(delete_threads_async(contender.saver, stream.take_threads()))
    return samples


def run(
    comparisons: list[Comparison],
    schedule: Schedule,
    loop: asyncio.AbstractEventLoop,
    progress: Callable[[str], None],
) -> None:
    contenders = _unique(comparisons)
    progress(f"warm-up: {schedule.warmup} pairs per saver")
    for contender in contenders:
        run_block(contender, schedule.warmup, loop)
    for r in range(schedule.rounds):
        done: dict[int, float] = {}
        for comparison in comparisons:
            order = (comparison.a, comparison.b) if r % 2 == 0 else (comparison.b, comparison.a)
            for contender in order:
                if id(contender) in done:
                    continue
                samples = run_block(contender, schedule.pairs, loop)
                contender.samples.extend(samples)
                done[id(contender)] = statistics.median(samples)
                contender.block_medians.append(done[id(contender)])
            a, b = done[id(comparison.a)], done[id(comparison.b)]
            comparison.round_ratios.append(a / b)
            comparison.round_diffs.append(a - b)
        progress(f"round {r + 1}/{schedule.rounds} done")


def _unique(comparisons: list[Comparison]) -> list[Contender]:
    seen: dict[int, Contender] = {}
    for comparison in comparisons:
        for contender in (comparison.a, comparison.b):
            seen.setdefault(id(contender), contender)
    return list(seen.values())


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 100]."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    name: str
    api: Api
    pairs: int
    median_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    block_median_min_us: float
    block_median_max_us: float


def summarize(contender: Contender) -> Summary:
    s = contender.samples
    blocks = contender.block_medians or [math.nan]
    return Summary(
        name=contender.name,
        api=contender.api,
        pairs=len(s),
        median_us=statistics.median(s) if s else math.nan,
        p90_us=percentile(s, 90),
        p99_us=percentile(s, 99),
        mean_us=statistics.fmean(s) if s else math.nan,
        block_median_min_us=min(blocks),
        block_median_max_us=max(blocks),
    )
