"""How long the request being served may still run, for code that retries on its own.

The dispatcher cancels a request when its budget runs out and answers ``DeadlineExceeded``,
which cannot say why. Code with retries of its own (botocore's) asks :func:`may_wait` before
each retry, and stops while there is still time to answer with the real cause
(``BackendUnavailable`` naming the unreachable endpoint). The budget lives in a context
variable: each request task sees its own; code outside any request (startup, provisioning)
sees none and retries as configured.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

_END: ContextVar[tuple[float, float] | None] = ContextVar("agentpersistence_deadline", default=None)
"""``(monotonic end, budget in seconds)`` of the request this context serves."""

RESERVE_SHARE = 0.25
"""Share of a request's budget kept for answering after the last attempt ..."""
RESERVE_MAX_S = 1.0
"""... but never more than this: a long budget keeps retrying until a second before its end."""


def begin(budget: float) -> None:
    """The request served in this context may run ``budget`` seconds from now."""
    _END.set((time.monotonic() + budget, budget))


def may_wait(seconds: float) -> bool:
    """Whether a retry after waiting up to ``seconds`` still leaves time to answer."""
    end = _END.get()
    if end is None:
        return True
    deadline, budget = end
    reserve = min(budget * RESERVE_SHARE, RESERVE_MAX_S)
    return deadline - time.monotonic() - seconds >= reserve
