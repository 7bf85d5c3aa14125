"""A page of checkpoints from records scanned in the shared listing order (see :mod:`.base`).

For backends that cannot ask their storage for a page: they yield a request's records in the
listing order, from after its cursor; :func:`page` filters them by metadata and cuts the page,
reading one record past it to know whether another page follows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from .base import ListPosition, decode_cursor, encode_cursor

Listing = Callable[[m.ListRequest, ListPosition | None], AsyncIterator[m.CheckpointRecord]]
"""A request's records in the listing order, from after a position (the metadata filter aside)."""


async def page(request: m.ListRequest, listing: Listing) -> m.ListResponse:
    limit = rules.check_page_limit(request.limit)
    wanted = rules.parse_filter(request.filter)
    after = decode_cursor(request.cursor)
    found: list[m.CheckpointRecord] = []
    async for record in listing(request, after):
        if wanted and not rules.metadata_matches(rules.parse_metadata(record.metadata), wanted):
            continue
        if len(found) == limit:
            return m.ListResponse(found, encode_cursor(position(found[-1])))
        found.append(record)
    return m.ListResponse(found, None)


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
