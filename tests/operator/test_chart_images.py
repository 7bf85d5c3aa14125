"""The Dockerfiles, the chart's values and the injection agree on users, entry points and
documentation: no pod is rejected for a root user, every value is described and typed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentpersistence.operator.webhook import inject, settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "agentpersistence"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def dockerfile(name: str) -> str:
    return (REPO / "docker" / f"{name}.Dockerfile").read_text()


def instruction(text: str, keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(keyword + " ")]


@pytest.mark.parametrize("name", ["operator", "sidecar"])
def test_images_are_multi_stage_non_root_python_slim(name: str) -> None:
    text = dockerfile(name)
    assert instruction(text, "ARG") == ["PYTHON_IMAGE=python:3.13-slim"]
    assert instruction(text, "FROM") == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    assert instruction(text, "USER") == [f"{settings.SIDECAR_UID}:{settings.SIDECAR_UID}"]
    assert "--constraint requirements/constraints.txt" in text
    assert (REPO / "docker" / f"{name}.Dockerfile.dockerignore").is_file()


def test_the_operator_image_runs_what_the_chart_runs() -> None:
    assert instruction(dockerfile("operator"), "ENTRYPOINT") == ['["agentpersistence-operator"]']
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert 'command: ["agentpersistence-operator"]' in deployment


def test_the_sidecar_image_runs_what_the_injection_runs() -> None:
    [entrypoint] = instruction(dockerfile("sidecar"), "ENTRYPOINT")
    assert json.loads(entrypoint) == [inject.SIDECAR_COMMAND]


def test_the_chart_users_are_the_images_users() -> None:
    uid = settings.SIDECAR_UID
    assert VALUES["operator"]["podSecurityContext"]["runAsUser"] == uid
    assert VALUES["sidecar"]["runAsUser"] == uid
    assert VALUES["sidecar"]["runAsGroup"] == uid
    assert VALUES["sidecar"]["socketDir"] == settings.SOCKET_DIR
    assert VALUES["sidecar"]["probePort"] == settings.PROBE_PORT
    assert VALUES["webhook"]["port"] == settings.WEBHOOK_PORT


def leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values' fields, stopping at free-form maps (resources, contexts)."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, dict) and value and not _free_form(path):
            paths += leaves(value, path + ".")
    return paths


def _free_form(path: str) -> bool:
    return path.endswith(("resources", "SecurityContext", "securityContext", "issuerRef"))


def schema_node(path: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMA
    for key in path.split("."):
        assert key in node.get("properties", {}), f"values.schema.json lacks {path}"
        node = node["properties"][key]
    return node


@pytest.mark.parametrize("path", leaves(VALUES))
def test_every_value_is_in_the_schema_with_a_description(path: str) -> None:
    assert schema_node(path).get("description"), f"{path} has no description in the schema"


def key_lines(text: str) -> dict[str, int]:
    """The line number of each key of values.yaml, by dotted path (from its indentation)."""
    stack: list[tuple[int, str]] = []
    found: dict[str, int] = {}
    for number, line in enumerate(text.splitlines()):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, match.group(2))]
        found.setdefault(".".join(k for _, k in stack), number)
    return found


def documented_fields() -> list[str]:
    """Fields that hold a value (not a block of fields): each needs its own comment."""
    return [p for p in leaves(VALUES) if _free_form(p) or not isinstance(_value(p), dict)]


def _value(path: str) -> Any:
    node: Any = VALUES
    for key in path.split("."):
        node = node[key]
    return node


def test_every_value_is_documented_in_values_yaml() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    where = key_lines("\n".join(lines))
    undocumented = [
        p for p in documented_fields() if not lines[where[p] - 1].strip().startswith("#")
    ]
    assert undocumented == []
