"""Checkpoints in the sidecar's memory: for development and tests, lost on restart.

Also the reference for the other backends: every question of semantics is answered here
in the plainest possible code.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from collections.abc import Iterator, Sequence

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from .. import listing
from ..base import CheckpointBackend, ListPosition, decode_cursor, encode_cursor

_WriteKey = tuple[str, int]


@dataclasses.dataclass
class _Namespace:
    ids: list[str] = dataclasses.field(default_factory=list)
    """Sorted ascending; the latest is the last."""
    records: dict[str, m.CheckpointRecord] = dataclasses.field(default_factory=dict)
    writes: dict[str, dict[_WriteKey, m.PendingWrite]] = dataclasses.field(
        default_factory=lambda: defaultdict(dict)
    )
    runs: dict[str, str] = dataclasses.field(default_factory=dict)
    """checkpoint id → run id"""

    def add(self, record: m.CheckpointRecord, run_id: str | None) -> None:
        cid = record.checkpoint_id
        if cid not in self.records:
            bisect.insort(self.ids, cid)
        self.records[cid] = record
        if run_id is not None:
            self.runs[cid] = run_id
        else:
            self.runs.pop(cid, None)

    def remove(self, cid: str) -> None:
        if self.records.pop(cid, None) is not None:
            self.ids.remove(cid)
        self.writes.pop(cid, None)
        self.runs.pop(cid, None)

    def full(self, cid: str) -> m.CheckpointRecord:
        record = self.records[cid]
        return dataclasses.replace(record, writes=list(self.writes.get(cid, {}).values()))


class MemoryCheckpointBackend(CheckpointBackend):
    name = "memory"

    def __init__(self) -> None:
        self._threads: dict[str, dict[str, _Namespace]] = {}

    async def health(self) -> m.BackendHealth:
        return m.BackendHealth("checkpointer", self.name, True)

    async def get_tuple(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None:
        ns = self._threads.get(request.thread_id, {}).get(request.checkpoint_ns)
        if ns is None or not ns.ids:
            return None
        cid = request.checkpoint_id or ns.ids[-1]
        return ns.full(cid) if cid in ns.records else None

    async def list(self, request: m.ListRequest) -> m.ListResponse:
        limit = rules.check_page_limit(request.limit)
        wanted = rules.parse_filter(request.filter)
        page: list[m.CheckpointRecord] = []
        size = 0
        for position in self._positions(request, decode_cursor(request.cursor)):
            ns = self._threads[position[0]][position[1]]
            record = ns.records[position[2]]
            if wanted and not rules.metadata_matches(rules.parse_metadata(record.metadata), wanted):
                continue
            if len(page) == limit or size >= listing.PAGE_BYTES:
                return m.ListResponse(page, encode_cursor(listing.position(page[-1])))
            page.append(ns.full(position[2]))
            size += listing.record_bytes(page[-1])
        return m.ListResponse(page, None)

    def _positions(
        self, request: m.ListRequest, after: ListPosition | None
    ) -> Iterator[ListPosition]:
        if request.thread_id is not None:
            threads = [request.thread_id] if request.thread_id in self._threads else []
        else:
            threads = sorted(self._threads)
        for thread_id in threads:
            namespaces = self._threads[thread_id]
            for ns_name in sorted(namespaces):
                if request.checkpoint_ns is not None and ns_name != request.checkpoint_ns:
                    continue
                for cid in reversed(namespaces[ns_name].ids):
                    position = (thread_id, ns_name, cid)
                    if after is not None and not listing.follows(position, after):
                        continue
                    if request.checkpoint_id is not None and cid != request.checkpoint_id:
                        continue
                    if request.before_id is not None and cid >= request.before_id:
                        continue
                    yield position

    async def put(self, request: m.PutRequest) -> None:
        record = dataclasses.replace(request.record, writes=[])
        namespaces = self._threads.setdefault(record.thread_id, {})
        namespaces.setdefault(record.checkpoint_ns, _Namespace()).add(record, request.run_id)

    async def put_writes(self, request: m.PutWritesRequest) -> None:
        namespaces = self._threads.setdefault(request.thread_id, {})
        ns = namespaces.setdefault(request.checkpoint_ns, _Namespace())
        stored = ns.writes[request.checkpoint_id]
        for write in request.writes:
            key = (write.task_id, write.idx)
            if key not in stored or rules.write_replaces(write.idx):
                stored[key] = write

    async def delete_thread(self, thread_id: str) -> None:
        self._threads.pop(thread_id, None)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        doomed = set(run_ids)
        for namespaces in self._threads.values():
            for ns in namespaces.values():
                for cid in [c for c, run in ns.runs.items() if run in doomed]:
                    ns.remove(cid)

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = self._threads.get(source_thread_id, {})
        target = self._threads.setdefault(target_thread_id, {})
        for ns_name, ns in source.items():
            copy = target.setdefault(ns_name, _Namespace())
            for cid in ns.ids:
                record = dataclasses.replace(ns.records[cid], thread_id=target_thread_id)
                copy.add(record, ns.runs.get(cid))
                copy.writes[cid].update(ns.writes.get(cid, {}))

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        rules.check_prune_strategy(strategy)
        for thread_id in thread_ids:
            if strategy == rules.DELETE:
                self._threads.pop(thread_id, None)
                continue
            for ns in self._threads.get(thread_id, {}).values():
                for cid in ns.ids[:-1]:
                    ns.remove(cid)
