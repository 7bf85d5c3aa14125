"""What the operator tells about a pass: the status patch and the Kubernetes Events.

Handlers call one function per outcome. Each writes ``status.conditions`` (through
:mod:`.conditions`), ``status.observedGeneration`` and ``status.outputs`` into kopf's
``patch`` (applied by kopf when the handler returns or raises) and posts Events: one per
resource created, updated, adopted, deleted or retained (Normal), one per error or drift
(Warning). A pass that changed nothing posts nothing. kopf's own log messages ("handler
succeeded", "failed temporarily") stay in the log: ``handlers`` turns kopf's posting of log
messages off, so every Event on the resource is one of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import kopf

from . import conditions, ownership, reconcile
from .bodies import Condition, Outputs
from .errors import ReconcileError
from .reconcile import Drift, Release, Report, Target


def target_of(body: kopf.Body) -> Target:
    """The resource as a :class:`.reconcile.Target` (identity, generation, known outputs)."""
    meta = body.metadata
    outputs = cast(Outputs, dict(body.status.get("outputs") or {}))
    return Target(
        namespace=str(meta.namespace),
        name=str(meta.name),
        uid=str(meta.uid),
        generation=int(meta.get("generation") or 0),
        outputs=outputs,
        intended=ownership.intents(meta.annotations),
    )


def previous_conditions(body: kopf.Body) -> list[Condition]:
    found = body.status.get("conditions") or []
    return [cast(Condition, dict(c)) for c in found if isinstance(c, Mapping) and "type" in c]


def succeeded(body: kopf.Body, patch: kopf.Patch, target: Target, report: Report) -> None:
    """After :func:`.reconcile.apply`: Ready, Synced, outputs; an Event per change."""
    new = conditions.reconciled(previous_conditions(body), target.generation, report.summary)
    _write(patch, target, new)
    patch.status["outputs"] = _replacing(target.outputs, report.outputs)
    for change in report.changes:
        _normal(body, change.action, change.message)
    for name in reconcile.dropped(target.outputs, report.outputs):
        message = f"{name} is no longer described by the spec; left as it is"
        _warning(body, "NoLongerManaged", message)


def failed(
    body: kopf.Body, patch: kopf.Patch, target: Target, error: ReconcileError, progress: Outputs
) -> None:
    """After a pass that raised ``error``: Synced (and Terminal) say why, the outputs of what
    is in place are added (nothing removed); a warning Event."""
    new = conditions.failed(previous_conditions(body), target.generation, error)
    _write(patch, target, new)
    if progress:
        patch.status["outputs"] = dict(progress)
    _warning(body, error.reason, error.message)


def drift_checked(body: kopf.Body, patch: kopf.Patch, target: Target, drift: Drift) -> None:
    """After a drift check: Synced=False (and Ready=False if something is gone), or undo it."""
    previous = previous_conditions(body)
    if drift.differences:
        new = conditions.drifted(previous, target.generation, drift.differences, drift.missing)
        if conditions.find(previous, "Synced") != conditions.find(new, "Synced"):
            message = "; ".join(drift.differences)
            _warning(body, conditions.DRIFTED, message)
    else:
        new = conditions.in_sync(previous, target.generation)
    if new != previous:
        patch.status["conditions"] = new


def released(body: kopf.Body, release: Release) -> None:
    """After :func:`.reconcile.release`: an Event per resource deleted or retained."""
    for description in release.deleted:
        _normal(body, "Deleted", f"Deleted {description}")
    for description in release.retained:
        _normal(body, "Retained", f"Retained {description}")


def drift_checkable(body: kopf.Body) -> bool:
    """Whether the last reconcile of the current generation succeeded (else there is nothing
    to compare against yet, or a reconcile is pending or failing and says so itself)."""
    previous = previous_conditions(body)
    generation = int(body.metadata.get("generation") or 0)
    synced = conditions.find(previous, "Synced")
    return (
        body.status.get("observedGeneration") == generation
        and synced is not None
        and synced.get("reason") in conditions.CHECKED_REASONS
    )


def release_failed(body: kopf.Body, error: ReconcileError) -> None:
    """After :func:`.reconcile.release` raised ``error`` (kopf keeps the finalizer and retries,
    unless the error is terminal)."""
    _warning(body, error.reason, error.message)


def _normal(body: kopf.Body, reason: str, message: str) -> None:
    kopf.event(body, type="Normal", reason=reason, message=message)


def _warning(body: kopf.Body, reason: str, message: str) -> None:
    """``kopf.event``, not ``kopf.warn``: those obey the posting level, which is off."""
    kopf.event(body, type="Warning", reason=reason, message=message)


def _write(patch: kopf.Patch, target: Target, new: list[Condition]) -> None:
    patch.status["conditions"] = new
    patch.status["observedGeneration"] = target.generation


def _replacing(previous: Outputs, current: Outputs) -> dict[str, Any]:
    """A merge patch that sets ``current`` and removes the keys it no longer has."""
    removed: dict[str, Any] = {key: None for key in previous if key not in current}
    return removed | dict(current)
