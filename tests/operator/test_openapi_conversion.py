"""Pydantic's JSON Schema becomes a structural OpenAPI schema (:mod:`...operator.openapi`)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from agentpersistence.operator import openapi


class Inner(BaseModel):
    """An inner block.

    Its docstring spans ``two`` lines."""

    size: int = Field(default=3, gt=0, le=10, description="How big.")


class Outer(BaseModel):
    kind: Literal["a", "b"] = "a"
    only: Literal["x"] = "x"
    inner: Inner | None = Field(default=None, description="The field's own words win.")
    plain: Inner = Inner()
    quantity: int | str = 1
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, str] | None = None


def converted() -> dict[str, object]:
    return openapi.structural(Outer.model_json_schema())


def test_optional_refs_are_inlined_with_the_fields_description() -> None:
    inner = converted()["properties"]["inner"]  # type: ignore[index]
    assert inner["type"] == "object"
    assert inner["description"] == "The field's own words win."
    assert "default" not in inner


def test_a_models_docstring_describes_a_field_without_description() -> None:
    plain = converted()["properties"]["plain"]  # type: ignore[index]
    assert plain["description"] == "An inner block. Its docstring spans `two` lines."
    assert plain["default"] == {"size": 3}


def test_bounds_use_openapi_v3_exclusive_flags() -> None:
    size = converted()["properties"]["plain"]["properties"]["size"]  # type: ignore[index]
    assert size == {
        "type": "integer",
        "description": "How big.",
        "default": 3,
        "maximum": 10,
        "minimum": 0,
        "exclusiveMinimum": True,
    }


def test_literals_become_enums() -> None:
    properties = converted()["properties"]
    assert properties["kind"] == {"type": "string", "enum": ["a", "b"], "default": "a"}  # type: ignore[index]
    assert properties["only"]["enum"] == ["x"]  # type: ignore[index]


def test_int_or_string_is_the_kubernetes_extension() -> None:
    quantity = converted()["properties"]["quantity"]  # type: ignore[index]
    assert quantity == {"x-kubernetes-int-or-string": True}


def test_maps_and_lists_keep_their_item_schemas() -> None:
    properties = converted()["properties"]
    assert properties["tags"] == {"type": "array", "items": {"type": "string"}}  # type: ignore[index]
    labels = properties["labels"]  # type: ignore[index]
    assert labels == {"type": "object", "additionalProperties": {"type": "string"}}


def test_unions_of_several_types_are_refused() -> None:
    class Mixed(BaseModel):
        value: int | bool

    with pytest.raises(openapi.UnsupportedSchema, match="value"):
        openapi.structural(Mixed.model_json_schema())
