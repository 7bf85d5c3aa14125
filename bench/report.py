"""The results of a run: a table for people, a JSON document for tools."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .runner import Comparison, Schedule, Summary

HOP_TARGET_US = 80.0
VALKEY_RATIO_TARGET = 1.0


@dataclass(frozen=True)
class ComparisonResult:
    key: str
    description: str
    kind: Literal["ratio", "difference"]
    value: float
    """Ratio of the medians, or their difference in µs."""
    round_min: float
    round_max: float
    """Range of the same quantity computed round by round (block medians)."""
    target: float | None
    ok: bool | None


@dataclass
class SidecarStats:
    backend: str
    start_ms: list[float] = field(default_factory=list)
    rss_ready_kib: int | None = None
    rss_after_kib: int | None = None
    hwm_kib: int | None = None

    @property
    def start_median_ms(self) -> float | None:
        return statistics.median(self.start_ms) if self.start_ms else None


@dataclass
class BenchResult:
    schedule: Schedule
    get_mode: str
    checkpoint_bytes: int
    messages: int
    event_loop: str
    environment: dict[str, str]
    summaries: list[Summary] = field(default_factory=list)
    comparisons: list[ComparisonResult] = field(default_factory=list)
    sidecars: list[SidecarStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def targets_met(self) -> bool:
        return all(c.ok is not False for c in self.comparisons)


def ratio(key: str, description: str, c: Comparison, target: float | None) -> ComparisonResult:
    value = statistics.median(c.a.samples) / statistics.median(c.b.samples)
    return ComparisonResult(
        key, description, "ratio", value, min(c.round_ratios), max(c.round_ratios), target,
        None if target is None else value <= target,
    )  # fmt: skip


def difference(key: str, description: str, c: Comparison, target: float | None) -> ComparisonResult:
    value = statistics.median(c.a.samples) - statistics.median(c.b.samples)
    return ComparisonResult(
        key, description, "difference", value, min(c.round_diffs), max(c.round_diffs), target,
        None if target is None else value <= target,
    )  # fmt: skip


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def _us(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def format_table(result: BenchResult) -> str:
    s = result.schedule
    lines = [
        f"put + get_tuple pair latency — {result.messages}-message checkpoint, "
        f"{result.checkpoint_bytes:,} bytes serialized; get_tuple by {result.get_mode}",
        f"{s.rounds} rounds x {s.pairs} pairs per saver (alternating blocks), "
        f"warm-up {s.warmup} pairs; async on {result.event_loop}",
        "",
        f"{'saver':<26} {'api':<6} {'median µs':>10} {'p90 µs':>10} {'p99 µs':>10} "
        f"{'block medians µs':>20} {'pairs':>7}",
    ]
    lines.append("-" * len(lines[-1]))
    for m in result.summaries:
        blocks = f"{_us(m.block_median_min_us)}..{_us(m.block_median_max_us)}"
        lines.append(
            f"{m.name:<26} {m.api:<6} {_us(m.median_us):>10} {_us(m.p90_us):>10} "
            f"{_us(m.p99_us):>10} {blocks:>20} {m.pairs:>7}"
        )
    if result.comparisons:
        lines += ["", f"{'comparison':<52} {'value':>10} {'per round':>19} {'target':>9}  "]
        lines.append("-" * 96)
        for c in result.comparisons:
            if c.kind == "ratio":
                value, rng = f"{c.value:.2f}", f"{c.round_min:.2f}..{c.round_max:.2f}"
                target = "" if c.target is None else f"≤ {c.target:.2f}"
            else:
                value = f"{c.value:+.1f} µs"
                rng = f"{c.round_min:+.0f}..{c.round_max:+.0f} µs"
                target = "" if c.target is None else f"≤ {c.target:.0f} µs"
            verdict = {True: "met", False: "MISSED", None: ""}[c.ok]
            lines.append(f"{c.description:<52} {value:>10} {rng:>19} {target:>9}  {verdict}")
    if result.sidecars:
        lines += [
            "",
            f"{'sidecar':<10} {'start→ready median':>19} {'samples ms':<34} "
            f"{'RSS ready':>10} {'RSS after':>10} {'peak':>10}",
        ]
        lines.append("-" * 98)
        for sc in result.sidecars:
            med = sc.start_median_ms
            samples = ", ".join(f"{x:.0f}" for x in sc.start_ms)
            lines.append(
                f"{sc.backend:<10} {'-' if med is None else f'{med:.0f} ms':>19} {samples:<34} "
                f"{_mib(sc.rss_ready_kib):>10} {_mib(sc.rss_after_kib):>10} {_mib(sc.hwm_kib):>10}"
            )
    for note in result.notes:
        lines.append(f"note: {note}")
    env = result.environment
    load = (
        f"; load average {env.get('load_average_start', '?')} → {env.get('load_average_end', '?')}"
    )
    lines.append(f"(run took {result.seconds:.1f} s on {env.get('cpus', '?')} CPUs{load})")
    return "\n".join(lines)


def to_json(result: BenchResult) -> dict[str, Any]:
    doc = dataclasses.asdict(result)
    for sc, raw in zip(result.sidecars, doc["sidecars"], strict=True):
        raw["start_median_ms"] = sc.start_median_ms
    doc["targets_met"] = result.targets_met()
    return doc


def write_json(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_json(result), indent=2, allow_nan=True, default=str)
    path.write_text(text + "\n")
