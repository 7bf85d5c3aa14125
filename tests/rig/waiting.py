"""Waiting for a condition in another process or server: poll it until it holds, or fail the
test saying what was awaited. For conditions with no event to wait on (a pod's logs, an
object's status read through kubectl)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], what: str, timeout: float, interval: float = 0.2
) -> T:
    """Call ``probe`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
