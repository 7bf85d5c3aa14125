"""Runs ``agentpersistence-operator`` held at chosen AWS calls, for tests that kill it there.

``python operator_hold.py [operator arguments]`` is ``python -m agentpersistence.operator``
plus botocore handlers read from :data:`HOLDS_ENV`: a JSON list of ``{"event": ..., "name":
...}``, where ``event`` is a botocore event such as ``after-call.s3.CreateBucket`` (the call
has been answered) and ``name`` a resource the call's parameters name (a memory id counts
as naming the memory ``name`` when it starts with ``name-``). The first matching call of each
hold writes ``<HOLD_DIR_ENV>/<position>.held`` and then waits forever: only the task that
made the call stops, the operator keeps running, and the test decides when to SIGKILL it.

Self-contained (standard library and botocore only): it runs in the operator's process,
where the rig is not importable.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

HOLDS_ENV = "AGENTPERSISTENCE_TEST_HOLDS"
HOLD_DIR_ENV = "AGENTPERSISTENCE_TEST_HOLD_DIR"
PARAMS_KEY = "agentpersistence_held_params"
"""Where ``before-parameter-build`` leaves the call's parameters for the ``after-call``."""


def names_in(value: Any) -> set[str]:
    """Every string among the call's parameters (nested ones included)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {name for item in value.values() for name in names_in(item)}
    if isinstance(value, list):
        return {name for item in value for name in names_in(item)}
    return set()


def _keep_params(params: Any, context: dict[str, Any], **_: Any) -> None:
    context[PARAMS_KEY] = names_in(params)


class Hold:
    """One hold: the first call ``event`` on ``name`` stops its task for good."""

    def __init__(self, event: str, name: str, marker: Path) -> None:
        self.event = event
        self.name = name
        self.marker = marker
        self.used = False

    def matches(self, names: set[str]) -> bool:
        return any(n == self.name or n.startswith(f"{self.name}-") for n in names)

    async def __call__(self, context: dict[str, Any], **_: Any) -> None:
        if self.used or not self.matches(context.get(PARAMS_KEY, set())):
            return
        self.used = True
        self.marker.write_text(f"{self.event} {self.name}\n")
        await asyncio.Event().wait()  # never set: the test kills the process


def install(holds: list[dict[str, str]], directory: Path) -> None:
    from botocore import handlers

    handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _keep_params))
    for position, hold in enumerate(holds):
        marker = directory / f"{position}.held"
        handlers.BUILTIN_HANDLERS.append((hold["event"], Hold(hold["event"], hold["name"], marker)))


def main() -> None:
    # Run as a script, this file's folder (the rig) comes first on sys.path, where its
    # valkey.py would shadow the valkey package: the operator must not see it.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    install(json.loads(os.environ.get(HOLDS_ENV) or "[]"), Path(os.environ[HOLD_DIR_ENV]))
    from agentpersistence.operator.__main__ import main as run

    run(sys.argv[1:])


if __name__ == "__main__":
    main()
