"""kopf wiring of the injection: an index, the mutating handler, the webhook server.

Importing this module registers, on kopf's default registry:

- ``@kopf.index`` :data:`INDEX_ID`: every ``AgentPersistence`` by ``(namespace, name)``, as
  :class:`~.payloads.AgentPersistenceView`, kept current by kopf's watch (no API call per
  admission request). On a miss the handler reads the resource once from the API server
  (bounded by :data:`READ_THROUGH_TIMEOUT_S`): right after the operator starts, its webhook
  may answer before the index is filled, and a resource created a moment before the pod may
  not be indexed yet; only a resource that truly does not exist gets the pod refused;
- two ``@kopf.on.mutate`` handlers on pods, ``CREATE`` only, one per opt-in route
  (:class:`.inject.Route`), both answering through :func:`admit`: it applies
  :func:`.inject.inject`'s patch, or rejects the pod (HTTP 403) with the refusal's message.
  :data:`WEBHOOK_ID` takes pods labelled ``agentpersistence.io/inject: "true"``;
  :data:`NAMESPACE_WEBHOOK_ID` takes pods without that label that carry the name annotation.
  kopf serves each handler at ``/<handler id>`` and runs only that one, so a pod reaches the
  namespace handler only through the chart's namespace entry (whose namespaceSelector
  requires an enabled namespace: the handler trusts it, admission requests carry no
  namespace labels);
- ``@kopf.on.startup``: reads :mod:`.settings` from the environment and sets
  ``settings.admission.server`` to a :class:`kopf.WebhookServer` on our own certificates, with
  ``settings.admission.managed = None``: the Helm chart ships the
  ``MutatingWebhookConfiguration`` (5 s timeout, selectors, ``reinvocationPolicy: IfNeeded``),
  one entry pointing at :data:`WEBHOOK_PATH`, the other at :data:`NAMESPACE_WEBHOOK_PATH`.

No handler, timer or watch on Pods: the operator needs no RBAC on pods. Run with
``kopf run -m agentpersistence.operator.webhook.handlers`` beside the operator's own modules.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import os
from collections.abc import Mapping
from typing import Any, Final, cast

import kopf

from agentpersistence.operator import errors, kube, naming
from agentpersistence.operator.bodies import Status

from . import inject
from .patching import apply_patch
from .payloads import AgentPersistenceView, PatchOperation, Pod
from .settings import InjectionSettings, ServerSettings, injection_from_env, server_from_env

INDEX_ID: Final = "agentpersistences_by_name"
"""The index's id, and so the keyword argument kopf passes it to handlers under."""
WEBHOOK_ID: Final = "inject-sidecar"
WEBHOOK_PATH: Final = f"/{WEBHOOK_ID}"
"""The URL path the label route's webhook entry must call (kopf serves each handler at its
id)."""
NAMESPACE_WEBHOOK_ID: Final = "inject-sidecar-namespace"
NAMESPACE_WEBHOOK_PATH: Final = f"/{NAMESPACE_WEBHOOK_ID}"
"""The URL path the namespace route's webhook entry must call."""
STARTUP_ID: Final = "agentpersistence-webhook-server"
MEMO_KEY: Final = "agentpersistence_injection"
"""Where the startup handler leaves :class:`InjectionSettings` in the operator's memo."""
KOPF_SETTINGS_KEY: Final = "agentpersistence_webhook_kopf_settings"
"""Where it leaves kopf's settings, for the read-through (kopf's API client needs them)."""
REFUSAL_CODE: Final = 403
UNAVAILABLE_CODE: Final = 503
READ_THROUGH_TIMEOUT_S: Final = 2.0
"""Bound of the read-through on an index miss; the webhook's own timeout is 5 s."""

IndexKey = tuple[str, str]
AgentPersistenceIndex = kopf.Index[IndexKey, AgentPersistenceView]


class WebhookNotConfigured(kopf.PermanentError):
    """The mutating handler ran before (or without) the startup handler."""


# --------------------------------------------------------------------------- startup


@kopf.on.startup(id=STARTUP_ID)
def configure_webhook(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Reads the settings from the environment; fails the operator's start when invalid."""
    configure(settings, memo, os.environ)


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, env: Mapping[str, str]) -> None:
    """What :func:`configure_webhook` does, with the environment passed in."""
    memo[MEMO_KEY] = injection_from_env(env)
    memo[KOPF_SETTINGS_KEY] = settings
    server = server_from_env(env)
    _check_certificates(server)
    settings.admission.server = webhook_server(server)
    settings.admission.managed = None


def webhook_server(server: ServerSettings) -> kopf.WebhookServer:
    """kopf's HTTPS server on our certificates; it reloads them when the files change."""
    return kopf.WebhookServer(
        addr=server.addr,
        port=server.port,
        certfile=str(server.certfile),
        pkeyfile=str(server.pkeyfile),
        cafile=str(server.cafile),
    )


def _check_certificates(server: ServerSettings) -> None:
    missing = [str(p) for p in (server.certfile, server.pkeyfile) if not p.is_file()]
    if missing:
        raise kopf.PermanentError(
            f"the webhook's certificate files are missing: {', '.join(missing)} (mount the "
            "chart's webhook Secret, or set AGENTPERSISTENCE_WEBHOOK_CERT_DIR)"
        )


