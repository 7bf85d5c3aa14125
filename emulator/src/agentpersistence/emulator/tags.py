"""Tags of a resource (a memory, a session): the tagging operations' shared rules.

A resource is named by its full ARN (a bare id is not one); a resource has at most
:data:`MAX_TAGS` tags, and a change that would pass that is refused whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from .errors import invalid, not_found

__all__ = ["MAX_TAGS", "Tagged", "add", "by_arn", "remove"]

MAX_TAGS = 50  # AWS's limit of tags per resource


class Tagged(Protocol):
    @property
    def arn(self) -> str: ...


T = TypeVar("T", bound=Tagged)


def by_arn(resources: Mapping[str, T], arn: str, kind: str) -> T:
    """The resource whose ARN is ``arn`` (its id follows ``:<kind>/``), or not found."""
    resource = resources.get(arn.rpartition(f":{kind}/")[2])
    if resource is None or resource.arn != arn:
        raise not_found(f"Resource {arn} not found")
    return resource


def add(tags: dict[str, str], added: Mapping[str, str]) -> None:
    merged = {**tags, **added}
    if len(merged) > MAX_TAGS:
        raise invalid(f"A resource has at most {MAX_TAGS} tags")
    tags.update(added)


def remove(tags: dict[str, str], keys: Iterable[str]) -> None:
    for key in keys:
        tags.pop(key, None)
