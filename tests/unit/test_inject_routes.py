"""Which pods each opt-in route injects: the label route and the namespace route.

The webhook entries' selectors decide which pods reach which route (the chart's tests and the
control-plane tier check them); here, the pure decision once a pod has arrived: the same patch
by either route, no pod opted in by both, ``"false"`` opting out of both, and refusals that
read the same.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from agentpersistence.operator.webhook.inject import (
    INJECT_LABEL,
    NAME_ANNOTATION,
    NAMESPACE_INJECT_ENABLED,
    NAMESPACE_INJECT_LABEL,
    Injection,
    Refusal,
    RefusalReason,
    Route,
    inject,
    opted_in,
)
from agentpersistence.operator.webhook.patching import applied
from agentpersistence.operator.webhook.payloads import AgentPersistenceView, Pod
from agentpersistence.operator.webhook.settings import InjectionSettings

SETTINGS = InjectionSettings(image="registry.example/agentpersistence-sidecar:1.0")
ABSENT = None
"""A label or annotation the pod does not carry at all."""


def notes() -> AgentPersistenceView:
    return {"name": "notes", "spec": {"checkpointer": {"backend": "memory"}}, "status": {}}


def pod(label: str | None = ABSENT, name: str | None = "notes") -> Pod:
    """A pod with the inject label set to ``label`` and the name annotation set to ``name``."""
    metadata: dict[str, Any] = {"name": "agent-0", "namespace": "team-a", "labels": {"app": "a"}}
    if label is not None:
        metadata["labels"][INJECT_LABEL] = label
    if name is not None:
        metadata["annotations"] = {NAME_ANNOTATION: name}
    spec = {"containers": [{"name": "agent", "image": "registry.example/agent:1"}]}
    built = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    return built  # type: ignore[return-value]


def test_the_namespace_label_is_the_inject_label_set_to_enabled() -> None:
    assert (NAMESPACE_INJECT_LABEL, NAMESPACE_INJECT_ENABLED) == (
        "agentpersistence.io/inject",
        "enabled",
    )


def test_an_annotated_pod_gets_by_the_namespace_route_what_a_labelled_pod_gets() -> None:
    by_namespace = inject(pod(), notes(), SETTINGS, Route.NAMESPACE)
    by_label = inject(pod(label="true"), notes(), SETTINGS, Route.LABEL)
    assert isinstance(by_namespace, Injection)
    assert by_namespace.patch
    assert by_namespace == by_label


@pytest.mark.parametrize("annotations", [None, {}, {"other.example/name": "notes"}])
def test_the_namespace_route_admits_an_unannotated_pod_unchanged(
    annotations: dict[str, str] | None,
) -> None:
    unannotated = pod(name=ABSENT)
    unannotated["metadata"]["annotations"] = annotations  # type: ignore[typeddict-item]
    assert inject(unannotated, notes(), SETTINGS, Route.NAMESPACE) == Injection()
    assert inject(unannotated, None, SETTINGS, Route.NAMESPACE) == Injection()


@pytest.mark.parametrize("route", list(Route))
def test_a_pod_labelled_false_is_injected_by_no_route(route: Route) -> None:
    opted_out = pod(label="false")
    assert not opted_in(opted_out, route)
    assert inject(opted_out, notes(), SETTINGS, route) == Injection()


def test_a_pod_labelled_true_belongs_to_the_label_route_only() -> None:
    labelled = pod(label="true")
    assert inject(labelled, notes(), SETTINGS, Route.NAMESPACE) == Injection()
    result = inject(labelled, notes(), SETTINGS, Route.LABEL)
    assert isinstance(result, Injection)
    assert result.patch


@pytest.mark.parametrize(
    ("label", "name"),
    list(itertools.product([ABSENT, "true", "false", "yes", ""], [ABSENT, "", "notes"])),
)
def test_no_pod_opts_in_by_both_routes(label: str | None, name: str | None) -> None:
    candidate = pod(label=label, name=name)
    assert not (opted_in(candidate, Route.LABEL) and opted_in(candidate, Route.NAMESPACE))


def test_a_pod_injected_by_the_namespace_route_gets_no_second_injection() -> None:
    annotated = pod()
    once = inject(annotated, notes(), SETTINGS, Route.NAMESPACE)
    assert isinstance(once, Injection)
    injected = applied(annotated, once.patch)
    for route in Route:
        assert inject(injected, notes(), SETTINGS, route) == Injection()


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_name_on_the_namespace_route_is_refused(name: str) -> None:
    result = inject(pod(name=name), notes(), SETTINGS, Route.NAMESPACE)
    assert result == Refusal(
        RefusalReason.MISSING_NAME,
        "pod 'agent-0' is in a namespace labelled agentpersistence.io/inject=enabled and has "
        "an empty annotation agentpersistence.io/name: set it to the name of an "
        "AgentPersistence in namespace 'team-a', or remove it to run the pod without the "
        "sidecar",
    )


def test_a_missing_resource_is_refused_alike_by_both_routes() -> None:
    by_namespace = inject(pod(), None, SETTINGS, Route.NAMESPACE)
    by_label = inject(pod(label="true"), None, SETTINGS, Route.LABEL)
    assert isinstance(by_namespace, Refusal)
    assert by_namespace.reason is RefusalReason.NOT_FOUND
    assert by_namespace == by_label


def test_the_label_route_is_the_default() -> None:
    assert inject(pod(label="true"), notes(), SETTINGS) == inject(
        pod(label="true"), notes(), SETTINGS, Route.LABEL
    )
    assert inject(pod(), notes(), SETTINGS) == Injection()