# --------------------------------------------------------------------------- index


@kopf.index(*naming.RESOURCE, id=INDEX_ID)
def index_agentpersistence(
    name: str | None,
    namespace: str | None,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[IndexKey, AgentPersistenceView]:
    return {(namespace or "", name or ""): view(name or "", spec, status)}


def view(name: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> AgentPersistenceView:
    """A detached copy of what the injection reads (kopf's bodies are views)."""
    return {
        "name": name,
        "spec": copy.deepcopy(dict(spec)),
        "status": cast(Status, copy.deepcopy(dict(status))),
    }


def lookup(index: AgentPersistenceIndex, namespace: str, name: str) -> AgentPersistenceView | None:
    store = index.get((namespace, name))
    return next(iter(store), None) if store is not None else None


async def find(
    index: AgentPersistenceIndex, namespace: str, name: str, memo: kopf.Memo, logger: kopf.Logger
) -> AgentPersistenceView | None:
    """The resource from the index, else from the API server, else None (it does not exist)."""
    found = lookup(index, namespace, name)
    if found is not None:
        return found
    settings = memo.get(KOPF_SETTINGS_KEY)
    if not isinstance(settings, kopf.OperatorSettings):
        return None
    return await read_through(namespace, name, settings, logger)


async def read_through(
    namespace: str, name: str, settings: kopf.OperatorSettings, logger: kopf.Logger
) -> AgentPersistenceView | None:
    """One GET of the resource; a failure or timeout refuses the pod for now (503: retry)."""
    path = f"/apis/{naming.API_VERSION}/namespaces/{namespace}/{naming.PLURAL}/{name}"
    try:
        async with asyncio.timeout(READ_THROUGH_TIMEOUT_S):
            body = await kube.read(path, settings=settings, logger=logger)
    except (TimeoutError, errors.ReconcileError) as exc:
        raise kopf.AdmissionError(
            f"cannot check that AgentPersistence {name!r} exists in namespace {namespace!r} "
            f"({str(exc) or 'timed out'}); the pod's controller retries its creation",
            code=UNAVAILABLE_CODE,
        ) from None
    if body is None:
        return None
    return view(name, body.get("spec") or {}, body.get("status") or {})


# --------------------------------------------------------------------------- admission


@kopf.on.mutate(
    "v1",
    "pods",
    id=WEBHOOK_ID,
    operations=["CREATE"],
    labels={inject.INJECT_LABEL: "true"},
    side_effects=False,
)
async def inject_sidecar(**kwargs: Any) -> None:
    """The label route: a pod labelled ``agentpersistence.io/inject: "true"``."""
    await admit(inject.Route.LABEL, **kwargs)


@kopf.on.mutate(
    "v1",
    "pods",
    id=NAMESPACE_WEBHOOK_ID,
    operations=["CREATE"],
    labels={inject.INJECT_LABEL: kopf.ABSENT},
    annotations={inject.NAME_ANNOTATION: kopf.PRESENT},
    side_effects=False,
)
async def inject_sidecar_in_namespace(**kwargs: Any) -> None:
    """The namespace route: an annotated pod without the inject label, in an enabled
    namespace. kopf's filters skip every other pod, which is then admitted unchanged."""
    await admit(inject.Route.NAMESPACE, **kwargs)


async def admit(
    route: inject.Route,
    *,
    body: kopf.Body,
    namespace: str | None,
    patch: kopf.Patch,
    warnings: list[str],
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """Answers one pod creation that came by ``route`` (kopf's keyword arguments): the
    sidecar's patch, nothing, or a rejection."""
    pod = cast(Pod, dict(body))
    name = inject.requested_name(pod)
    index = cast(AgentPersistenceIndex, kwargs[INDEX_ID])
    resource = None
    wanted = inject.opted_in(pod, route) and not inject.already_injected(pod)
    if name is not None and wanted:  # reinvocations and other pods look nothing up
        resource = await find(index, namespace or "", name, memo, logger)
    result = inject.inject(pod, resource, _injection_settings(memo), route)
    if isinstance(result, inject.Refusal):
        logger.info("refused the pod (%s route): %s", route.value, result.reason.value)
        raise kopf.AdmissionError(result.message, code=REFUSAL_CODE)
    warnings.extend(result.warnings)
    if result.patch:
        patch.fns.append(functools.partial(_apply, result.patch))
        logger.info("injecting the sidecar of AgentPersistence %r (%s route)", name, route.value)
    elif inject.already_injected(pod):
        logger.info("the sidecar is already injected: nothing to do")


def _injection_settings(memo: kopf.Memo) -> InjectionSettings:
    settings = memo.get(MEMO_KEY)
    if not isinstance(settings, InjectionSettings):
        raise WebhookNotConfigured(
            f"the operator started without its {STARTUP_ID!r} startup handler"
        )
    return settings


def _apply(operations: list[PatchOperation], body: Any) -> None:
    """kopf's patch transformation: applies the operations to the body kopf diffs."""
    apply_patch(body, operations)
