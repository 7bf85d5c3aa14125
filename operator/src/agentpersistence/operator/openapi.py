"""Pydantic's JSON Schema → a *structural* OpenAPI v3 schema, as a CRD version needs.

Kubernetes accepts only structural schemas: every node has a ``type``, no ``$ref``, no
``anyOf``/``oneOf`` that introduce types, no ``additionalProperties: false`` beside
``properties``. :func:`structural` rewrites what pydantic emits for our models:

- ``$ref`` to ``$defs``: inlined (the models have no recursion);
- ``anyOf: [X, {type: null}]`` (an optional field): ``X``, left out of ``required``;
- ``anyOf: [{type: integer}, {type: string}]`` (a quantity): ``x-kubernetes-int-or-string``;
- ``exclusiveMinimum: n`` (JSON Schema 2020): ``minimum: n, exclusiveMinimum: true``;
- ``const``: a one-value ``enum``;
- ``title``, ``additionalProperties: false`` and ``default: null``: dropped (unknown fields
  are pruned, or refused by ``kubectl``'s strict field validation);
- descriptions: kept (the field's, else its model's), reST markup and line breaks flattened,
  so ``kubectl explain`` reads well.

Defaults stay: the API server applies them, so a stored resource shows every setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Schema = dict[str, Any]

_KEPT = (
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
)
_NULL = {"type": "null"}


class UnsupportedSchema(ValueError):
    """A construct a structural schema cannot express; the message names where."""


def structural(schema: Mapping[str, Any]) -> Schema:
    """The structural form of a pydantic ``model_json_schema()`` (its ``$defs`` inlined)."""
    definitions: Mapping[str, Any] = schema.get("$defs", {})
    return _convert(schema, definitions, "")


def _convert(node: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> Schema:
    node = _resolved(node, defs)
    if "anyOf" in node:
        return _any_of(node, defs, where)
    out: Schema = {key: node[key] for key in _KEPT if key in node}
    _describe(out, node)
    if "const" in node:
        out["enum"] = [node["const"]]
    _exclusive(out, node)
    if out.get("default", 0) is None:
        del out["default"]
    kind = node.get("type")
    if kind == "object":
        _object(out, node, defs, where)
    elif kind == "array":
        out["items"] = _convert(node.get("items", {}), defs, f"{where}[]")
    elif kind is None and "enum" not in out:
        raise UnsupportedSchema(f"{where or '(root)'} has no type: {dict(node)}")
    return _ordered(out)


def _ordered(out: Schema) -> Schema:
    """``type`` and ``description`` first: the generated YAML reads like a hand-written one."""
    first = {key: out[key] for key in ("type", "description") if key in out}
    return first | {key: value for key, value in out.items() if key not in first}


def _resolved(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with its ``$ref`` replaced by the definition (siblings of ``$ref`` win)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target = defs[ref.removeprefix("#/$defs/")]
    return {**target, **{key: value for key, value in node.items() if key != "$ref"}}


def _any_of(node: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> Schema:
    options = [option for option in node["anyOf"] if option != _NULL]
    if len(options) == 1:
        siblings = {key: value for key, value in node.items() if key != "anyOf"}
        return _convert({**_resolved(options[0], defs), **siblings}, defs, where)
    if sorted(option.get("type", "") for option in options) == ["integer", "string"]:
        out: Schema = {"x-kubernetes-int-or-string": True}
        _describe(out, node)
        return out
    raise UnsupportedSchema(f"{where or '(root)'}: anyOf of several types: {options}")


def _object(out: Schema, node: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> None:
    out["type"] = "object"
    properties: Mapping[str, Any] = node.get("properties", {})
    if properties:
        out["properties"] = {
            name: _convert(prop, defs, f"{where}.{name}") for name, prop in properties.items()
        }
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        out["additionalProperties"] = _convert(extra, defs, f"{where}.*")
    required = [name for name in node.get("required", []) if name in properties]
    if required:
        out["required"] = required


def _exclusive(out: Schema, node: Mapping[str, Any]) -> None:
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if exclusive in node:
            out[bound] = node[exclusive]
            out[exclusive] = True


def _describe(out: Schema, node: Mapping[str, Any]) -> None:
    text = node.get("description")
    if text:
        out["description"] = flatten(text)


def flatten(text: str) -> str:
    """A docstring as one line of plain text: ``literal`` → `literal`, paragraphs joined."""
    text = text.replace("``", "`")
    text = re.sub(r":\w+:`([^`]*)`", r"`\1`", text)
    return re.sub(r"\s+", " ", text).strip()
