"""botocore's service models: loading them, routing requests to operations, validating values.

Routes are kept per SigV4 signing service (the model's ``signingName``, which the request's
credential scope names): services that share a path (``/tags/{resourceArn}`` in
``bedrock-agentcore-control`` and ``bedrock-agent-runtime``) are told apart by it. Nothing
here knows AgentCore. A value is checked in the emulator's internal form (see
``wire``): structures are dicts keyed by member name, timestamps epoch seconds, blobs bytes,
documents any JSON value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Generic, TypeVar
from urllib.parse import unquote

import botocore.session
from botocore.model import (
    ListShape,
    MapShape,
    OperationModel,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)

__all__ = [
    "AGENT_RUNTIME",
    "CONTROL_PLANE",
    "DATA_PLANE",
    "Label",
    "Match",
    "Problem",
    "RouteClash",
    "RouteTable",
    "Template",
    "describe",
    "load_services",
    "operation_routes",
    "signed_routes",
    "unsupported_patterns",
    "validate",
]

DATA_PLANE = "bedrock-agentcore"
CONTROL_PLANE = "bedrock-agentcore-control"
AGENT_RUNTIME = "bedrock-agent-runtime"  # Bedrock sessions; signed as "bedrock"

T = TypeVar("T")


def load_services(names: Iterable[str]) -> dict[str, ServiceModel]:
    """The named service models, as the installed botocore ships them."""
    session = botocore.session.get_session()
    return {name: session.get_service_model(name) for name in names}


# --- routes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """A ``{name}`` segment of a request URI template (``{name+}`` is greedy: the rest)."""

    name: str
    greedy: bool = False


Segment = str | Label
_LABEL = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")
_LITERAL_RANK, _LABEL_RANK, _GREEDY_RANK = 2, 1, 0


@dataclass(frozen=True)
class Template:
    """An operation's ``(method, requestUri)``: literal and label segments, literal query keys."""

    method: str
    segments: tuple[Segment, ...]
    query: tuple[tuple[str, str | None], ...]
    text: str

    @classmethod
    def parse(cls, method: str, uri: str) -> Template:
        path, _, query = uri.partition("?")
        segments: list[Segment] = []
        for part in path.removeprefix("/").split("/"):
            label = _LABEL.fullmatch(part)
            if label is not None:
                segments.append(Label(label[1], greedy=bool(label[2])))
            elif "{" in part or "}" in part:
                raise ValueError(f"unsupported URI template segment {part!r} in {uri!r}")
            else:
                segments.append(part)
        pairs = [pair.partition("=") for pair in query.split("&") if pair]
        literals = tuple((key, value if sep else None) for key, sep, value in pairs)
        return cls(method.upper(), tuple(segments), literals, f"{method.upper()} {uri}")

    @property
    def rank(self) -> tuple[int, ...]:
        """Specificity, compared left to right: a literal segment beats a label."""
        return tuple(
            _LITERAL_RANK if isinstance(s, str) else (_GREEDY_RANK if s.greedy else _LABEL_RANK)
            for s in self.segments
        )

    def match(
        self, segments: Sequence[str], query: Mapping[str, Sequence[str]]
    ) -> dict[str, str] | None:
        """The labels' values if ``segments`` (already percent-decoded) fit, else None."""
        for key, value in self.query:
            if key not in query or (value is not None and value not in query[key]):
                return None
        labels: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if isinstance(segment, Label) and segment.greedy:
                rest = segments[index:]
                if not rest or not all(rest):
                    return None
                labels[segment.name] = "/".join(rest)
                return labels
            if index >= len(segments):
                return None
            if isinstance(segment, Label):
                if not segments[index]:
                    return None
                labels[segment.name] = segments[index]
            elif segment != segments[index]:
                return None
        return labels if len(segments) == len(self.segments) else None

    def overlaps(self, other: Template) -> bool:
        """Whether some request fits both templates (greedy labels read as one segment)."""
        if self.method != other.method or len(self.segments) != len(other.segments):
            return False
        if dict(self.query) != dict(other.query):
            return False
        return all(
            not isinstance(a, str) or not isinstance(b, str) or a == b
            for a, b in zip(self.segments, other.segments, strict=True)
        )


