"""The kopf wiring without a cluster: startup configuration, the index, the handler's answers.

The handler is called as kopf calls it (a real ``kopf.Body`` and ``kopf.Patch``), and kopf's
own JSON patch (``patch.as_json_patch()``, what the API server receives) is applied to the pod.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import jsonpatch
import kopf
import pytest

from agentpersistence.operator import errors, kube
from agentpersistence.operator.webhook import handlers
from agentpersistence.operator.webhook.inject import (
    INJECT_LABEL,
    Injection,
    Route,
    inject,
)
from agentpersistence.operator.webhook.patching import applied
from agentpersistence.operator.webhook.payloads import AgentPersistenceView, Pod
from agentpersistence.operator.webhook.settings import InjectionSettings

IMAGE = "registry.example/agentpersistence-sidecar:1.0"
LOGGER = logging.getLogger("test.inject")

# kopf's decorators type the functions as its callback protocols; call them as plain functions.
index_agentpersistence = cast(Callable[..., Any], handlers.index_agentpersistence)
inject_sidecar = cast(Callable[..., Coroutine[Any, Any, None]], handlers.inject_sidecar)
inject_sidecar_in_namespace = cast(
    Callable[..., Coroutine[Any, Any, None]], handlers.inject_sidecar_in_namespace
)


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("placeholder\n")
    return tmp_path


def test_startup_configures_our_server_and_no_managed_configuration(cert_dir: Path) -> None:
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    env = {
        "AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE,
        "AGENTPERSISTENCE_WEBHOOK_ADDR": "127.0.0.1",
        "AGENTPERSISTENCE_WEBHOOK_PORT": "18443",
        "AGENTPERSISTENCE_WEBHOOK_CERT_DIR": str(cert_dir),
    }
    handlers.configure(settings, memo, env)
    server = settings.admission.server
    assert isinstance(server, kopf.WebhookServer)
    assert (server.addr, server.port) == ("127.0.0.1", 18443)
    assert (server.certfile, server.pkeyfile, server.cafile) == (
        str(cert_dir / "tls.crt"),
        str(cert_dir / "tls.key"),
        str(cert_dir / "ca.crt"),
    )
    assert settings.admission.managed is None
    assert memo[handlers.MEMO_KEY] == InjectionSettings(image=IMAGE)


def test_startup_fails_clearly_without_certificates(tmp_path: Path) -> None:
    env = {
        "AGENTPERSISTENCE_SIDECAR_IMAGE": IMAGE,
        "AGENTPERSISTENCE_WEBHOOK_CERT_DIR": str(tmp_path),
    }
    with pytest.raises(kopf.PermanentError, match="certificate files are missing"):
        handlers.configure(kopf.OperatorSettings(), kopf.Memo(), env)


def test_the_index_keeps_detached_copies() -> None:
    spec = {"sidecar": {"image": "x"}}
    entry = index_agentpersistence(
        name="notes",
        namespace="team-a",
        spec=spec,
        status={},
    )
    spec["sidecar"]["image"] = "changed"
    assert entry == {
        ("team-a", "notes"): {"name": "notes", "spec": {"sidecar": {"image": "x"}}, "status": {}}
    }


# --------------------------------------------------------------------------- the handler


def labelled_pod() -> Pod:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "agent-0",
            "namespace": "team-a",
            "labels": {"agentpersistence.io/inject": "true"},
            "annotations": {"agentpersistence.io/name": "notes"},
        },
        "spec": {"containers": [{"name": "agent", "image": "registry.example/agent:1"}]},
    }


def notes() -> AgentPersistenceView:
    return {"name": "notes", "spec": {"checkpointer": {"backend": "memory"}}, "status": {}}


def annotated_pod() -> Pod:
    """A pod of the namespace route: the name annotation, no inject label."""
    pod = labelled_pod()
    del pod["metadata"]["labels"][INJECT_LABEL]
    return pod


def call_handler(
    pod: Pod,
    index: dict[Any, Any],
    handler: Callable[..., Coroutine[Any, Any, None]] = inject_sidecar,
) -> tuple[list[Any], list[str]]:
    """Runs the handler as kopf does; returns kopf's JSON patch and the warnings."""
    body = kopf.Body(copy.deepcopy(pod))  # type: ignore[arg-type]
    patch = kopf.Patch(body=body)
    warnings: list[str] = []
    memo = kopf.Memo({handlers.MEMO_KEY: InjectionSettings(image=IMAGE)})
    coroutine = handler(
        body=body,
        namespace="team-a",
        patch=patch,
        warnings=warnings,
        memo=memo,
        logger=LOGGER,
        **{handlers.INDEX_ID: index},
    )
    asyncio.run(coroutine)
    return list(patch.as_json_patch()), warnings


