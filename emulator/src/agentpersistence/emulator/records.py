"""Long-term memory: a memory's records, listed by namespace and ranked by ``retrieval``.

``namespace`` selects records in exactly that namespace; ``namespacePath`` selects the
namespace and everything under it (``/users/a`` holds ``/users/a`` and ``/users/a/facts``,
not ``/users/ab``); one of them is required, both must hold when both are given. Lists are
newest first (creation order). Records never expire here: ``expiresAt`` is only reported.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import retrieval
from .errors import invalid, not_found
from .pagination import page, scope_of

__all__ = ["DEFAULT_STRATEGY_ID", "RecordStore", "StoredRecord"]

Json = dict[str, Any]
Params = Mapping[str, Any]

LIST_DEFAULT = 20  # ListMemoryRecords and RetrieveMemoryRecords: the documented default
TOP_K_DEFAULT = 10
SECONDS_PER_DAY = 86_400
DEFAULT_STRATEGY_ID = "custom"  # what a record created without memoryStrategyId reports
_NO_RIGHT = ("EXISTS", "NOT_EXISTS")
# The right operand each comparison needs, and how it compares with the stored value.
_ORDERED: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "BEFORE": ("dateTimeValue", lambda a, b: a < b),
    "AFTER": ("dateTimeValue", lambda a, b: a > b),
    "GREATER_THAN": ("numberValue", lambda a, b: a > b),
    "GREATER_THAN_OR_EQUALS": ("numberValue", lambda a, b: a >= b),
    "LESS_THAN": ("numberValue", lambda a, b: a < b),
    "LESS_THAN_OR_EQUALS": ("numberValue", lambda a, b: a <= b),
}


@dataclass
class StoredRecord:
    id: str
    seq: int  # creation order within the memory
    text: str
    namespaces: list[str]
    strategy_id: str
    created_at: float
    timestamp: float
    metadata: Json | None = None
    expires_at: float | None = None

    def summary(self, score: float | None = None) -> Json:
        return _without_none(
            {
                "memoryRecordId": self.id,
                "content": {"text": self.text},
                "memoryStrategyId": self.strategy_id,
                "namespaces": list(self.namespaces),
                "createdAt": self.created_at,
                "score": score,
                "timestamp": self.timestamp,
                "metadata": self.metadata,
            }
        )

    def full(self) -> Json:
        view = self.summary()
        if self.expires_at is not None:
            view["expiresAt"] = self.expires_at
        return view


class RecordStore:
    """The long-term records of one memory."""

    def __init__(self, memory_id: str, *, clock: Callable[[], float], rng: random.Random) -> None:
        self.memory_id = memory_id
        self.clock = clock
        self.rng = rng
        self.records: dict[str, StoredRecord] = {}
        self._seq = itertools.count()

    def add(
        self,
        text: str,
        namespaces: list[str],
        *,
        strategy_id: str | None,
        timestamp: float,
        metadata: Json | None = None,
        expiry_days: int | None = None,
    ) -> StoredRecord:
        now = self.clock()
        record = StoredRecord(
            id=f"mem-{uuid.UUID(int=self.rng.getrandbits(128))}",  # 40 characters, as modelled
            seq=next(self._seq),
            text=text,
            namespaces=list(namespaces),
            strategy_id=strategy_id or DEFAULT_STRATEGY_ID,
            created_at=now,
            timestamp=timestamp,
            metadata=metadata,
            expires_at=None if expiry_days is None else now + expiry_days * SECONDS_PER_DAY,
        )
        self.records[record.id] = record
        return record

    def get(self, record_id: str) -> StoredRecord:
        record = self.records.get(record_id)
        if record is None:
            raise not_found(f"Memory record {record_id} not found")
        return record

    def delete(self, record_id: str) -> None:
        del self.records[self.get(record_id).id]

    # --- batches ---------------------------------------------------------------------------

    def batch_create(self, params: Params) -> Json:
        expiry = params.get("recordExpirySpecification") or {}
        if expiry.get("action") is not None:
            raise invalid(
                "recordExpirySpecification.action does not apply when creating records",
                fields=[("recordExpirySpecification.action", "not allowed on create")],
            )
        done = []
        for item in params["records"]:
            record = self.add(
                item["content"]["text"],
                item["namespaces"],
                strategy_id=item.get("memoryStrategyId"),
                timestamp=item["timestamp"],
                metadata=item.get("metadata"),
                expiry_days=expiry.get("recordExpiryDurationDays"),
            )
            done.append(_succeeded(record.id, item["requestIdentifier"]))
        return {"successfulRecords": done, "failedRecords": []}

    def batch_update(self, params: Params) -> Json:
        expiry = params.get("recordExpirySpecification") or {}
        done, failed = [], []
        for item in params["records"]:
            record = self.records.get(item["memoryRecordId"])
            if record is None:
                failed.append(_missing(item["memoryRecordId"]))
                continue
            record.timestamp = item["timestamp"]
            if "content" in item:
                record.text = item["content"]["text"]
            if "namespaces" in item:
                record.namespaces = list(item["namespaces"])
            if "memoryStrategyId" in item:
                record.strategy_id = item["memoryStrategyId"]
            if "metadata" in item:
                record.metadata = item["metadata"]
            if expiry.get("action") == "REMOVE":
                record.expires_at = None
            elif expiry.get("recordExpiryDurationDays") is not None:
                days = expiry["recordExpiryDurationDays"]
                record.expires_at = self.clock() + days * SECONDS_PER_DAY
            done.append(_succeeded(record.id))
        return {"successfulRecords": done, "failedRecords": failed}

    def batch_delete(self, params: Params) -> Json:
        done, failed = [], []
        for item in params["records"]:
            if self.records.pop(item["memoryRecordId"], None) is None:
                failed.append(_missing(item["memoryRecordId"]))
            else:
                done.append(_succeeded(item["memoryRecordId"]))
        return {"successfulRecords": done, "failedRecords": failed}

    # --- reads -----------------------------------------------------------------------------

    def list_records(self, params: Params) -> Json:
        records = self._select(params, params, "metadataFilters")
        records.sort(key=lambda r: r.seq, reverse=True)
        chosen, token = page(
            records,
            lambda r: (r.seq,),
            scope=scope_of("ListMemoryRecords", self.memory_id),
            token=params.get("nextToken"),
            limit=params.get("maxResults", LIST_DEFAULT),
        )
        return _without_none(
            {"memoryRecordSummaries": [r.summary() for r in chosen], "nextToken": token}
        )

    def retrieve(self, params: Params) -> Json:
        """The records that share words with the query, best first (see ``retrieval``)."""
        criteria = params["searchCriteria"]
        records = self._select(params, criteria, "searchCriteria.metadataFilters")
        query = retrieval.tokens(criteria["searchQuery"])
        scored = [(retrieval.score(query, retrieval.tokens(r.text)), r) for r in records]
        ranked = sorted(
            ((s, r) for s, r in scored if s > 0), key=lambda sr: (-sr[0], -sr[1].seq, sr[1].id)
        )[: criteria.get("topK", TOP_K_DEFAULT)]
        request = {k: v for k, v in params.items() if k not in ("nextToken", "maxResults")}
        chosen, token = page(
            list(enumerate(ranked)),
            lambda item: (item[0],),
            scope=scope_of("RetrieveMemoryRecords", self.memory_id, request),
            token=params.get("nextToken"),
            limit=params.get("maxResults", LIST_DEFAULT),
            descending=False,
        )
        summaries = [record.summary(score) for _, (score, record) in chosen]
        return _without_none({"memoryRecordSummaries": summaries, "nextToken": token})

    def _select(self, where: Params, criteria: Params, filters_at: str) -> list[StoredRecord]:
        """Records in the namespace (or under the path), of the strategy, passing the filters."""
        namespace, path = where.get("namespace"), where.get("namespacePath")
        if namespace is None and path is None:
            raise invalid(
                "Either namespace or namespacePath is required",
                fields=[("namespace", "namespace or namespacePath is required")],
            )
        expressions = criteria.get("metadataFilters") or []
        _check_expressions(expressions, filters_at)
        strategy = criteria.get("memoryStrategyId")
        return [
            r
            for r in self.records.values()
            if (namespace is None or namespace in r.namespaces)
            and (path is None or any(_under(ns, path) for ns in r.namespaces))
            and (strategy is None or r.strategy_id == strategy)
            and all(_matches(r.metadata or {}, x) for x in expressions)
        ]


def _under(namespace: str, path: str) -> bool:
    parent, child = path.rstrip("/"), namespace.rstrip("/")
    return not parent or child == parent or child.startswith(parent + "/")


def _check_expressions(expressions: Iterable[Json], at: str) -> None:
    """``right`` is required except for EXISTS and NOT_EXISTS (which must not have it), and
    must hold the kind of value the operator compares."""
    problems = []
    for index, expression in enumerate(expressions):
        path, operator = f"{at}[{index}].right", expression["operator"]
        right = (expression.get("right") or {}).get("metadataValue")
        if operator in _NO_RIGHT:
            if right is not None:
                problems.append((path, f"{operator} takes no right operand"))
        elif right is None:
            problems.append((path, f"{operator} needs a right operand"))
        elif operator in _ORDERED and _ORDERED[operator][0] not in right:
            problems.append((path, f"{operator} compares a {_ORDERED[operator][0]}"))
        elif operator == "CONTAINS" and "stringValue" not in right:
            problems.append((path, "CONTAINS looks for a stringValue"))
    if problems:
        raise invalid("; ".join(f"{p}: {m}" for p, m in problems), fields=problems)


def _matches(metadata: Json, expression: Json) -> bool:
    value = metadata.get(expression["left"]["metadataKey"])
    operator = expression["operator"]
    if operator in _NO_RIGHT:
        return value is not None if operator == "EXISTS" else value is None
    if value is None:
        return False
    right = expression["right"]["metadataValue"]
    if operator == "EQUALS_TO":
        return bool(value == right)
    if operator == "CONTAINS":
        needle = right["stringValue"]
        return needle in value.get("stringListValue", []) or needle in value.get("stringValue", "")
    kind, compare = _ORDERED[operator]
    return kind in value and bool(compare(value[kind], right[kind]))


def _succeeded(record_id: str, request_identifier: str | None = None) -> Json:
    return _without_none(
        {
            "memoryRecordId": record_id,
            "status": "SUCCEEDED",
            "requestIdentifier": request_identifier,
        }
    )


def _missing(record_id: str) -> Json:
    return {
        "memoryRecordId": record_id,
        "status": "FAILED",
        "errorCode": 404,
        "errorMessage": f"Memory record {record_id} not found",
    }


def _without_none(document: Json) -> Json:
    return {k: v for k, v in document.items() if v is not None}