@dataclass(frozen=True)
class Match(Generic[T]):
    target: T
    labels: dict[str, str]


class RouteClash(Exception):
    """Two served operations answer the same requests and neither is more specific."""


class RouteTable(Generic[T]):
    """Requests to targets by URI template; the most literal template wins."""

    def __init__(self) -> None:
        self._routes: list[tuple[Template, T]] = []

    def add(self, method: str, uri: str, target: T) -> None:
        self._routes.append((Template.parse(method, uri), target))

    def __len__(self) -> int:
        return len(self._routes)

    def templates(self) -> list[Template]:
        return [template for template, _ in self._routes]

    def match(
        self, method: str, raw_path: str, query: Mapping[str, Sequence[str]]
    ) -> Match[T] | None:
        """The target for a request; ``raw_path`` is still percent-encoded (``%2F`` stays in
        its segment)."""
        segments = [unquote(part) for part in raw_path.removeprefix("/").split("/")]
        best: tuple[tuple[int, ...], Match[T]] | None = None
        for template, target in self._routes:
            if template.method != method.upper():
                continue
            labels = template.match(segments, query)
            if labels is not None and (best is None or template.rank > best[0]):
                best = (template.rank, Match(target, labels))
        return None if best is None else best[1]

    def clashes(self) -> list[tuple[str, str]]:
        """Pairs of templates that fit the same requests with the same specificity."""
        found = []
        for i, (a, _) in enumerate(self._routes):
            for b, _ in self._routes[i + 1 :]:
                if a.overlaps(b) and a.rank == b.rank:
                    found.append((a.text, b.text))
        return found

    def checked(self) -> RouteTable[T]:
        """This table, or :class:`RouteClash` naming every ambiguous pair."""
        clashes = self.clashes()
        if clashes:
            raise RouteClash("; ".join(f"{a} and {b}" for a, b in clashes))
        return self


def operation_routes(operations: Iterable[OperationModel]) -> RouteTable[OperationModel]:
    """The route table of these operations, checked for clashes."""
    table: RouteTable[OperationModel] = RouteTable()
    for operation in operations:
        table.add(operation.http["method"], operation.http["requestUri"], operation)
    return table.checked()


def signed_routes(operations: Iterable[OperationModel]) -> dict[str, RouteTable[OperationModel]]:
    """One checked route table per signing service: a request is routed by the service its
    SigV4 credential scope names, then by ``(method, requestUri)``."""
    grouped: dict[str, list[OperationModel]] = {}
    for operation in operations:
        grouped.setdefault(operation.service_model.signing_name, []).append(operation)
    return {service: operation_routes(group) for service, group in grouped.items()}


# --- validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One way a value breaks its shape: where (``payload[0].conversational.role``) and what."""

    path: str
    constraint: str

    def __str__(self) -> str:
        return f"Value at '{self.path}' failed to satisfy constraint: {self.constraint}"


def describe(problems: Sequence[Problem]) -> str:
    """All the problems in one message, the way AWS words a ValidationException."""
    count = len(problems)
    errors = "error" if count == 1 else "errors"
    return f"{count} validation {errors} detected: " + "; ".join(map(str, problems))


def validate(shape: Shape, value: object, path: str = "") -> list[Problem]:
    """Every way ``value`` breaks ``shape`` (empty when it fits)."""
    problems: list[Problem] = []
    _check(shape, value, path, problems)
    return [p if p.path else Problem(shape.name, p.constraint) for p in problems]


_Check = Callable[[Shape, object, str, list[Problem]], None]


