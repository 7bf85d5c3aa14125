"""Payload bytes on their way into items and objects: compression, size, S3 offload.

A payload (a checkpoint's blob, a pending write's value) is gzip-compressed when it is at
least ``compression.thresholdBytes`` long and compression makes it smaller; the item records
``encoding: gzip`` then. The stored bytes stay in the item unless they are over
``s3Offload.thresholdBytes`` or the item would pass DynamoDB's 400 KB limit: then they go to
S3 and the item keeps the object key. Without a bucket such an item is refused before
anything is written. Large payloads are compressed on a worker thread (zlib releases the GIL).

Objects are uploaded before the items that refer to them. When the item write is refused, or
an item is not written because its first copy exists, the objects are deleted again (best
effort: a failure to delete is logged); what a crash or a failed delete leaves behind is found
by :meth:`Payloads.sweep_thread`, which deletes the objects of a thread that no item refers to.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from agentpersistence.client.protocol.errors import RequestRejected, SidecarError

from ...settings import DynamoDBSettings
from . import schema
from .clients import Clients

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

Item: TypeAlias = "dict[str, AttributeValueTypeDef]"

THREAD_MIN_BYTES = 256 * 1024
"""Payloads at least this long are compressed or decompressed on a worker thread."""
ITEM_MARGIN_BYTES = 1024
"""Room kept below DynamoDB's item limit for its own accounting."""
DELETE_OBJECTS_BATCH = 1000
"""DeleteObjects takes at most 1000 keys."""

log = logging.getLogger("agentpersistence.sidecar.dynamodb")


@dataclass(frozen=True)
class Draft:
    """An item before its payload is placed: attributes, payload, what to call it in errors."""

    item: Item
    payload: bytes
    what: str
    """e.g. "the checkpoint 1ef... of thread t" (never the payload)."""


