"""The results of a run: a table for people, a JSON document for tools."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .runner import Api, Comparison, Schedule, Summary

HOP_TARGET_US = 80.0
VALKEY_RATIO_TARGET = 1.0
DYNAMODB_RATIO_TARGET = 0.6


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
class Unavailable:
    """A contender that could not run: the row says why, with the exact error."""

    name: str
    api: Api
    op: str
    error: str


@dataclass
class CallPattern:
    calls: dict[str, int]
    """``service:Operation`` → how many calls one operation made."""
    times: int
    """How many of the counted operations made exactly these calls."""


@dataclass
class CallCount:
    op: str
    saver: str
    patterns: list[CallPattern]


@dataclass
class GroupResult:
    key: str
    title: str
    header: list[str] = field(default_factory=list)
    schedule: Schedule | None = None
    summaries: list[Summary] = field(default_factory=list)
    unavailable: list[Unavailable] = field(default_factory=list)
    comparisons: list[ComparisonResult] = field(default_factory=list)
    calls: list[CallCount] = field(default_factory=list)
    calls_header: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


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
    environment: dict[str, str]
    event_loop: str
    groups: list[GroupResult] = field(default_factory=list)
    sidecars: list[SidecarStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def targets_met(self) -> bool:
        return all(c.ok is not False for g in self.groups for c in g.comparisons)


def _medians(c: Comparison) -> tuple[float, float]:
    assert c.b is not None, "a comparison needs both sides"
    return statistics.median(c.a.samples), statistics.median(c.b.samples)


def ratio(key: str, description: str, c: Comparison, target: float | None) -> ComparisonResult:
    a, b = _medians(c)
    value = a / b
    return ComparisonResult(
        key, description, "ratio", value, min(c.round_ratios), max(c.round_ratios), target,
        None if target is None else value <= target,
    )  # fmt: skip


def difference(key: str, description: str, c: Comparison, target: float | None) -> ComparisonResult:
    a, b = _medians(c)
    value = a - b
    return ComparisonResult(
        key, description, "difference", value, min(c.round_diffs), max(c.round_diffs), target,
        None if target is None else value <= target,
    )  # fmt: skip


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def _us(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def format_calls(pattern: dict[str, int]) -> str:
    """``{"dynamodb:Query": 2, "dynamodb:GetItem": 1}`` → ``2x Query + GetItem``."""
    if not pattern:
        return "none"
    parts = []
    for name, count in pattern.items():
        service, _, op = name.partition(":")
        label = op if service == "dynamodb" else f"{service}:{op}"
        parts.append(label if count == 1 else f"{count}x {label}")
    return " + ".join(parts)


def _calls_cell(count: CallCount) -> str:
    patterns = sorted(count.patterns, key=lambda p: -p.times)
    total = sum(p.times for p in patterns)
    if len(patterns) == 1:
        return format_calls(patterns[0].calls)
    return "; ".join(f"{format_calls(p.calls)} ({p.times}/{total})" for p in patterns)


def _group_table(group: GroupResult) -> list[str]:
    lines = [f"== {group.title} ==", *group.header]
    if group.schedule is not None:
        s = group.schedule
        lines.append(
            f"{s.rounds} rounds x {s.pairs} per contender (alternating blocks), warm-up {s.warmup}"
        )
    lines.append("")
    head = (
        f"{'contender':<26} {'api':<6} {'operation':<18} {'median µs':>10} {'p90 µs':>10} "
        f"{'p99 µs':>10} {'block medians µs':>20} {'n':>6}"
    )
    lines += [head, "-" * len(head)]
    for m in group.summaries:
        blocks = f"{_us(m.block_median_min_us)}..{_us(m.block_median_max_us)}"
        lines.append(
            f"{m.name:<26} {m.api:<6} {m.op:<18} {_us(m.median_us):>10} {_us(m.p90_us):>10} "
            f"{_us(m.p99_us):>10} {blocks:>20} {m.samples:>6}"
        )
    for u in group.unavailable:
        lines.append(f"{u.name:<26} {u.api:<6} {u.op:<18} peer unavailable: {u.error}")
    if group.comparisons:
        lines += ["", f"{'comparison':<60} {'value':>10} {'per round':>19} {'target':>9}  "]
        lines.append("-" * 104)
        for c in group.comparisons:
            if c.kind == "ratio":
                value, rng = f"{c.value:.2f}", f"{c.round_min:.2f}..{c.round_max:.2f}"
                target = "" if c.target is None else f"≤ {c.target:.2f}"
            else:
                value = f"{c.value:+,.1f} µs"
                rng = f"{c.round_min:+,.0f}..{c.round_max:+,.0f} µs"
                target = "" if c.target is None else f"≤ {c.target:.0f} µs"
            verdict = {True: "met", False: "MISSED", None: ""}[c.ok]
            lines.append(f"{c.description:<60} {value:>10} {rng:>19} {target:>9}  {verdict}")
    if group.calls:
        savers = list(dict.fromkeys(c.saver for c in group.calls))
        ops = list(dict.fromkeys(c.op for c in group.calls))
        cells = {(c.op, c.saver): _calls_cell(c) for c in group.calls}
        width = max(24, *(len(v) for v in cells.values()))
        first = max(len(op) for op in ops)
        lines += ["", *group.calls_header]
        head = f"{'operation':<{first}}  " + "  ".join(f"{s:<{width}}" for s in savers)
        lines += [head.rstrip(), "-" * len(head.rstrip())]
        for op in ops:
            cols = "  ".join(f"{cells.get((op, s), '-'):<{width}}" for s in savers)
            row = f"{op:<{first}}  {cols}"
            lines.append(row.rstrip())
    for note in group.notes:
        lines.append(f"note: {note}")
    lines.append(f"({group.key} took {group.seconds:.1f} s)")
    return lines


def format_table(result: BenchResult) -> str:
    lines: list[str] = []
    for group in result.groups:
        lines += [*_group_table(group), ""]
    if result.sidecars:
        lines += [
            f"{'sidecar':<16} {'start→ready median':>19} {'samples ms':<28} "
            f"{'RSS ready':>10} {'RSS after':>10} {'peak':>10}",
        ]
        lines.append("-" * 98)
        for sc in result.sidecars:
            med = sc.start_median_ms
            samples = ", ".join(f"{x:.0f}" for x in sc.start_ms)
            lines.append(
                f"{sc.backend:<16} {'-' if med is None else f'{med:.0f} ms':>19} {samples:<28} "
                f"{_mib(sc.rss_ready_kib):>10} {_mib(sc.rss_after_kib):>10} {_mib(sc.hwm_kib):>10}"
            )
    for note in result.notes:
        lines.append(f"note: {note}")
    env = result.environment
    load = (
        f"; load average {env.get('load_average_start', '?')} → {env.get('load_average_end', '?')}"
    )
    lines.append(
        f"(run took {result.seconds:.1f} s on {env.get('cpus', '?')} CPUs{load}; "
        f"async rows on {result.event_loop})"
    )
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
