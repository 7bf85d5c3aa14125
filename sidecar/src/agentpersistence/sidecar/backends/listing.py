"""A page of checkpoints from records scanned in the shared listing order (see :mod:`.base`).

For backends that cannot ask their storage for a page: they yield a request's records in the
listing order, from after its cursor; :func:`page` filters them by metadata and cuts the page,
reading one record past it to know whether another page follows.

Every backend also ends a page early once its records pass :data:`PAGE_BYTES`, so a page of
large checkpoints holds a few of them, not ``limit``, in the sidecar's memory and in the
reply; the client follows the cursor for the rest. :func:`capped` cuts a finished page to
the same budget, for the route handler to apply whatever the backend did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from .base import ListPosition, decode_cursor, encode_cursor

PAGE_BYTES = 4 * 1024 * 1024
"""A list page ends after the record that takes its blobs past this many bytes (it always
holds at least one record, whatever its size)."""

Listing = Callable[[m.ListRequest, ListPosition | None], AsyncIterator[m.CheckpointRecord]]
"""A request's records in the listing order, from after a position (the metadata filter aside)."""


async def page(request: m.ListRequest, listing: Listing) -> m.ListResponse:
    limit = rules.check_page_limit(request.limit)
    wanted = rules.parse_filter(request.filter)
    after = decode_cursor(request.cursor)
    found: list[m.CheckpointRecord] = []
    size = 0
    async for record in listing(request, after):
        if wanted and not rules.metadata_matches(rules.parse_metadata(record.metadata), wanted):
            continue
        if len(found) == limit or size >= PAGE_BYTES:
            return m.ListResponse(found, encode_cursor(position(found[-1])))
        found.append(record)
        size += record_bytes(record)
    return m.ListResponse(found, None)


def record_bytes(record: m.CheckpointRecord) -> int:
    """What a record weighs in a page: its blobs (checkpoint, metadata, pending writes)."""
    return (
        len(record.checkpoint)
        + len(record.metadata)
        + sum(len(w.value) + len(w.channel) + len(w.task_id) for w in record.writes)
    )


def capped(page: m.ListResponse) -> m.ListResponse:
    """``page`` cut after the record that takes it past :data:`PAGE_BYTES`, with the cursor
    of that record; unchanged if it fits."""
    size = 0
    for i, record in enumerate(page.records[:-1]):
        size += record_bytes(record)
        if size >= PAGE_BYTES:
            kept = page.records[: i + 1]
            return m.ListResponse(kept, encode_cursor(position(kept[-1])))
    return page


def wanted(record: m.CheckpointRecord, request: m.ListRequest, after: ListPosition | None) -> bool:
    """Whether a record passes the request's position filters (the metadata filter aside)."""
    if after is not None and not follows(position(record), after):
        return False
    if request.checkpoint_id is not None and record.checkpoint_id != request.checkpoint_id:
        return False
    if request.checkpoint_ns is not None and record.checkpoint_ns != request.checkpoint_ns:
        return False
    return request.before_id is None or record.checkpoint_id < request.before_id


def position(record: m.CheckpointRecord) -> ListPosition:
    return record.thread_id, record.checkpoint_ns, record.checkpoint_id


def follows(at: ListPosition, after: ListPosition) -> bool:
    """Whether ``at`` comes after ``after`` in the shared listing order (threads and
    namespaces ascending, checkpoint ids descending)."""
    thread, ns, cid = at
    return (thread, ns) > after[:2] or ((thread, ns) == after[:2] and cid < after[2])
