"""The times the AgentCore Memory and Bedrock session backends stamp on what they write.

Both list newest first by that time, so a checkpoint is stamped with the time inside its id
(:func:`checkpoint_stamp`): the storage's order is then the checkpoints' order, whoever wrote
them and whenever they were copied. Anything else is stamped by a :class:`Clock`.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

ONE_US = dt.timedelta(microseconds=1)
_UUID_EPOCH = 0x01B21DD213814000
"""100 ns intervals between the UUID epoch (1582-10-15) and the Unix epoch."""


class Clock:
    """Wall-clock time, strictly increasing within this sidecar (per clock)."""

    def __init__(self) -> None:
        self._last = at(0)

    def now(self) -> dt.datetime:
        now = max(at(time.time()), self._last + ONE_US)
        self._last = now
        return now


def at(seconds: float) -> dt.datetime:
    """The UTC time ``seconds`` after the Unix epoch."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def checkpoint_stamp(checkpoint_id: str, clock: Clock) -> dt.datetime:
    """A checkpoint's time: the time in its id (equal on every retry), else now."""
    seconds = checkpoint_time(checkpoint_id)
    return clock.now() if seconds is None else at(seconds)


def checkpoint_time(checkpoint_id: str) -> float | None:
    """The creation time in a LangGraph checkpoint id (a version 6 or 1 UUID), if it has one."""
    try:
        value = uuid.UUID(checkpoint_id)
    except ValueError:
        return None
    if value.version == 6:
        n = value.int >> 64
        ticks = ((n >> 32) << 28) | (((n >> 16) & 0xFFFF) << 12) | (n & 0x0FFF)
    elif value.version == 1:
        ticks = value.time
    else:
        return None
    seconds = (ticks - _UUID_EPOCH) / 1e7
    if not 946_684_800 <= seconds <= time.time() + 86_400:  # 2000-01-01 .. tomorrow
        return None
    return seconds
