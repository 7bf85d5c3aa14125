"""A small RFC 6902 (JSON patch) applier: ``add``, ``remove``, ``replace`` and ``test``.

The webhook answers the API server with a JSON patch; kopf builds that patch by diffing the
object before and after the handler's transformations, so the handler hands kopf a function
that applies :mod:`.inject`'s operations with :func:`apply_patch`. Tests use it too, to
assert on the whole resulting pod. ``move`` and ``copy`` are not needed and not supported.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, MutableMapping, MutableSequence
from typing import Any

from .payloads import PatchOperation


class PatchError(ValueError):
    """An operation does not apply to the document; the message names it."""


def escape(token: str) -> str:
    """One JSON-pointer reference token: ``~`` → ``~0``, ``/`` → ``~1`` (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    """A JSON pointer from its tokens: ``pointer("metadata", "labels", "a/b")``."""
    return "".join(f"/{escape(str(token))}" for token in tokens)


def apply_patch(document: Any, operations: Iterable[PatchOperation]) -> Any:
    """Applies ``operations`` to ``document`` in place (containers are mutated) and returns
    it; a whole-document ``add``/``replace`` (path ``""``) returns the new value instead."""
    for operation in operations:
        document = _apply_one(document, operation)
    return document


def applied(document: Any, operations: Iterable[PatchOperation]) -> Any:
    """A patched deep copy of ``document``; the original is left as it was."""
    return apply_patch(copy.deepcopy(document), operations)


def _apply_one(document: Any, operation: PatchOperation) -> Any:
    op, path = operation.get("op"), operation.get("path")
    if path is None or op not in {"add", "remove", "replace", "test"}:
        raise PatchError(f"unsupported operation {operation!r}")
    if path == "":
        return _whole_document(document, operation)
    *parents, last = _tokens(path)
    container = document
    for token in parents:
        container = _child(container, token, path)
    if op == "add":
        _add(container, last, copy.deepcopy(operation["value"]), path)
    elif op == "remove":
        _remove(container, last, path)
    elif op == "replace":
        _remove(container, last, path)
        _add(container, last, copy.deepcopy(operation["value"]), path)
    elif _child(container, last, path) != operation["value"]:
        raise PatchError(f"test failed at {path}")
    return document


def _whole_document(document: Any, operation: PatchOperation) -> Any:
    if operation["op"] == "test":
        if document != operation["value"]:
            raise PatchError("test failed at the document root")
        return document
    if operation["op"] == "remove":
        raise PatchError("cannot remove the document root")
    return copy.deepcopy(operation["value"])


def _tokens(path: str) -> list[str]:
    if not path.startswith("/"):
        raise PatchError(f"a JSON pointer starts with '/': {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _index(sequence: MutableSequence[Any], token: str, path: str, *, end: bool) -> int:
    if token == "-" and end:
        return len(sequence)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{token!r} is not an array index in {path}")
    index = int(token)
    if index > len(sequence) or (index == len(sequence) and not end):
        raise PatchError(f"index {index} is out of range in {path}")
    return index


def _child(container: Any, token: str, path: str) -> Any:
    if isinstance(container, MutableMapping):
        if token not in container:
            raise PatchError(f"{token!r} does not exist in {path}")
        return container[token]
    if isinstance(container, MutableSequence):
        return container[_index(container, token, path, end=False)]
    raise PatchError(f"cannot descend into a scalar at {token!r} in {path}")


def _add(container: Any, token: str, value: Any, path: str) -> None:
    if isinstance(container, MutableMapping):
        container[token] = value
    elif isinstance(container, MutableSequence):
        container.insert(_index(container, token, path, end=True), value)
    else:
        raise PatchError(f"cannot add to a scalar in {path}")


def _remove(container: Any, token: str, path: str) -> None:
    if isinstance(container, MutableMapping):
        if token not in container:
            raise PatchError(f"{token!r} does not exist in {path}")
        del container[token]
    elif isinstance(container, MutableSequence):
        del container[_index(container, token, path, end=False)]
    else:
        raise PatchError(f"cannot remove from a scalar in {path}")
