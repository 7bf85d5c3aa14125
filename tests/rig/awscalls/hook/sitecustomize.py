"""Records every AWS call a Python process of the test run makes (test-only ``sitecustomize``).

Active only when ``AGENTPERSISTENCE_RECORD_AWS_CALLS`` names a directory, in a process whose
``PYTHONPATH`` holds this file's directory (the session's conftest sets both, and every
subprocess the rig starts inherits them). It adds two handlers to botocore's
``BUILTIN_HANDLERS``, which every botocore and aiobotocore session registers when it is made:
``before-parameter-build`` keeps the call's resource parameters in the request context, and
``before-call`` (once per API call, retries excluded) appends one JSON line to
``<directory>/calls-<pid>.jsonl``: service, operation, region, those parameters, and the role
of the caller read from the stack (:func:`role_of`). botocore is patched when something
imports ``botocore.handlers``, so processes that never use AWS pay nothing.

Self-contained (standard library only): the subprocesses do not have the rig on their path.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

ENV_VAR = "AGENTPERSISTENCE_RECORD_AWS_CALLS"
"""The directory the calls are written to; recording is off when it is unset."""

PARAMS_KEY = "agentpersistence_recorded_params"
"""Where ``before-parameter-build`` leaves the projected parameters for ``before-call``."""

KEPT_NAMES = frozenset(
    {"TableName", "IndexName", "ResourceArn", "resourceArn", "Bucket", "Key", "VersionId",
     "CopySource", "memoryId", "modelId", "sessionIdentifier"}
)  # fmt: skip
"""String parameters that name a resource (or change which IAM actions a call needs)."""

ITEM_KEYS = frozenset({"Key", "Item"})
"""DynamoDB items: only their partition key is kept (``dynamodb:LeadingKeys``)."""

PARTITION_KEY = "PK"
"""The partition key attribute of the project's tables (the DynamoDB backend's ``schema.PK``)."""

KEPT_VALUES = frozenset({"Tags", "tags", "Tagging", "TagKeys", "tagKeys"})
"""Parameters kept whole (tags decide tag conditions and tag-on-create permissions)."""

KEYED_BY_TABLE = frozenset({"RequestItems"})
"""Maps keyed by table name: only the names are kept."""

_OPERATOR = "/agentpersistence/operator/"
_EMBEDDINGS = "/agentpersistence/sidecar/embeddings.py"
_BACKEND = re.compile(r"/agentpersistence/sidecar/backends/([a-z0-9_]+)/")
_PROVISIONING = re.compile(r"/agentpersistence/sidecar/backends/[a-z0-9_]+/provisioning\.py$")
_ORIGIN = re.compile(r"/(agentpersistence/(?:operator|sidecar)/.*)$")
_installed: dict[str, str] = {}


# --- who is calling --------------------------------------------------------------------


def frames(start: types.FrameType | None) -> Iterator[types.FrameType]:
    """``start`` and its callers: with asyncio, the awaiting coroutines of the same task."""
    frame = start
    while frame is not None:
        yield frame
        frame = frame.f_back


def role_of(stack: Sequence[tuple[str, str]]) -> str:
    """The IAM role a call belongs to, from the ``(file, function)`` pairs on its stack:
    ``operator`` when the operator's code is on it (even calling the sidecar's provisioning
    code), ``provision`` for the sidecar's ``--provision`` path, ``sidecar-embeddings`` for
    the sidecar's embedding calls (whichever store asks), ``sidecar-<backend>`` for a sidecar
    backend package, else ``test`` (the rig's own calls)."""
    if any(_OPERATOR in name for name, _ in stack):
        return "operator"
    if any(
        _PROVISIONING.search(name) or (function == "provision" and _BACKEND.search(name))
        for name, function in stack
    ):
        return "provision"
    if any(name.endswith(_EMBEDDINGS) for name, _ in stack):
        return "sidecar-embeddings"
    for name, _ in stack:
        found = _BACKEND.search(name)
        if found:
            return "sidecar-" + found.group(1).replace("_", "-")
    return "test"


def origin_of(stack: Sequence[tuple[str, int]]) -> str:
    """The innermost frame of the project's code as ``agentpersistence/...py:line``."""
    for name, line in stack:
        found = _ORIGIN.search(name)
        if found:
            return f"{found.group(1)}:{line}"
    return ""


# --- what is called --------------------------------------------------------------------


def project(value: Any) -> Any:
    """The resource-naming parts of API parameters (no payloads): see :data:`KEPT_NAMES`."""
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if (key in KEPT_NAMES and isinstance(item, str)) or key in KEPT_VALUES:
                kept[key] = item
            elif key in ITEM_KEYS and isinstance(item, dict) and PARTITION_KEY in item:
                kept[key] = {PARTITION_KEY: item[PARTITION_KEY]}
            elif key in KEYED_BY_TABLE and isinstance(item, dict):
                kept[key] = sorted(item)
            elif isinstance(item, dict | list) and (inner := project(item)):
                kept[key] = inner
        return kept
    if isinstance(value, list):
        return [inner for inner in map(project, value) if inner]
    return None


def _keep_params(params: Any, context: dict[str, Any], **_: Any) -> None:
    context[PARAMS_KEY] = project(params)


def _record(model: Any, context: dict[str, Any], **_: Any) -> None:
    stack = list(frames(sys._getframe(1)))
    call = {
        "pid": os.getpid(),
        "argv0": sys.argv[0] if sys.argv else "",
        "role": role_of([(frame.f_code.co_filename, frame.f_code.co_name) for frame in stack]),
        "origin": origin_of([(frame.f_code.co_filename, frame.f_lineno or 0) for frame in stack]),
        "service": model.service_model.service_name,
        "operation": model.name,
        "region": context.get("client_region") or "",
        "params": context.get(PARAMS_KEY) or {},
    }
    _append(json.dumps(call, sort_keys=True, default=str) + "\n")


def _append(line: str) -> None:
    """One ``write`` on an ``O_APPEND`` descriptor per call, so lines from threads never mix;
    a recorder that cannot write (its directory gone at the end of the session) stays quiet
    rather than fail the call it records."""
    path = os.path.join(_installed["directory"], f"calls-{os.getpid()}.jsonl")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# --- installing ------------------------------------------------------------------------


def patch_botocore(handlers: types.ModuleType) -> None:
    """Add the recorder to ``botocore.handlers.BUILTIN_HANDLERS`` (once per process)."""
    if getattr(handlers, "_agentpersistence_recording", False):
        return
    handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _keep_params))
    handlers.BUILTIN_HANDLERS.append(("before-call", _record))
    setattr(handlers, "_agentpersistence_recording", True)  # noqa: B010  # a module attribute


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds ``botocore.handlers`` as usual, with a loader that patches it once executed
    (before any session exists: ``botocore.session`` imports it at the top)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "botocore.handlers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.inner.exec_module(module)
        patch_botocore(module)


def install(directory: str) -> None:
    """Record this process's calls into ``directory`` (now if botocore is loaded, else as
    soon as it is)."""
    _installed["directory"] = directory
    loaded = sys.modules.get("botocore.handlers")
    if loaded is not None:
        patch_botocore(loaded)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


if os.environ.get(ENV_VAR):
    install(os.environ[ENV_VAR])