def _check(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    if isinstance(shape, StructureShape) and shape.is_document_type:
        if not _is_json(value):
            out.append(Problem(path, "Member must be a JSON document"))
        return
    check = _CHECKS.get(shape.type_name)
    if check is None:
        out.append(Problem(path, f"Member has type {shape.type_name}, which is not supported"))
    else:
        check(shape, value, path, out)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _structure(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    assert isinstance(shape, StructureShape)
    if not isinstance(value, dict):
        out.append(Problem(path, "Member must be a structure"))
        return
    members = shape.members
    for name in value:
        if name not in members:
            out.append(Problem(_child(path, str(name)), f"Member is not defined in {shape.name}"))
    for name in shape.required_members:
        if value.get(name) is None:
            out.append(Problem(_child(path, name), "Member must not be null"))
    present = [name for name in members if value.get(name) is not None]
    if shape.is_tagged_union and len(present) != 1:
        found = ", ".join(present) or "none"
        out.append(
            Problem(path, f"Member must have exactly one member set, found {len(present)}: {found}")
        )
    for name in present:
        _check(members[name], value[name], _child(path, name), out)


def _list(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    assert isinstance(shape, ListShape)
    if not isinstance(value, list):
        out.append(Problem(path, "Member must be a list"))
        return
    _length(shape, len(value), path, out)
    for index, item in enumerate(value):
        _check(shape.member, item, f"{path}[{index}]", out)


def _map(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    assert isinstance(shape, MapShape)
    if not isinstance(value, dict):
        out.append(Problem(path, "Member must be a map"))
        return
    _length(shape, len(value), path, out)
    for key, item in value.items():
        _check(shape.key, key, f"{path}[{key}].<key>", out)
        _check(shape.value, item, f"{path}[{key}]", out)


def _string(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    if not isinstance(value, str):
        out.append(Problem(path, "Member must be a string"))
        return
    enum = shape.enum if isinstance(shape, StringShape) else []
    if enum and value not in enum:
        out.append(Problem(path, f"Member must satisfy enum value set: [{', '.join(enum)}]"))
    _length(shape, len(value), path, out)
    source = shape.metadata.get("pattern")
    if source is not None:
        pattern = _pattern(source)
        if pattern is not None and pattern.fullmatch(value) is None:
            out.append(Problem(path, f"Member must satisfy regular expression pattern: {source}"))


def _integer(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        out.append(Problem(path, f"Member must be of type {shape.type_name}"))
        return
    _range(shape, value, path, out)


def _float(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        out.append(Problem(path, f"Member must be of type {shape.type_name}"))
        return
    _range(shape, value, path, out)


def _boolean(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    if not isinstance(value, bool):
        out.append(Problem(path, "Member must be of type boolean"))


def _timestamp(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        out.append(Problem(path, "Member must be a timestamp (epoch seconds)"))


def _blob(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    if not isinstance(value, bytes | bytearray):
        out.append(Problem(path, "Member must be a blob (base64 in JSON)"))
        return
    _length(shape, len(value), path, out)


def _length(shape: Shape, length: int, path: str, out: list[Problem]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and length < low:
        out.append(Problem(path, f"Member must have length greater than or equal to {low}"))
    if high is not None and length > high:
        out.append(Problem(path, f"Member must have length less than or equal to {high}"))


def _range(shape: Shape, value: float, path: str, out: list[Problem]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        out.append(Problem(path, f"Member must have value greater than or equal to {low}"))
    if high is not None and value > high:
        out.append(Problem(path, f"Member must have value less than or equal to {high}"))


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


_CHECKS: dict[str, _Check] = {
    "structure": _structure,
    "list": _list,
    "map": _map,
    "string": _string,
    "byte": _integer,
    "short": _integer,
    "integer": _integer,
    "long": _integer,
    "float": _float,
    "double": _float,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "blob": _blob,
}

# Java's \p{C} ("other": control, format, ...) has no Python spelling; its control characters
# (Cc) stand in for it, which is all these models use it to keep out.
_JAVA_CLASSES = (
    (r"[^\p{C}]", r"[^\x00-\x1f\x7f-\x9f]"),
    (r"\P{C}", r"[^\x00-\x1f\x7f-\x9f]"),
    (r"\p{C}", r"[\x00-\x1f\x7f-\x9f]"),
)


@cache
def _pattern(source: str) -> re.Pattern[str] | None:
    """A model pattern compiled for Python's ``re``; None if it cannot be (then unchecked)."""
    for java, python in _JAVA_CLASSES:
        source = source.replace(java, python)
    try:
        return re.compile(source)
    except re.error:
        return None


def unsupported_patterns(service: ServiceModel) -> list[str]:
    """Names of the service's shapes whose pattern Python cannot compile (left unchecked)."""
    names = []
    for name in service.shape_names:
        source = service.shape_for(name).metadata.get("pattern")
        if source is not None and _pattern(source) is None:
            names.append(name)
    return names