def item_size(item: Item) -> int:
    """DynamoDB's size of an item: names plus values (numbers counted generously)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode())
        if "S" in value:
            total += len(value["S"].encode())
        elif "B" in value:
            total += len(value["B"])
        elif "N" in value:
            total += len(value["N"]) // 2 + 2
        else:
            total += 1
    return total


class Payloads:
    """Compression and offload for one backend."""

    def __init__(self, settings: DynamoDBSettings, clients: Clients) -> None:
        self.compression = settings.compression
        self.offload = settings.s3_offload
        self.clients = clients
        self.tagging = schema.expiry_tagging(settings.ttl_seconds)

    # --- writing -------------------------------------------------------------------------

    async def place(self, thread_id: str, drafts: Sequence[Draft]) -> list[Item]:
        """The final items: payloads compressed, large ones uploaded to S3.

        Every size is checked before the first upload, so a refused request writes nothing.
        """
        encoded = await asyncio.gather(*(self.encode(d.payload) for d in drafts))
        plans = [self._plan(d, data, enc) for d, (data, enc) in zip(drafts, encoded, strict=True)]
        uploads = [self._upload(thread_id, item, data) for item, data, off in plans if off]
        results = await asyncio.gather(*uploads, return_exceptions=True)
        items = [item for item, _, _ in plans]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.discard(items)
            raise failed[0]
        return items

    def _plan(self, draft: Draft, data: bytes, encoding: str | None) -> tuple[Item, bytes, bool]:
        """(item, stored bytes, whether they go to S3); raises if they cannot be stored."""
        item = dict(draft.item)
        if encoding is not None:
            item[schema.ENCODING] = {"S": encoding}
        base = item_size(item) + max(len(schema.PAYLOAD), len(schema.OBJECT) + 256)
        limit = schema.MAX_ITEM_BYTES - ITEM_MARGIN_BYTES
        if base > limit:
            raise RequestRejected(
                f"the attributes of {draft.what} other than its payload (metadata, ids) "
                "do not fit in a DynamoDB item (400 KB); store less metadata"
            )
        fits = base + len(data) <= limit
        if self.offload is None:
            if not fits:
                raise RequestRejected(
                    f"{draft.what} is {len(data)} bytes after compression and does not fit in "
                    "a DynamoDB item (400 KB); set dynamodb.s3Offload.bucketName to store "
                    "large payloads in S3"
                )
        elif not fits or len(data) > self.offload.threshold_bytes:
            return item, data, True
        item[schema.PAYLOAD] = {"B": data}
        return item, data, False

    async def _upload(self, thread_id: str, item: Item, data: bytes) -> None:
        assert self.offload is not None
        key = schema.object_key(self.offload.key_prefix, thread_id, item[schema.SK]["S"])
        item[schema.OBJECT] = {"S": key}  # set first: a failed upload may still have stored it
        with self.clients.bucket():
            await self.clients.s3.put_object(
                Bucket=self.offload.bucket_name,
                Key=key,
                Body=data,
                Tagging=self.tagging,
                ContentType="application/octet-stream",
            )

    async def discard(self, items: Iterable[Item]) -> None:
        """Best effort: delete the objects of items that were not written."""
        keys = [item[schema.OBJECT]["S"] for item in items if schema.OBJECT in item]
        if not keys:
            return
        try:
            await self.delete(keys)
        except SidecarError as exc:
            log.warning(
                "objects of items not written are left for the sweep",
                extra={"bucket": self.clients.bucket_name, "left": len(keys), "error": exc.code},
            )

    async def encode(self, payload: bytes) -> tuple[bytes, str | None]:
        """The bytes to store and their encoding (None: as sent)."""
        settings = self.compression
        if not settings.enabled or len(payload) < settings.threshold_bytes:
            return payload, None
        packed = await _maybe_threaded(_gzip, payload, settings.level)
        if len(packed) < len(payload):
            return packed, schema.GZIP
        return payload, None

    # --- reading -------------------------------------------------------------------------

    async def load(self, item: Item) -> bytes | None:
        """The payload of an item as it was sent; None if its object is gone (deleted)."""
        data = item[schema.PAYLOAD]["B"] if schema.PAYLOAD in item else None
        if data is None:
            data = await self._download(item[schema.OBJECT]["S"])
            if data is None:
                return None
        encoding = item[schema.ENCODING]["S"] if schema.ENCODING in item else None
        return await decode(data, encoding)

    async def _download(self, key: str) -> bytes | None:
        if self.offload is None:
            raise SidecarError(
                "a stored item refers to an S3 object but s3Offload is not configured; "
                "restore dynamodb.s3Offload.bucketName"
            )
        with self.clients.bucket():
            try:
                response = await self.clients.s3.get_object(
                    Bucket=self.offload.bucket_name, Key=key
                )
            except self.clients.s3.exceptions.NoSuchKey:
                log.warning("an offloaded payload is gone; treating its item as deleted")
                return None
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    # --- objects of deleted and copied items ---------------------------------------------

    async def delete(self, keys: Iterable[str]) -> None:
        if self.offload is None:
            return
        unique = sorted(set(keys))
        for i in range(0, len(unique), DELETE_OBJECTS_BATCH):
            batch = unique[i : i + DELETE_OBJECTS_BATCH]
            with self.clients.bucket():
                await self.clients.s3.delete_objects(
                    Bucket=self.offload.bucket_name,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )

    async def delete_thread(self, thread_id: str) -> None:
        """Delete every object under the thread's prefix (including any orphaned by a crash)."""
        if self.offload is None:
            return
        prefix = schema.thread_prefix(self.offload.key_prefix, thread_id)
        with self.clients.bucket():
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.offload.bucket_name, Prefix=prefix
            )
            async for page in pages:
                await self.delete(obj["Key"] for obj in page.get("Contents", []))

    async def prefixes_with_objects(self, older_than: float) -> set[str]:
        """The thread prefixes holding an object last modified before ``older_than``."""
        if self.offload is None:
            return set()
        root = self.offload.key_prefix + "t/"
        found: set[str] = set()
        with self.clients.bucket():
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.offload.bucket_name, Prefix=root
            )
            async for page in pages:
                for obj in page.get("Contents", []):
                    if obj["LastModified"].timestamp() < older_than:
                        thread = obj["Key"][len(root) :].split("/", 1)[0]
                        found.add(f"{root}{thread}/")
        return found

    async def sweep_thread(self, thread_id: str, referenced: set[str], older_than: float) -> int:
        """Delete the thread's objects last modified before ``older_than`` (epoch seconds)
        that are not in ``referenced``; how many. The age spares uploads whose item write may
        still be in flight."""
        if self.offload is None:
            return 0
        prefix = schema.thread_prefix(self.offload.key_prefix, thread_id)
        orphans: list[str] = []
        with self.clients.bucket():
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.offload.bucket_name, Prefix=prefix
            )
            async for page in pages:
                orphans += [
                    obj["Key"]
                    for obj in page.get("Contents", [])
                    if obj["Key"] not in referenced and obj["LastModified"].timestamp() < older_than
                ]
        await self.delete(orphans)
        return len(orphans)

    async def copy(self, item: Item, thread_id: str) -> None:
        """Give a copied item its own object under ``thread_id``'s prefix."""
        if schema.OBJECT not in item or self.offload is None:
            return
        source = item[schema.OBJECT]["S"]
        target = schema.object_key(self.offload.key_prefix, thread_id, item[schema.SK]["S"])
        with self.clients.bucket():
            await self.clients.s3.copy_object(
                Bucket=self.offload.bucket_name,
                Key=target,
                CopySource={"Bucket": self.offload.bucket_name, "Key": source},
                Tagging=self.tagging,
                TaggingDirective="REPLACE",
            )
        item[schema.OBJECT] = {"S": target}


async def decode(data: bytes, encoding: str | None) -> bytes:
    if encoding is None:
        return data
    if encoding != schema.GZIP:
        raise SidecarError(f"a stored payload has an unknown encoding {encoding[:20]!r}")
    return await _maybe_threaded(_gunzip, data)


def _gzip(data: bytes, level: int) -> bytes:
    return gzip.compress(data, compresslevel=level, mtime=0)


def _gunzip(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise SidecarError(f"a stored payload is not valid gzip: {type(exc).__name__}") from None


async def _maybe_threaded(fn: Callable[..., bytes], data: bytes, *args: int) -> bytes:
    if len(data) >= THREAD_MIN_BYTES:
        return await asyncio.to_thread(fn, data, *args)
    return fn(data, *args)
