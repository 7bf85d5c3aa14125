"""Fixtures of the operator tiers: the control plane, the backends and the operator process
(see :mod:`rig.operator`). Unit tests in this folder use none of them.

``operator_kubeconfig_from_chart_rbac`` (session): a kubeconfig for the identity of the Helm
chart's ServiceAccount, bound by the chart's own rendered RBAC (ClusterRoles, bindings), so an
operator run with it has exactly the permissions the chart grants in production.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rig.kube import KubeControlPlane, UserCredentials
from rig.operator import backends, cluster, crd, namespace, operator

__all__ = [
    "backends",
    "chart_rbac_identity",
    "cluster",
    "crd",
    "namespace",
    "operator",
    "operator_kubeconfig_from_chart_rbac",
]


# --------------------------------------------------------------------------- the chart's RBAC

CHART = Path(__file__).resolve().parents[2] / "charts" / "agentpersistence"
RBAC_TEMPLATES = ("templates/serviceaccount.yaml", "templates/rbac.yaml")


@dataclass(frozen=True)
class ChartIdentity:
    """The chart's ServiceAccount as a client identity (``system:serviceaccount:NS:NAME``)."""

    release: str
    namespace: str
    service_account: str
    user: UserCredentials
    kubeconfig: Path
    """A copy of the user's kubeconfig at a path without ``:`` (the user's own path has the
    user name in it, and ``KUBECONFIG`` is a ``:``-separated list)."""
    objects: tuple[dict[str, Any], ...]
    """The rendered RBAC objects applied to the cluster."""


def render_chart_rbac(
    kube: KubeControlPlane, home: Path, release: str, namespace: str
) -> list[dict[str, Any]]:
    """``helm template`` of the chart's ServiceAccount and RBAC templates, parsed."""
    shows = [arg for template in RBAC_TEMPLATES for arg in ("--show-only", template)]
    homes = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    env = kube.env() | homes | {"HOME": str(home)}
    argv = [str(kube.bin_dir / "helm"), "template", release, str(CHART), "-n", namespace, *shows]
    rendered = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _wait_for_grants(kube: KubeControlPlane, kubeconfig: Path, timeout: float = 30.0) -> None:
    """The API server's RBAC cache follows new bindings within a moment: wait for them."""
    deadline = time.monotonic() + timeout
    probe = ("auth", "can-i", "watch", "namespaces")  # granted by the chart, no CRD needed
    while kube.kubectl(*probe, kubeconfig=kubeconfig, check=False).stdout.strip() != "yes":
        if time.monotonic() > deadline:
            pytest.fail(f"the chart's RBAC did not take effect within {timeout:.0f}s")
        time.sleep(0.2)


CHART = Path(__file__).resolve().parents[2] / "charts" / "agentpersistence"
PEERING_CRDS = CHART / "crds" / "kopf.dev_peerings.yaml"


@pytest.fixture(scope="session")
def kopf_peering_crds(kube_control_plane: KubeControlPlane) -> None:
    """kopf's peering CRDs, as the chart ships them: the chart's RBAC names their kinds and
    its replicas peer through them."""
    kube = kube_control_plane
    kube.kubectl("apply", "--server-side", "--field-manager=tests", "-f", str(PEERING_CRDS))
    for name in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        kube.kubectl("wait", "--for=condition=Established", f"crd/{name}")


@pytest.fixture(scope="session")
def chart_rbac_identity(
    kube_control_plane: KubeControlPlane,
    kopf_peering_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChartIdentity]:
    """The chart's RBAC applied for a release in a fresh namespace, and its identity."""
    kube = kube_control_plane
    # Short names: the identity is a client certificate whose common name (64 characters at
    # most) is system:serviceaccount:<namespace>:<release>-agentpersistence.
    release, namespace = "ap", f"ap-sys-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", namespace)
    objects = render_chart_rbac(kube, tmp_path_factory.mktemp("chart-helm"), release, namespace)
    for manifest in objects:
        kube.apply(manifest)
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    user = kube.make_user(f"system:serviceaccount:{namespace}:{account}", groups=groups)
    kubeconfig = tmp_path_factory.mktemp("chart-rbac") / "kubeconfig"
    kubeconfig.write_bytes(user.kubeconfig.read_bytes())
    _wait_for_grants(kube, kubeconfig)
    yield ChartIdentity(release, namespace, account, user, kubeconfig, tuple(objects))
    for manifest in objects:
        if manifest["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            kube.kubectl("delete", manifest["kind"], manifest["metadata"]["name"], check=False)
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_kubeconfig_from_chart_rbac(chart_rbac_identity: ChartIdentity) -> Path:
    """A kubeconfig acting as the chart's ServiceAccount, with only the chart's RBAC."""
    return chart_rbac_identity.kubeconfig
