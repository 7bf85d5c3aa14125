"""The committed CRD is exactly what the config model generates, and is a structural schema.

If this fails after a change to the sidecar's settings or the operator's spec model, run
``make crds`` (``python -m agentpersistence.operator.crd > crds/...yaml``, then the chart's
copy with ``scripts/sync-chart-crds.sh``).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentpersistence.operator import bodies, crd, openapi
from agentpersistence.operator.spec import AgentPersistenceSpec
from agentpersistence.sidecar.settings import SidecarConfig

CRD_FILE = (
    Path(__file__).resolve().parents[2] / "crds" / "agentpersistence.io_agentpersistences.yaml"
)
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const", "nullable"}


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}.*")


def root() -> dict[str, Any]:
    generated: dict[str, Any] = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return generated


def test_the_committed_crd_is_the_generated_one() -> None:
    assert CRD_FILE.read_text() == crd.render(), (
        "crds/ is stale: run `make crds` (the generator, then scripts/sync-chart-crds.sh)"
    )


def test_the_committed_file_is_one_yaml_document() -> None:
    assert yaml.safe_load(CRD_FILE.read_text()) == crd.crd()


def test_every_node_is_structural() -> None:
    for path, node in schema_nodes(root()):
        assert not FORBIDDEN & node.keys(), f"{path or '(root)'} has {FORBIDDEN & node.keys()}"
        typed = "type" in node or node.get("x-kubernetes-int-or-string") is True
        assert typed, f"{path or '(root)'} has no type"
        if "properties" in node:
            assert node.get("additionalProperties") is None, f"{path}: properties and more"


def test_every_settings_field_is_in_the_spec_schema() -> None:
    spec = root()["properties"]["spec"]["properties"]
    for block in ("checkpointer", "store", "cache"):
        assert block in spec
    fields = set(AgentPersistenceSpec.model_json_schema(by_alias=True)["properties"])
    assert fields == set(spec)
    assert set(SidecarConfig.model_fields) <= {"checkpointer", "store", "cache"}


def test_each_backend_block_gets_its_cel_rules() -> None:
    spec = root()["properties"]["spec"]["properties"]
    for block in ("checkpointer", "store", "cache"):
        node = spec[block]
        rules = {rule["rule"] for rule in node["x-kubernetes-validations"]}
        for backend in node["properties"]["backend"]["enum"]:
            if backend in node["properties"]:
                assert f"!has(self.{backend}) || self.backend == '{backend}'" in rules
        assert "self.backend != 'valkey' || has(self.valkey)" in rules
        assert "self.backend != 'memory' || has(self.memory)" not in rules  # memory: no settings


def test_every_immutable_field_has_its_transition_rule() -> None:
    spec = root()["properties"]["spec"]
    for path in crd.IMMUTABLE:
        node = spec
        for part in path:
            node = node["properties"][part]
        assert {"self == oldSelf"} == {rule["rule"] for rule in node["x-kubernetes-validations"]}


def test_an_unknown_immutable_path_fails_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(crd.IMMUTABLE, ("checkpointer", "dynamodb", "tableNme"), "typo")
    with pytest.raises(openapi.UnsupportedSchema, match="tableNme"):
        crd.spec_schema()


def test_the_status_schema_matches_the_operators_types() -> None:
    status = root()["properties"]["status"]["properties"]
    assert set(status) == set(typing.get_type_hints(bodies.Status))
    assert set(status["outputs"]["properties"]) == set(typing.get_type_hints(bodies.Outputs))
    condition = status["conditions"]["items"]["properties"]
    assert set(condition) == set(typing.get_type_hints(bodies.Condition))
    assert condition["type"]["enum"] == list(typing.get_args(bodies.ConditionType))


def test_printer_columns_show_ready_synced_backend_and_age() -> None:
    columns = crd.crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [c["name"] for c in columns if not c.get("priority")]
    assert shown == ["Ready", "Synced", "Backend", "Age"]


def test_the_example_is_a_valid_spec() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "agent-persistence.yaml"
    document = yaml.safe_load(example.read_text())
    assert document["apiVersion"] == "agentpersistence.io/v1alpha1"
    spec = AgentPersistenceSpec.model_validate(document["spec"])
    assert spec.agentcore_memory is not None
