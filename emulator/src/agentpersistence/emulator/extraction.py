"""The stand-in for long-term extraction: deterministic and synchronous, no model.

For each ``conversational`` payload item whose role is ``USER`` in a CreateEvent (unless
``extractionMode`` is ``SKIP``), each of the memory's strategies gets one record: its
namespace template with ``{actorId}``, ``{sessionId}``, ``{memoryStrategyId}`` and the
event's ``extractionConfig.namespaceVariables`` substituted, the message text as content
(cut to the 16,000 characters a record holds), the event's timestamp. A template left with
an unknown ``{variable}``, or a namespace the data plane's model would refuse, yields no record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Draft", "drafts", "fill"]

Json = dict[str, Any]

RECORD_TEXT_MAX = 16_000  # MemoryContent.text's max; a conversational text may hold 100,000
_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")


@dataclass(frozen=True)
class Draft:
    """A record to create: where, from which strategy, what."""

    namespace: str
    strategy_id: str
    text: str
    timestamp: float


@dataclass(frozen=True)
class StrategyTemplate:
    strategy_id: str
    namespace_template: str


def fill(template: str, variables: Mapping[str, str]) -> str | None:
    """The template with its ``{name}`` placeholders substituted; None if one is unknown."""
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        value = variables.get(match[1])
        if value is None:
            missing = True
            return match[0]
        return value

    filled = _PLACEHOLDER.sub(substitute, template)
    return None if missing else filled


def drafts(
    event: Json,
    strategies: Iterable[StrategyTemplate],
    *,
    namespace_ok: Callable[[str], bool],
    variables: Mapping[str, str] | None = None,
) -> list[Draft]:
    """The records the stand-in extracts from one created event."""
    texts = [
        item["conversational"]["content"]["text"]
        for item in event["payload"]
        if "conversational" in item
        and item["conversational"]["role"] == "USER"
        and "text" in item["conversational"]["content"]
    ]
    found = []
    for strategy in strategies:
        values = {
            **(variables or {}),
            "actorId": event["actorId"],
            "sessionId": event["sessionId"],
            "memoryStrategyId": strategy.strategy_id,
        }
        namespace = fill(strategy.namespace_template, values)
        if namespace is None or not namespace_ok(namespace):
            continue
        for text in texts:
            found.append(
                Draft(
                    namespace, strategy.strategy_id, text[:RECORD_TEXT_MAX], event["eventTimestamp"]
                )
            )
    return found