def test_the_handler_applies_the_injection_through_kopfs_patch() -> None:
    pod = labelled_pod()
    kopf_patch, warnings = call_handler(pod, {("team-a", "notes"): [notes()]})
    expected = inject(pod, notes(), InjectionSettings(image=IMAGE))
    assert isinstance(expected, Injection)
    assert jsonpatch.apply_patch(copy.deepcopy(pod), kopf_patch) == applied(pod, expected.patch)
    assert warnings == list(expected.warnings)
    assert warnings  # the resource has no Ready condition yet


def test_the_handler_refuses_a_pod_naming_a_missing_resource() -> None:
    with pytest.raises(kopf.AdmissionError, match=r"'notes'.*does not exist") as refused:
        call_handler(labelled_pod(), {})
    assert refused.value.code == 403


def test_the_handler_leaves_an_injected_pod_alone() -> None:
    pod = labelled_pod()
    result = inject(pod, notes(), InjectionSettings(image=IMAGE))
    assert isinstance(result, Injection)
    injected = applied(pod, result.patch)
    assert call_handler(injected, {("team-a", "notes"): [notes()]}) == ([], [])


def test_the_namespace_handler_injects_an_annotated_pod_as_the_label_handler_would() -> None:
    pod = annotated_pod()
    index = {("team-a", "notes"): [notes()]}
    kopf_patch, warnings = call_handler(pod, index, inject_sidecar_in_namespace)
    expected = inject(pod, notes(), InjectionSettings(image=IMAGE), Route.NAMESPACE)
    assert isinstance(expected, Injection)
    assert expected.patch
    assert jsonpatch.apply_patch(copy.deepcopy(pod), kopf_patch) == applied(pod, expected.patch)
    assert warnings == list(expected.warnings)
    assert call_handler(labelled_pod(), index)[0] == kopf_patch  # the same injection


def test_the_namespace_handler_refuses_a_pod_naming_a_missing_resource_alike() -> None:
    with pytest.raises(kopf.AdmissionError) as by_namespace:
        call_handler(annotated_pod(), {}, inject_sidecar_in_namespace)
    with pytest.raises(kopf.AdmissionError) as by_label:
        call_handler(labelled_pod(), {})
    assert by_namespace.value.code == by_label.value.code == 403
    assert str(by_namespace.value) == str(by_label.value)
    assert "does not exist" in str(by_namespace.value)


@pytest.mark.parametrize("value", ["true", "false"])
def test_the_namespace_handler_leaves_a_labelled_pod_alone(value: str) -> None:
    """Even if one reached it: a labelled pod belongs to the label route, or opted out."""
    pod = labelled_pod()
    pod["metadata"]["labels"][INJECT_LABEL] = value
    index = {("team-a", "notes"): [notes()]}
    assert call_handler(pod, index, inject_sidecar_in_namespace) == ([], [])


def test_the_label_handler_leaves_an_annotated_pod_alone() -> None:
    index = {("team-a", "notes"): [notes()]}
    assert call_handler(annotated_pod(), index) == ([], [])


