"""The table, item layout and bucket of the DynamoDB backend, defined once.

The sidecar's ``--provision`` and the operator both create resources from this module, and
the backend builds every key with it.

**Table**: string keys ``PK`` (partition) and ``SK`` (sort), billing ``PAY_PER_REQUEST``, no
secondary index, TTL on the number attribute ``expires`` (epoch seconds; written on every item
when ``ttlSeconds`` is set). Items, with ``ns`` the checkpoint namespace and ``id`` the
checkpoint id::

    PK             SK                                  kind  item
    t#<thread>     N(ns) E(id)                         c     a checkpoint
    t#<thread>     N(ns) E(id) " " E(task) " " <idx>   w     one pending write of it
    t#<thread>     N(ns) E(id) "  ~" <batch>           b     "that batch of writes is whole"
    reg#<shard>    t#<thread>                          -     "the thread exists" (listing all)
    run#<run>      <sha256 of thread, ns, id>          -     "this run wrote that checkpoint"
    claim          claim                               -     which AgentPersistence uses it

``N(ns)`` writes each UTF-8 byte of the namespace as the two hex digits of its complement and
ends with ``~`` (above every hex digit): namespaces sort in *descending* order and no ``N`` is
a prefix of another. ``E(s)`` escapes every character up to ``!`` as ``!`` + ``chr(0x30 +
code)``: order is kept and no character below ``!`` is left, so the space that starts a
write's suffix sorts below whatever longer id follows. Read with ``ScanIndexForward=False``, a
thread's partition therefore comes in the shared listing order (namespaces ascending, ids
descending) with each checkpoint's writes right before it: a checkpoint and its writes are one
contiguous run ending at the checkpoint item, and a namespace is the key range ``N(ns)...``.

**Batches larger than one transaction** (more than 100 items or about 4 MB of writes in one
``put_writes``): every write item of the batch carries ``batch: <id>``, and the batch's last
transaction also puts its *commit marker* (kind ``b``, in the checkpoint's run, so every read
of the checkpoint reads it too). A write item with a ``batch`` attribute is visible only if its
batch's marker is: the items of a batch whose last transaction failed stay invisible and are
removed (at once, or by the sweep). The id starts with the hex epoch seconds of its write.

The thread registry is spread over :data:`REGISTRY_SHARDS` partitions so that puts do not all
write one key; changing that number needs a migration. **Bucket**: objects under
``<keyPrefix>t/<sha256(thread)>/``, private (public access blocked), encrypted (SSE-S3), and
with a TTL tagged ``agentpersistence-expiry=<days>d``: a lifecycle rule per day count expires
them, never before the item that refers to them. Every upload gets an object of its own (the
key ends with a random token), so an object that no stored item refers to can be deleted
without asking who else might use it.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import TYPE_CHECKING

from agentpersistence.client.protocol.errors import RequestRejected

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import CreateTableInputTypeDef
    from types_aiobotocore_s3.type_defs import (
        LifecycleRuleTypeDef,
        PublicAccessBlockConfigurationTypeDef,
        ServerSideEncryptionConfigurationTypeDef,
    )

# --- attributes ---------------------------------------------------------------------------

PK, SK = "PK", "SK"
CLAIM_PK = CLAIM_SK = "claim"
"""The key of the item where the operator records which ``AgentPersistence`` uses the table
(no thread's partition key can be ``claim``: they all start ``t#``, ``reg#`` or ``run#``)."""
KIND = "kind"
"""``c`` for a checkpoint item, ``w`` for a pending write item, ``b`` for a batch's marker."""
CHECKPOINT, WRITE, MARKER = "c", "w", "b"
TYPE = "type"
"""The serializer's type tag of the payload."""
PAYLOAD = "payload"
"""The (maybe compressed) payload, when stored in the item."""
OBJECT = "object"
"""The S3 key of the payload, when offloaded."""
ENCODING = "encoding"
"""``gzip`` when the payload is compressed; absent when stored as sent."""
METADATA = "metadata"
PARENT = "parent"
RUN = "run"
CHANNEL = "channel"
TASK_PATH = "task_path"
BATCH = "batch"
"""The batch id of a write item stored by a batch larger than one transaction."""
EXPIRES = "expires"
"""The TTL attribute: epoch seconds after which DynamoDB deletes the item."""
LOC_THREAD, LOC_NS, LOC_ID = "thread", "ns", "checkpoint_id"
"""A run index item's pointer to its checkpoint."""

GZIP = "gzip"

# --- limits -------------------------------------------------------------------------------

MAX_ITEM_BYTES = 400 * 1024
MAX_PK_BYTES, MAX_SK_BYTES = 2048, 1024
REGISTRY_SHARDS = 8

# --- keys ---------------------------------------------------------------------------------

_THREAD, _REGISTRY, _RUN, _REGISTERED = "t#", "reg#", "run#", "t#"
_NS_END = "~"
_SEP = " "
_ESCAPE = "!"
_ESCAPES = {c: _ESCAPE + chr(0x30 + c) for c in range(0x22)}
_MARKER = "~"
"""Starts a marker's last key part, where a write has its index (a number)."""


def escape(text: str) -> str:
    """``E``: order-preserving, with no character below ``!`` left."""
    return text.translate(_ESCAPES)


def unescape(text: str) -> str:
    if _ESCAPE not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for c in chars:
        out.append(chr(ord(next(chars)) - 0x30) if c == _ESCAPE else c)
    return "".join(out)


def ns_prefix(checkpoint_ns: str) -> str:
    """``N``: the sort-key prefix of a namespace (namespaces sort descending)."""
    return "".join(f"{255 - b:02x}" for b in checkpoint_ns.encode()) + _NS_END


def ns_upper(checkpoint_ns: str) -> str:
    """A sort key above every item of the namespace and below the next namespace's."""
    return ns_prefix(checkpoint_ns)[:-1] + chr(ord(_NS_END) + 1)


def thread_pk(thread_id: str) -> str:
    return _THREAD + thread_id


def checkpoint_sk(checkpoint_ns: str, checkpoint_id: str) -> str:
    return ns_prefix(checkpoint_ns) + escape(checkpoint_id)


def write_sk(checkpoint_ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return f"{checkpoint_sk(checkpoint_ns, checkpoint_id)}{_SEP}{escape(task_id)}{_SEP}{idx}"


def marker_sk(checkpoint_ns: str, checkpoint_id: str, batch: str) -> str:
    return f"{checkpoint_sk(checkpoint_ns, checkpoint_id)}{_SEP}{_SEP}{_MARKER}{batch}"


def batch_id(now: float) -> str:
    """A new batch id: hex epoch seconds (its age, for the sweep), then a random token."""
    return f"{int(now):010x}{secrets.token_hex(8)}"


def batch_time(batch: str) -> int:
    """The epoch seconds a batch id was made at."""
    return int(batch[:10], 16)


def group_upper(checkpoint_ns: str, checkpoint_id: str) -> str:
    """A sort key above a checkpoint's writes and below any other id's items."""
    return checkpoint_sk(checkpoint_ns, checkpoint_id) + _ESCAPE


class ItemKey:
    """What a thread item's sort key says: namespace, checkpoint id and, for a write, its key
    (for a batch's marker, the batch id)."""

    __slots__ = ("batch", "checkpoint_id", "checkpoint_ns", "write")

    def __init__(self, sk: str) -> None:
        end = sk.index(_NS_END)
        self.checkpoint_ns = bytes(255 - b for b in bytes.fromhex(sk[:end])).decode()
        parts = sk[end + 1 :].split(_SEP)
        self.checkpoint_id = unescape(parts[0])
        self.write: tuple[str, int] | None = None
        self.batch: str | None = None
        if len(parts) == 3:
            if parts[2].startswith(_MARKER):
                self.batch = parts[2][len(_MARKER) :]
            else:
                self.write = (unescape(parts[1]), int(parts[2]))

    @property
    def is_checkpoint(self) -> bool:
        return self.write is None and self.batch is None

    @property
    def group(self) -> tuple[str, str]:
        return self.checkpoint_ns, self.checkpoint_id


def registry_pk(shard: int) -> str:
    return f"{_REGISTRY}{shard}"


def registry_key(thread_id: str) -> tuple[str, str]:
    digest = hashlib.sha256(thread_id.encode(), usedforsecurity=False).digest()
    return registry_pk(digest[0] % REGISTRY_SHARDS), registry_sk(thread_id)


def registry_sk(thread_id: str) -> str:
    return _REGISTERED + thread_id


def registered_thread(sk: str) -> str:
    return sk[len(_REGISTERED) :]


def run_key(run_id: str, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> tuple[str, str]:
    location = "\0".join((thread_id, checkpoint_ns, checkpoint_id)).encode()
    return run_pk(run_id), hashlib.sha256(location, usedforsecurity=False).hexdigest()


def run_pk(run_id: str) -> str:
    return _RUN + run_id


def check_key(name: str, key: str, limit: int, what: str) -> None:
    """Reject a key DynamoDB would refuse, naming the input that makes it too long."""
    size = len(key.encode())
    if size > limit:
        raise RequestRejected(
            f"{what} is too long for the DynamoDB backend: its {name} would be {size} bytes, "
            f"over DynamoDB's {limit}-byte limit"
        )


# --- the table ------------------------------------------------------------------------------


def table_definition(table_name: str) -> CreateTableInputTypeDef:
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": SK, "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


# --- the bucket -----------------------------------------------------------------------------

EXPIRY_TAG = "agentpersistence-expiry"
_DAY = 86400


def expiry_days(ttl_seconds: int) -> int:
    """Lifecycle days for a TTL: whole days, never less (S3 expires after, not before)."""
    return max(1, math.ceil(ttl_seconds / _DAY))


def expiry_tagging(ttl_seconds: int | None) -> str:
    """The ``Tagging`` of every object written with this TTL ("" without a TTL)."""
    return f"{EXPIRY_TAG}={expiry_days(ttl_seconds)}d" if ttl_seconds else ""


def lifecycle_rule(ttl_seconds: int) -> LifecycleRuleTypeDef:
    days = expiry_days(ttl_seconds)
    return {
        "ID": f"{EXPIRY_TAG}-{days}d",
        "Filter": {"Tag": {"Key": EXPIRY_TAG, "Value": f"{days}d"}},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


PUBLIC_ACCESS_BLOCK: PublicAccessBlockConfigurationTypeDef = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION: ServerSideEncryptionConfigurationTypeDef = {
    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
}


def thread_prefix(key_prefix: str, thread_id: str) -> str:
    """Where every object of a thread lives (listed by ``delete_thread``)."""
    digest = hashlib.sha256(thread_id.encode(), usedforsecurity=False).hexdigest()
    return f"{key_prefix}t/{digest[:40]}/"


def object_key(key_prefix: str, thread_id: str, sk: str) -> str:
    """A new object for an item: under its thread's prefix, named by its sort key and a random
    token, so no two uploads share an object and one no item refers to is safe to delete."""
    item = hashlib.sha256(sk.encode(), usedforsecurity=False).hexdigest()[:40]
    return f"{thread_prefix(key_prefix, thread_id)}{item}/{secrets.token_hex(20)}"
