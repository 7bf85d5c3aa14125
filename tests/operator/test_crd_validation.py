"""The committed CRD on a real API server: it applies, explains itself, and rejects what the
sidecar would reject (schema and CEL), with messages a person can act on.

No operator runs in this module's namespace: objects are validated by the API server alone
(server-side dry runs, or real objects without finalizers that delete at once).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from agentpersistence.operator import naming
from rig.kube import KubeControlPlane, KubectlError
from rig.operator import Cluster, unique

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("crd")]

VALID: dict[str, Any] = {
    "checkpointer": {
        "backend": "dynamodb",
        "dynamodb": {"tableName": "checkpoints", "s3Offload": {"bucketName": "payloads"}},
    },
    "store": {"backend": "valkey", "valkey": {"url": "valkey://valkey:6379"}, "index": {"dims": 8}},
    "cache": {"backend": "memory"},
}


def manifest(namespace: str, spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "metadata": {"name": name or unique("valid"), "namespace": namespace},
        "spec": spec,
    }


def dry_run(cluster: Cluster, body: dict[str, Any]) -> dict[str, Any]:
    """Create ``body`` with ``--dry-run=server``: validated and defaulted, never stored."""
    done = cluster.kube.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body)
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def with_change(path: str, value: Any) -> dict[str, Any]:
    """A copy of :data:`VALID` with ``path`` (dotted) set to ``value`` (None: removed)."""
    spec = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return spec


@pytest.fixture(scope="module")
def validation(kube_control_plane: KubeControlPlane, namespace: str) -> Cluster:
    return Cluster(kube_control_plane, namespace)


def test_a_valid_resource_gets_the_defaults(validation: Cluster) -> None:
    stored = dry_run(validation, manifest(validation.namespace, VALID))
    spec = stored["spec"]
    assert spec["deletionPolicy"] == "Retain"
    dynamodb = spec["checkpointer"]["dynamodb"]
    assert dynamodb["s3Offload"]["keyPrefix"] == "agentpersistence/"
    assert dynamodb["compression"] == {"enabled": True, "thresholdBytes": 2048, "level": 6}
    assert spec["store"]["valkey"]["keyPrefix"] == "ap"
    assert spec["store"]["index"]["distance"] == "cosine"


def test_kubectl_explain_describes_the_fields(validation: Cluster) -> None:
    def explain(field: str) -> str:
        return validation.kube.kubectl("explain", f"{naming.PLURAL}.{field}").stdout

    assert "expires this long after its write" in explain("spec.checkpointer.dynamodb.ttlSeconds")
    account = explain("spec.serviceAccountName")
    assert "eks.amazonaws.com/role-arn" in account
    assert "pod-identity-association" in account
    assert "Terminal" in explain("status.conditions.type")


REJECTED = {
    "unknown backend": (
        with_change("checkpointer.backend", "postgres"),
        'Unsupported value: "postgres"',
    ),
    "wrong type": (
        with_change("checkpointer.dynamodb.ttlSeconds", "a day"),
        'spec.checkpointer.dynamodb.ttlSeconds: Invalid value: "string"',
    ),
    "out of range": (
        with_change("checkpointer.dynamodb.ttlSeconds", 0),
        "spec.checkpointer.dynamodb.ttlSeconds: Invalid value: 0",
    ),
    "short table name": (
        with_change("checkpointer.dynamodb.tableName", "ab"),
        "spec.checkpointer.dynamodb.tableName: Invalid value",
    ),
    "missing required field": (
        with_change("store.valkey.url", None),
        "spec.store.valkey.url: Required value",
    ),
    "block of another backend": (
        with_change("checkpointer.valkey", {"url": "valkey://valkey:6379"}),
        "backend is 'dynamodb' but settings are given for 'valkey': keep only the block "
        "of the chosen backend",
    ),
    "backend without its block": (
        with_change("store.valkey", None),
        "backend 'valkey' needs a 'valkey' block with its settings",
    ),
    "nothing configured": (
        {"deletionPolicy": "Delete"},
        "configure at least one block: checkpointer, store or cache",
    ),
    "unknown deletion policy": (
        with_change("deletionPolicy", "Orphan"),
        'spec.deletionPolicy: Unsupported value: "Orphan"',
    ),
    "bad memory name": (
        with_change("agentcoreMemory", {"name": "has-dashes"}),
        "spec.agentcoreMemory.name: Invalid value",
    ),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_an_invalid_spec_is_rejected_with_a_readable_message(
    validation: Cluster, case: str
) -> None:
    spec, message = REJECTED[case]
    with pytest.raises(KubectlError) as rejected:
        dry_run(validation, manifest(validation.namespace, spec))
    assert message in rejected.value.stderr


def test_a_name_too_long_for_the_configmap_is_rejected(validation: Cluster) -> None:
    name = "a" * 240
    with pytest.raises(KubectlError) as rejected:
        dry_run(validation, manifest(validation.namespace, VALID, name=name))
    assert "the sidecar's ConfigMap is named <name>-sidecar-config" in rejected.value.stderr


@pytest.fixture
def stored(validation: Cluster) -> Iterator[str]:
    """A real object (no operator here, so no finalizer: deletion is immediate)."""
    name = unique("immutable")
    body = manifest(validation.namespace, VALID | {"agentcoreMemory": {"name": "m1"}}, name)
    validation.apply(body)
    yield name
    validation.delete(name)


IMMUTABLE = {
    "tableName": ("/spec/checkpointer/dynamodb/tableName", "other-table"),
    "bucketName": ("/spec/checkpointer/dynamodb/s3Offload/bucketName", "other-bucket"),
    "keyPrefix": ("/spec/store/valkey/keyPrefix", "other"),
    "name": ("/spec/agentcoreMemory/name", "m2"),
}


@pytest.mark.parametrize("field", list(IMMUTABLE))
def test_fields_naming_the_storage_are_immutable(
    validation: Cluster, stored: str, field: str
) -> None:
    path, value = IMMUTABLE[field]
    patch = json.dumps([{"op": "replace", "path": path, "value": value}])
    with pytest.raises(KubectlError) as rejected:
        validation.kube.kubectl(
            "patch", naming.CRD_NAME, stored, "-n", validation.namespace,
            "--type=json", f"--patch={patch}",
        )  # fmt: skip
    assert f"{field} is immutable" in rejected.value.stderr
    assert "create another AgentPersistence" in rejected.value.stderr


def test_mutable_fields_can_change(validation: Cluster, stored: str) -> None:
    patch = json.dumps({"spec": {"checkpointer": {"dynamodb": {"ttlSeconds": 3600}}}})
    validation.kube.kubectl(
        "patch", naming.CRD_NAME, stored, "-n", validation.namespace, "--type=merge",
        f"--patch={patch}",
    )  # fmt: skip
    assert validation.must_get(stored)["spec"]["checkpointer"]["dynamodb"]["ttlSeconds"] == 3600


def test_kubectl_get_shows_the_printer_columns(validation: Cluster, stored: str) -> None:
    table = validation.kube.kubectl("get", naming.CRD_NAME, stored, "-n", validation.namespace)
    header = table.stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "SYNCED", "BACKEND", "AGE"]
    assert "dynamodb" in table.stdout.splitlines()[1]
