"""The IAM documents in ``iam/`` and a small evaluator of identity policies for tests.

:func:`load` reads one document; :meth:`Document.allows` says whether it allows a
:class:`~rig.awscalls.actions.Need` the way IAM evaluates an identity policy: an explicit
``Deny`` wins, else some ``Allow`` statement must match the action (``*`` and ``?``
wildcards, case-insensitive), the resource (wildcards, case-sensitive, after each
``${Placeholder}`` is replaced by the need's own value for it, so a table action matches
only a statement that names a table) and its conditions. Conditions are evaluated for the
keys a request decides (:data:`CONDITION_KEYS`); a document using another key or operator
is an error here, never silently allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.awscalls.actions import PLACEHOLDER, Need

IAM_DIR = Path(__file__).resolve().parents[3] / "iam"

ROLE_DOCUMENTS: Mapping[str, str] = {
    "operator": "operator.json",
    "provision": "sidecar-provision.json",
    "sidecar-dynamodb": "sidecar-dynamodb.json",
    "sidecar-agentcore-memory": "sidecar-agentcore-memory.json",
    "sidecar-embeddings": "sidecar-embeddings.json",
    "sidecar-bedrock-session": "sidecar-bedrock-session.json",
}
"""The recorder's role of a call → the document that must allow it."""

STATEMENT_KEYS = frozenset({"Sid", "Effect", "Action", "Resource", "Condition"})
CONDITION_KEYS = (
    re.compile(r"aws:RequestTag/.+"),
    re.compile(r"aws:TagKeys"),
    re.compile(r"dynamodb:LeadingKeys"),
)
"""Condition keys whose values the recorded request holds."""


def _string_equals(actual: str, wanted: str) -> bool:
    return actual == wanted


def _string_like(actual: str, wanted: str) -> bool:
    return _glob(wanted, case=True).fullmatch(actual) is not None


_MATCHERS: Mapping[str, Callable[[str, str], bool]] = {
    "StringEquals": _string_equals,
    "StringLike": _string_like,
}


class UnsupportedPolicy(Exception):
    """A document uses IAM features this evaluator does not implement."""


@dataclass(frozen=True)
class Statement:
    sid: str
    allow: bool
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, tuple[str, ...]]]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Statement:
        unknown = set(raw) - STATEMENT_KEYS
        if unknown:
            raise UnsupportedPolicy(f"statement {raw.get('Sid')!r} uses {sorted(unknown)}")
        conditions = {
            operator: {key: _strings(values) for key, values in keyed.items()}
            for operator, keyed in raw.get("Condition", {}).items()
        }
        for operator, keyed in conditions.items():
            _check_condition(operator, keyed)
        return cls(
            sid=str(raw.get("Sid", "")),
            allow=raw["Effect"] == "Allow",
            actions=_strings(raw["Action"]),
            resources=_strings(raw["Resource"]),
            conditions=conditions,
        )

    def matches(self, need: Need) -> bool:
        actions = (_glob(pattern, case=False) for pattern in self.actions)
        resources = (_resource_pattern(pattern, need.names) for pattern in self.resources)
        return (
            any(action.fullmatch(need.action) for action in actions)
            and any(resource.fullmatch(need.resource) for resource in resources)
            and all(
                _holds(operator, key, wanted, need.context)
                for operator, keyed in self.conditions.items()
                for key, wanted in keyed.items()
            )
        )


@dataclass(frozen=True)
class Document:
    name: str
    statements: tuple[Statement, ...]

    def allows(self, need: Need) -> bool:
        matching = [s for s in self.statements if s.matches(need)]
        return any(s.allow for s in matching) and not any(not s.allow for s in matching)


def parse(name: str, raw: Mapping[str, Any]) -> Document:
    if raw.get("Version") != "2012-10-17":
        raise UnsupportedPolicy(f"{name}: Version must be 2012-10-17")
    return Document(name, tuple(Statement.parse(s) for s in raw["Statement"]))


def load(file_name: str) -> Document:
    """``iam/<file_name>``."""
    return parse(file_name, json.loads((IAM_DIR / file_name).read_text()))


def document_for(role: str) -> Document | None:
    file_name = ROLE_DOCUMENTS.get(role)
    return None if file_name is None else load(file_name)


# --- matching --------------------------------------------------------------------------


def _strings(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _glob(pattern: str, *, case: bool) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case else re.IGNORECASE)


def _resource_pattern(pattern: str, names: Mapping[str, str]) -> re.Pattern[str]:
    """``pattern`` with each placeholder standing for exactly the need's value; one the need
    has no value for matches nothing."""
    parts: list[str] = []
    position = 0
    for found in PLACEHOLDER.finditer(pattern):
        parts.append(_glob(pattern[position : found.start()], case=True).pattern)
        value = names.get(found.group(1))
        parts.append(re.escape(value) if value is not None else "(?!)")
        position = found.end()
    parts.append(_glob(pattern[position:], case=True).pattern)
    return re.compile("".join(parts))


def _check_condition(operator: str, keyed: Mapping[str, tuple[str, ...]]) -> None:
    base = operator.removeprefix("ForAllValues:")
    if base not in (*_MATCHERS, "Null") or (base == "Null" and base != operator):
        raise UnsupportedPolicy(f"condition operator {operator}")
    for key in keyed:
        if not any(pattern.fullmatch(key) for pattern in CONDITION_KEYS):
            raise UnsupportedPolicy(f"condition key {key} (not known from a request)")


def _holds(
    operator: str, key: str, wanted: Iterable[str], context: Mapping[str, tuple[str, ...]]
) -> bool:
    """One condition key under one operator, as IAM evaluates it."""
    actual = context.get(key)
    if operator == "Null":
        return all((actual is None) == (value == "true") for value in wanted)
    if operator.startswith("ForAllValues:"):
        match = _MATCHERS[operator.removeprefix("ForAllValues:")]
        return all(any(match(a, w) for w in wanted) for a in actual or ())
    match = _MATCHERS[operator]
    return actual is not None and any(match(a, w) for a in actual for w in wanted)
