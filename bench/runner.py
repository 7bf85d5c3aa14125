"""Alternating blocks: every comparison's two contenders run back to back in each round.

A round runs, for each comparison ``(A, B)``, a block of A then a block of B (B then A on
odd rounds), so slow drifts of the machine (other processes, CPU frequency) hit both
sides alike. Every contender first runs a discarded warm-up block. A contender is a name,
an API (sync or async), an operation and a *block function*: it runs ``n`` timed
operations, tidies up untimed (e.g. deletes the threads it finished, so every block sees
the same amount of stored data) and returns the latencies in µs. A comparison without a
``b`` (its peer could not run) still measures ``a``.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Api = Literal["sync", "async"]
BlockFn = Callable[[int], list[float]]
"""Run ``n`` timed operations (untimed set-up and tidying around them); their µs."""


@dataclass(eq=False)
class Contender:
    name: str
    api: Api
    block: BlockFn
    op: str = "put+get_tuple"
    scale: float = 1.0
    """Block size relative to the schedule's (slow operations run smaller blocks); both
    sides of a comparison should share it."""
    samples: list[float] = field(default_factory=list)
    """Latency of each timed operation, µs."""
    block_medians: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.api})"


@dataclass(eq=False)
class Comparison:
    """``a`` measured against ``b``: a ratio, a difference, or both."""

    key: str
    a: Contender
    b: Contender | None
    round_ratios: list[float] = field(default_factory=list)
    round_diffs: list[float] = field(default_factory=list)


@dataclass
class Schedule:
    rounds: int
    pairs: int
    """Operations per block (for checkpoints, put + get_tuple pairs)."""
    warmup: int


def run_block(contender: Contender, n: int) -> list[float]:
    gc.collect()
    return contender.block(max(1, round(n * contender.scale)))


def run(comparisons: list[Comparison], schedule: Schedule, progress: Callable[[str], None]) -> None:
    contenders = contenders_of(comparisons)
    progress(f"warm-up: {schedule.warmup} operations per contender")
    for contender in contenders:
        run_block(contender, schedule.warmup)
    for r in range(schedule.rounds):
        done: dict[int, float] = {}
        for comparison in comparisons:
            pair = [x for x in (comparison.a, comparison.b) if x is not None]
            for contender in pair if r % 2 == 0 else reversed(pair):
                if id(contender) in done:
                    continue
                samples = run_block(contender, schedule.pairs)
                contender.samples.extend(samples)
                done[id(contender)] = statistics.median(samples)
                contender.block_medians.append(done[id(contender)])
            if comparison.b is not None:
                a, b = done[id(comparison.a)], done[id(comparison.b)]
                comparison.round_ratios.append(a / b)
                comparison.round_diffs.append(a - b)
        progress(f"round {r + 1}/{schedule.rounds} done")


def contenders_of(comparisons: list[Comparison]) -> list[Contender]:
    """Every contender once, in order of appearance."""
    seen: dict[int, Contender] = {}
    for comparison in comparisons:
        for contender in (comparison.a, comparison.b):
            if contender is not None:
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
    op: str
    samples: int
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
        op=contender.op,
        samples=len(s),
        median_us=statistics.median(s) if s else math.nan,
        p90_us=percentile(s, 90),
        p99_us=percentile(s, 99),
        mean_us=statistics.fmean(s) if s else math.nan,
        block_median_min_us=min(blocks),
        block_median_max_us=max(blocks),
    )
