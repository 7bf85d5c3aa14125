"""The ``Ready``, ``Synced`` and ``Terminal`` conditions, computed from what a pass found.

Pure functions: the handlers pass in the previous conditions, the generation they worked on
and what happened; they get the new list. A condition keeps its ``lastTransitionTime`` while
its status does not change, and every condition carries the ``observedGeneration`` it was
computed for (ACK's and Kubernetes' conventions).

- ``Ready``: the storage exists and the sidecar's config is written. A failed update does not
  make it False (the storage is still there); a missing resource found by the drift check
  does.
- ``Synced``: the storage matches the spec: the last reconcile applied it and the last drift
  check found no difference.
- ``Terminal``: the last reconcile failed in a way retrying cannot fix.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from .bodies import Condition, ConditionStatus, ConditionType
from .errors import ReconcileError

RECONCILED = "Reconciled"
DRIFTED = "Drifted"
MISSING = "ResourceMissing"
IN_SYNC = "InSync"
NO_ERROR = "NoError"
CHECKED_REASONS = (RECONCILED, DRIFTED, IN_SYNC)
"""Synced reasons after which a drift check makes sense (not after an error)."""


def now() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make(
    kind: ConditionType, status: bool, reason: str, message: str, generation: int
) -> Condition:
    value: ConditionStatus = "True" if status else "False"
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
        "observedGeneration": generation,
    }


def find(conditions: Sequence[Condition], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def is_true(conditions: Sequence[Condition], kind: ConditionType) -> bool:
    found = find(conditions, kind)
    return found is not None and found.get("status") == "True"


def merge(previous: Sequence[Condition], updates: Sequence[Condition]) -> list[Condition]:
    """``previous`` with ``updates`` applied; unchanged statuses keep their transition time."""
    merged = {c["type"]: c for c in previous if "type" in c}
    for update in updates:
        old = merged.get(update["type"])
        if old is not None and old.get("status") == update["status"]:
            update = {**update, "lastTransitionTime": old["lastTransitionTime"]}
        merged[update["type"]] = update
    order = ("Ready", "Synced", "Terminal")
    return sorted(merged.values(), key=lambda c: order.index(c["type"]))


def reconciled(previous: Sequence[Condition], generation: int, summary: str) -> list[Condition]:
    """After a pass that applied the spec."""
    return merge(
        previous,
        [
            make("Ready", True, RECONCILED, summary, generation),
            make("Synced", True, RECONCILED, summary, generation),
            make("Terminal", False, NO_ERROR, "", generation),
        ],
    )


def failed(
    previous: Sequence[Condition], generation: int, error: ReconcileError
) -> list[Condition]:
    """After a pass that stopped at ``error``; Ready stays True if it was."""
    updates = [
        make("Synced", False, error.reason, error.message, generation),
        make("Terminal", error.terminal, error.reason if error.terminal else NO_ERROR,
             error.message if error.terminal else "", generation),
    ]  # fmt: skip
    if not is_true(previous, "Ready"):
        updates.append(make("Ready", False, error.reason, error.message, generation))
    return merge(previous, updates)


def drifted(
    previous: Sequence[Condition], generation: int, differences: Sequence[str], missing: bool
) -> list[Condition]:
    """After a drift check that found ``differences`` (``missing``: a resource is gone)."""
    message = "; ".join(differences)
    updates = [make("Synced", False, DRIFTED, message, generation)]
    if missing:
        updates.append(make("Ready", False, MISSING, message, generation))
    return merge(previous, updates)


def in_sync(previous: Sequence[Condition], generation: int) -> list[Condition]:
    """After a drift check that found nothing: undo what an earlier check reported."""
    updates = []
    synced, ready = find(previous, "Synced"), find(previous, "Ready")
    if synced is not None and synced.get("reason") == DRIFTED:
        updates.append(make("Synced", True, IN_SYNC, "no drift found", generation))
    if ready is not None and ready.get("reason") == MISSING:
        updates.append(make("Ready", True, IN_SYNC, "every resource exists", generation))
    return merge(previous, updates)