def test_the_handler_needs_the_startup_settings() -> None:
    body = kopf.Body(copy.deepcopy(labelled_pod()))  # type: ignore[arg-type]
    coroutine = inject_sidecar(
        body=body,
        namespace="team-a",
        patch=kopf.Patch(body=body),
        warnings=[],
        memo=kopf.Memo(),
        logger=LOGGER,
        **{handlers.INDEX_ID: {}},
    )
    with pytest.raises(handlers.WebhookNotConfigured, match="startup handler"):
        asyncio.run(coroutine)


# --------------------------------------------------------------------------- read-through


def call_with_read_through(
    pod: Pod, monkeypatch: pytest.MonkeyPatch, read: Callable[..., Coroutine[Any, Any, Any]]
) -> tuple[list[Any], list[str]]:
    """The handler with an empty index and kopf settings in the memo: it must ask the API."""
    monkeypatch.setattr(kube, "read", read)
    body = kopf.Body(copy.deepcopy(pod))  # type: ignore[arg-type]
    patch = kopf.Patch(body=body)
    warnings: list[str] = []
    memo = kopf.Memo(
        {
            handlers.MEMO_KEY: InjectionSettings(image=IMAGE),
            handlers.KOPF_SETTINGS_KEY: kopf.OperatorSettings(),
        }
    )
    coroutine = inject_sidecar(
        body=body,
        namespace="team-a",
        patch=patch,
        warnings=warnings,
        memo=memo,
        logger=LOGGER,
        **{handlers.INDEX_ID: {}},
    )
    asyncio.run(coroutine)
    return list(patch.as_json_patch()), warnings


def test_an_index_miss_reads_the_resource_from_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    paths: list[str] = []

    async def read(path: str, **_: Any) -> dict[str, Any]:
        paths.append(path)
        return {"metadata": {"name": "notes"}, "spec": notes()["spec"], "status": {}}

    kopf_patch, _ = call_with_read_through(labelled_pod(), monkeypatch, read)
    assert paths == ["/apis/agentpersistence.io/v1alpha1/namespaces/team-a/agentpersistences/notes"]
    expected = inject(labelled_pod(), notes(), InjectionSettings(image=IMAGE))
    assert isinstance(expected, Injection)
    result = jsonpatch.apply_patch(copy.deepcopy(labelled_pod()), kopf_patch)
    assert result == applied(labelled_pod(), expected.patch)


def test_a_resource_missing_from_index_and_api_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def read(path: str, **_: Any) -> None:
        return None

    with pytest.raises(kopf.AdmissionError, match="does not exist") as refused:
        call_with_read_through(labelled_pod(), monkeypatch, read)
    assert refused.value.code == 403


def test_a_failing_read_through_refuses_for_now(monkeypatch: pytest.MonkeyPatch) -> None:
    async def read(path: str, **_: Any) -> None:
        raise errors.Retryable("kube: connection refused", reason="Unreachable")

    with pytest.raises(kopf.AdmissionError, match="cannot check that AgentPersistence") as raised:
        call_with_read_through(labelled_pod(), monkeypatch, read)
    assert raised.value.code == 503
    assert "connection refused" in str(raised.value)


def test_a_slow_read_through_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "READ_THROUGH_TIMEOUT_S", 0.05)

    async def read(path: str, **_: Any) -> None:
        await asyncio.sleep(10)

    with pytest.raises(kopf.AdmissionError, match="timed out") as raised:
        call_with_read_through(labelled_pod(), monkeypatch, read)
    assert raised.value.code == 503


def test_a_reinvocation_looks_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    async def read(path: str, **_: Any) -> None:
        raise AssertionError("an injected pod needs no lookup")

    pod = labelled_pod()
    result = inject(pod, notes(), InjectionSettings(image=IMAGE))
    assert isinstance(result, Injection)
    assert call_with_read_through(applied(pod, result.patch), monkeypatch, read) == ([], [])
