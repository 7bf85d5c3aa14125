"""The operator's own Kubernetes API calls (besides what kopf does for its handlers).

They go through kopf's authenticated client, so they use the credentials kopf logged in with
(in-cluster ServiceAccount, or a kubeconfig) and kopf's connection pool: no second client
library. Writes are server-side applies with the operator's field manager, so they are
idempotent and never fight other writers over fields they do not own. Errors leave as
:class:`.errors.ReconcileError` (through :func:`.errors.guarded`).

kopf exposes this client only from its internal ``kopf._cogs.clients.api`` module; the kopf
version is pinned exactly in ``pyproject.toml`` and this module is the one place that uses it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api
from kopf._cogs.clients import errors as kube_errors

from . import errors, naming

Logger = kopf.Logger
BACKOFFS = (0.5, 1.0)
"""Retries of one call by kopf's client (5xx, 429, connection errors); kopf's handler retries
take over after that."""


def configmap_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


async def read(
    path: str, *, settings: kopf.OperatorSettings, logger: Logger
) -> dict[str, Any] | None:
    """The object at ``path``, or None if there is none."""
    with errors.guarded("kube", path):
        try:
            found: dict[str, Any] = await api.get(path, settings=settings, logger=logger)
        except kube_errors.APINotFoundError:
            return None
    return found


async def apply(
    path: str, body: Mapping[str, Any], *, settings: kopf.OperatorSettings, logger: Logger
) -> dict[str, Any]:
    """Server-side apply ``body`` at ``path`` (creates it if missing); the stored object."""
    query = f"?fieldManager={naming.FIELD_MANAGER}&force=true"
    with errors.guarded("kube", path):
        response = await api.request(
            "patch",
            path + query,
            payload=json.loads(json.dumps(body)),
            headers={"Content-Type": "application/apply-patch+yaml"},
            backoffs=BACKOFFS,
            settings=settings,
            logger=logger,
        )
        async with response:
            stored: dict[str, Any] = await response.json()
    return stored


async def merge_patch(
    path: str, body: Mapping[str, Any], *, settings: kopf.OperatorSettings, logger: Logger
) -> None:
    """A JSON merge patch of the object at ``path`` (``None`` values remove keys); a missing
    object is an error, never created."""
    with errors.guarded("kube", path):
        await api.patch(
            path,
            payload=json.loads(json.dumps(body)),
            headers={"Content-Type": "application/merge-patch+json"},
            settings=settings,
            logger=logger,
        )


async def delete(path: str, *, settings: kopf.OperatorSettings, logger: Logger) -> None:
    """Delete the object at ``path``; nothing if it is gone already."""
    with errors.guarded("kube", path), contextlib.suppress(kube_errors.APINotFoundError):
        await api.delete(path, settings=settings, logger=logger)
