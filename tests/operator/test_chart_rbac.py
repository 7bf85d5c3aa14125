"""The chart's RBAC, applied to the real API server, grants the operator exactly what it needs.

``chart_rbac_identity`` (tests/operator/conftest.py) renders the chart's ServiceAccount and
RBAC, applies them and acts as ``system:serviceaccount:<namespace>:<name>``; the API server's
own authorizer answers each question (``kubectl auth can-i`` as that identity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from rig.kube import KubeControlPlane

# The CRD must be served, or kubectl cannot resolve agentpersistences to its API group.
pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("crd")]


class ChartIdentity(Protocol):
    """What ``chart_rbac_identity`` yields (conftest's dataclass, not importable from here)."""

    release: str
    namespace: str
    service_account: str

    @property
    def kubeconfig(self) -> Path: ...


WORKLOAD_NAMESPACE = "team-a"  # any namespace: with no watchNamespaces the grants are cluster-wide

ALLOWED = [
    ("get", "agentpersistences.agentpersistence.io"),
    ("list", "agentpersistences.agentpersistence.io"),
    ("watch", "agentpersistences.agentpersistence.io"),
    ("patch", "agentpersistences.agentpersistence.io"),
    ("patch", "agentpersistences.agentpersistence.io/status"),
    ("update", "agentpersistences.agentpersistence.io/finalizers"),
    ("create", "configmaps"),
    ("get", "configmaps"),
    ("patch", "configmaps"),
    ("delete", "configmaps"),
    ("create", "events"),
]
CLUSTER_ALLOWED = [
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    ("watch", "namespaces"),
    ("list", "clusterkopfpeerings.kopf.dev"),
    ("watch", "clusterkopfpeerings.kopf.dev"),
]
DENIED = [
    ("get", "pods"),
    ("list", "pods"),
    ("create", "pods"),
    ("get", "secrets"),
    ("list", "configmaps"),
    ("create", "agentpersistences.agentpersistence.io"),
    ("delete", "agentpersistences.agentpersistence.io"),
    ("update", "agentpersistences.agentpersistence.io"),
    ("delete", "events"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("patch", "clusterkopfpeerings.kopf.dev"),
    ("create", "clusterkopfpeerings.kopf.dev"),
    ("list", "kopfpeerings.kopf.dev"),
]


def can_i(kube: KubeControlPlane, identity: ChartIdentity, verb: str, resource: str) -> bool:
    namespaced = (
        ("-n", WORKLOAD_NAMESPACE) if resource not in dict(CLUSTER_ALLOWED).values() else ()
    )
    resource, _, subresource = resource.partition("/")
    scope = (*namespaced, f"--subresource={subresource}") if subresource else namespaced
    result = kube.kubectl(
        "auth", "can-i", verb, resource, *scope, kubeconfig=identity.kubeconfig, check=False
    )
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


def test_the_identity_is_the_charts_service_account(
    kube_control_plane: KubeControlPlane, chart_rbac_identity: ChartIdentity
) -> None:
    identity = chart_rbac_identity
    whoami = kube_control_plane.kubectl_json("auth", "whoami", kubeconfig=identity.kubeconfig)
    info = whoami["status"]["userInfo"]
    assert info["username"] == (
        f"system:serviceaccount:{identity.namespace}:{identity.service_account}"
    )
    assert f"system:serviceaccounts:{identity.namespace}" in info["groups"]


@pytest.mark.parametrize(("verb", "resource"), ALLOWED + CLUSTER_ALLOWED)
def test_the_operator_may(
    kube_control_plane: KubeControlPlane,
    chart_rbac_identity: ChartIdentity,
    verb: str,
    resource: str,
) -> None:
    assert can_i(kube_control_plane, chart_rbac_identity, verb, resource)


@pytest.mark.parametrize(("verb", "resource"), DENIED)
def test_the_operator_may_not(
    kube_control_plane: KubeControlPlane,
    chart_rbac_identity: ChartIdentity,
    verb: str,
    resource: str,
) -> None:
    assert not can_i(kube_control_plane, chart_rbac_identity, verb, resource)


def test_the_kubeconfig_fixture_reads_resources_as_the_operator(
    kube_control_plane: KubeControlPlane, crd: str, operator_kubeconfig_from_chart_rbac: object
) -> None:
    listed = kube_control_plane.kubectl_json(
        "get",
        crd,
        "-A",
        kubeconfig=operator_kubeconfig_from_chart_rbac,  # type: ignore[arg-type]
    )
    assert listed["kind"] == "List"


@pytest.mark.parametrize(
    ("verb", "name", "allowed"),
    [("get", "", True), ("patch", "", True), ("patch", "someone-else", False)],
)
def test_the_operator_writes_only_its_own_peering_object(
    kube_control_plane: KubeControlPlane,
    chart_rbac_identity: ChartIdentity,
    verb: str,
    name: str,
    allowed: bool,
) -> None:
    """kopf writes its keep-alives into the release's ClusterKopfPeering, and no other."""
    identity = chart_rbac_identity
    target = f"clusterkopfpeerings.kopf.dev/{name or f'{identity.release}-agentpersistence'}"
    result = kube_control_plane.kubectl(
        "auth", "can-i", verb, target, kubeconfig=identity.kubeconfig, check=False
    )
    assert result.stdout.strip() == ("yes" if allowed else "no"), result.stderr
