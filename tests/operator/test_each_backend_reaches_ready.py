"""The operator reconciles a resource on each backend added last (``agentcore-valkey`` and
``bedrock-session`` checkpointers, the ``dynamodb`` store) to ``Ready``, and a sidecar started
from the ConfigMap it writes serves.

On the real control plane with the operator as a subprocess; Valkey, DynamoDB Local and the
emulator (Bedrock Agent Runtime sessions) behind them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import SidecarSaver, SidecarStore
from agentpersistence.operator import naming
from rig.operator import Backends, Cluster
from rig.provisioned import Names, manifest, table_exists

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("operator")]

Spec = Callable[[Names, Backends], dict[str, Any]]

CHECKPOINTERS: dict[str, Spec] = {
    "agentcore-valkey": lambda names, backends: {
        "checkpointer": {
            "backend": "agentcore-valkey",
            "agentcoreValkey": {"url": backends.valkey_url, "keyPrefix": names.prefix},
        }
    },
    "bedrock-session": lambda names, backends: {"checkpointer": {"backend": "bedrock-session"}},
}


def ready_config(cluster: Cluster, names: Names, spec: dict[str, Any]) -> dict[str, Any]:
    """Apply ``spec``, wait for Ready; the sidecar config the operator wrote."""
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    cluster.wait_condition(names.resource, "Ready", "True")
    configmap = cluster.configmap(naming.sidecar_configmap(names.resource))
    assert configmap is not None
    config: dict[str, Any] = yaml.safe_load(configmap["data"][naming.CONFIG_KEY])
    return config


@pytest.mark.parametrize("backend", sorted(CHECKPOINTERS))
def test_a_checkpointer_resource_is_ready_and_its_config_serves(
    cluster: Cluster, backends: Backends, sidecar_factory: Any, backend: str
) -> None:
    names = Names.fresh()
    config = ready_config(cluster, names, CHECKPOINTERS[backend](names, backends))
    assert config["checkpointer"]["backend"] == backend

    sidecar = sidecar_factory(config, env=backends.env())
    thread: RunnableConfig = {
        "configurable": {"thread_id": f"t-{names.prefix}", "checkpoint_ns": ""}
    }
    with SidecarSaver(sidecar.socket) as saver:
        stored = saver.put(thread, empty_checkpoint(), {"step": 0}, {})
        found = saver.get_tuple(thread)
    assert found is not None
    assert found.config == stored
    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)


def test_a_dynamodb_store_resource_gets_its_table_and_serves(
    cluster: Cluster, backends: Backends, sidecar_factory: Any
) -> None:
    names = Names.fresh()
    store = {"backend": "dynamodb", "dynamodb": {"tableName": names.table}}
    config = ready_config(cluster, names, {"deletionPolicy": "Delete", "store": store})
    outputs = cluster.must_get(names.resource)["status"]["outputs"]
    assert outputs["storeTableName"] == names.table
    assert outputs["storeTableArn"].endswith(f":table/{names.table}")
    assert config["store"]["dynamodb"]["tableName"] == names.table

    sidecar = sidecar_factory(config, env=backends.env())
    with SidecarStore(sidecar.socket) as saved:
        saved.put(("users", "u1"), "profile", {"plan": "pro"})
        item = saved.get(("users", "u1"), "profile")
    assert item is not None
    assert item.value == {"plan": "pro"}

    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
    assert not asyncio.run(table_exists(backends, names.table))  # it created it: Delete
