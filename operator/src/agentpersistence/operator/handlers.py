"""The kopf handlers: thin decorators over :mod:`.reconcile` and :mod:`.reporting`.

Run with ``agentpersistence-operator`` (or ``kopf run -m agentpersistence.operator.handlers``).

- create, update (spec, labels or annotations, e.g. ``agentpersistence.io/reconcile-requested``)
  and resume (operator restart): one idempotent reconcile;
- delete: kopf's finalizer ``agentpersistence.io/finalizer`` holds the resource until the
  handler has removed the ConfigMap and, with ``deletionPolicy: Delete``, the storage;
- a timer re-reads the storage every ``AGENTPERSISTENCE_DRIFT_INTERVAL_SECONDS`` (300 s) and
  reports drift as ``Synced=False`` (reason ``Drifted``) without changing anything; the next
  reconcile (spec change, annotation, restart) repairs it.

Nothing here watches Pods. Injection is the admission webhook's (``webhook/handlers``), a
module of its own that ``agentpersistence-operator`` loads beside this one (:mod:`.__main__`):
it needs the webhook's certificates and sidecar image at start, which this module does not.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import kopf

from . import errors, naming, reconcile, reporting
from .aws import AwsClients
from .bodies import Outputs
from .config import OperatorConfig
from .spec import AgentPersistenceSpec, InvalidSpec, parse_spec

CONFIG = OperatorConfig.from_environ(os.environ)
"""Read once when kopf imports this module: the timer's interval is fixed at registration."""

RUNTIME = "agentpersistence_runtime"
"""Where the startup handler leaves the :class:`Runtime` in kopf's memo."""


@dataclass(frozen=True)
class Runtime:
    """What every handler shares: the AWS clients and kopf's settings (for API calls)."""

    aws: AwsClients
    settings: kopf.OperatorSettings


@kopf.on.startup(id="agentpersistence-reconciler")
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = naming.FINALIZER
    settings.posting.level = logging.CRITICAL + 1  # Events are reporting's, not log lines
    prefix = naming.KOPF_ANNOTATION_PREFIX
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix)
    memo[RUNTIME] = Runtime(AwsClients(CONFIG), settings)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    runtime = memo.get(RUNTIME)
    if isinstance(runtime, Runtime):
        await runtime.aws.close()


@kopf.on.resume(*naming.RESOURCE)
@kopf.on.create(*naming.RESOURCE)
@kopf.on.update(*naming.RESOURCE)
async def reconcile_resource(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    target = reporting.target_of(body)
    progress = Outputs()
    try:
        spec = _spec(body)
        report = await reconcile.apply(spec, target, _context(memo, logger), progress)
    except errors.ReconcileError as error:
        reporting.failed(body, patch, target, error, progress)
        raise errors.to_kopf(error) from error
    reporting.succeeded(body, patch, target, report)


@kopf.on.delete(*naming.RESOURCE)
async def release_resource(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    target = reporting.target_of(body)
    try:
        spec = _spec(body)
        release = await reconcile.release(spec, target, _context(memo, logger))
    except errors.ReconcileError as error:
        reporting.release_failed(body, error)
        raise errors.to_kopf(error) from error
    reporting.released(body, release)


@kopf.timer(
    *naming.RESOURCE,
    interval=CONFIG.drift_interval_seconds,
    initial_delay=CONFIG.drift_interval_seconds,
)
async def check_drift(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    if not reporting.drift_checkable(body):
        return
    target = reporting.target_of(body)
    try:
        spec = _spec(body)
        drift = await reconcile.observe(spec, target, _context(memo, logger))
    except errors.ReconcileError as error:
        logger.warning(f"drift check skipped: {error.message}")
        return
    reporting.drift_checked(body, patch, target, drift)


def _spec(body: kopf.Body) -> AgentPersistenceSpec:
    try:
        return parse_spec(dict(body.spec))
    except InvalidSpec as exc:
        raise errors.Terminal(str(exc), reason="InvalidSpec") from None


def _context(memo: kopf.Memo, logger: kopf.Logger) -> reconcile.Context:
    runtime = memo.get(RUNTIME)
    if not isinstance(runtime, Runtime):
        raise errors.Retryable("the operator is still starting", reason="Starting")
    return reconcile.Context(runtime.aws, CONFIG, runtime.settings, logger)
