"""The webhook's RFC 6902 applier agrees with the ``jsonpatch`` library on what it supports."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from agentpersistence.operator.webhook.patching import PatchError, applied, apply_patch, pointer
from agentpersistence.operator.webhook.payloads import PatchOperation

DOCUMENT: dict[str, Any] = {
    "metadata": {"annotations": {"a/b": "1", "c~d": "2"}},
    "spec": {"containers": [{"name": "one"}, {"name": "two"}]},
}


def test_pointer_escapes_tilde_and_slash() -> None:
    assert pointer("metadata", "annotations", "agentpersistence.io/status") == (
        "/metadata/annotations/agentpersistence.io~1status"
    )
    assert pointer("x", "a~b", 0) == "/x/a~0b/0"


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "add", "path": "/spec/containers/-", "value": {"name": "three"}}],
        [{"op": "add", "path": "/spec/containers/0", "value": {"name": "zero"}}],
        [{"op": "add", "path": "/spec/volumes", "value": []}],
        [{"op": "add", "path": "/metadata/annotations/a~1b", "value": "replaced"}],
        [{"op": "remove", "path": "/metadata/annotations/c~0d"}],
        [{"op": "replace", "path": "/spec/containers/1/name", "value": "deux"}],
        [{"op": "test", "path": "/spec/containers/0", "value": {"name": "one"}}],
        [{"op": "remove", "path": "/spec/containers/0"}],
        [{"op": "replace", "path": "", "value": {"x": 1}}],
    ],
)
def test_agrees_with_jsonpatch(operations: list[PatchOperation]) -> None:
    expected = jsonpatch.apply_patch(copy.deepcopy(DOCUMENT), operations)
    assert applied(DOCUMENT, operations) == expected


def test_applied_leaves_the_original_alone() -> None:
    before = copy.deepcopy(DOCUMENT)
    applied(DOCUMENT, [{"op": "add", "path": "/spec/containers/-", "value": {"name": "x"}}])
    assert before == DOCUMENT


def test_added_values_are_copied() -> None:
    value = {"name": "three"}
    result = applied(DOCUMENT, [{"op": "add", "path": "/spec/containers/-", "value": value}])
    result["spec"]["containers"][-1]["name"] = "changed"
    assert value == {"name": "three"}


@pytest.mark.parametrize(
    ("operation", "fragment"),
    [
        ({"op": "add", "path": "/spec/containers/5", "value": 1}, "out of range"),
        ({"op": "add", "path": "/spec/missing/x", "value": 1}, "'missing' does not exist"),
        ({"op": "remove", "path": "/spec/containers/-"}, "not an array index"),
        ({"op": "add", "path": "/spec/containers/01", "value": 1}, "not an array index"),
        ({"op": "test", "path": "/spec/containers/0/name", "value": "two"}, "test failed"),
        ({"op": "add", "path": "spec", "value": 1}, "starts with '/'"),
        ({"op": "move", "path": "/spec", "from": "/metadata"}, "unsupported operation"),
        ({"op": "add", "path": "/metadata/annotations/a~1b/x", "value": 1}, "scalar"),
        ({"op": "remove", "path": ""}, "cannot remove the document root"),
    ],
)
def test_errors_name_the_problem(operation: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PatchError, match=fragment):
        apply_patch(copy.deepcopy(DOCUMENT), [operation])  # type: ignore[list-item]
