"""The operator works with exactly the permissions the Helm chart grants its ServiceAccount.

The operator runs as the chart's ServiceAccount identity (``operator_kubeconfig_from_chart_rbac``:
the chart's rendered ClusterRole and bindings applied, nothing else) and takes a resource
through creation, its ConfigMap, Events and status, and deletion with its finalizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentpersistence.operator import naming
from rig.kube import KubeControlPlane
from rig.operator import (
    Backends,
    Cluster,
    OperatorLogReporter,
    OperatorProcess,
    start_operator,
    unique,
)

pytestmark = pytest.mark.controlplane


@pytest.fixture(scope="module")
def operator_as_chart(
    kube_control_plane: KubeControlPlane,
    crd: str,
    namespace: str,
    backends: Backends,
    operator_kubeconfig_from_chart_rbac: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator-chart-rbac")
    process = start_operator(
        kube_control_plane, namespace, backends, workdir, operator_kubeconfig_from_chart_rbac
    )
    reporter = OperatorLogReporter(process, fixture="operator_as_chart")
    pytestconfig.pluginmanager.register(reporter, f"operator-log-chart-rbac-{namespace}")
    yield process
    pytestconfig.pluginmanager.unregister(reporter)
    process.stop()


def test_a_resource_lives_and_dies_under_the_charts_rbac(
    operator_as_chart: OperatorProcess, cluster: Cluster, backends: Backends
) -> None:
    name = unique("rbac")
    spec = {
        "deletionPolicy": "Delete",
        "checkpointer": {"backend": "dynamodb", "dynamodb": {"tableName": f"ap-{name}"}},
        "cache": {"backend": "memory"},
    }
    cluster.apply(
        {
            "apiVersion": naming.API_VERSION,
            "kind": naming.KIND,
            "metadata": {"name": name, "namespace": cluster.namespace},
            "spec": spec,
        }
    )
    cluster.wait_condition(name, "Ready", "True")
    assert cluster.configmap(naming.sidecar_configmap(name)) is not None
    assert "Created" in cluster.reasons(name)
    cluster.delete(name)
    cluster.wait_gone(name)
    assert cluster.configmap(naming.sidecar_configmap(name)) is None
