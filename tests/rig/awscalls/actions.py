"""What IAM must allow for one recorded AWS call: its actions, on which resources.

A :class:`Call` is one line the recorder wrote (``hook/sitecustomize.py``); :func:`needs` turns
it into :class:`Need` s: an IAM action, the ARN it acts on (``*`` for actions AWS scopes to no
resource) with the names the documents' ``${...}`` placeholders stand for in that ARN, and the
condition keys the request itself decides (``aws:RequestTag/...``, ``aws:TagKeys``,
``dynamodb:LeadingKeys``). The action is the operation's name for DynamoDB and AgentCore; S3
names most of its actions differently, so :data:`S3_ACTIONS` maps each S3 operation the
project calls, from the Service Authorization Reference ("Actions, resources, and condition
keys for Amazon S3", API operations table).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentpersistence.sidecar.backends.dynamodb import schema

ACCOUNT = "123456789012"
"""The account of ARNs built from names (the stand-ins answer with their own, or none)."""

PARTITION = "aws"

SERVICE_PREFIXES: Mapping[str, str] = {
    "dynamodb": "dynamodb",
    "s3": "s3",
    "bedrock-agentcore": "bedrock-agentcore",
    "bedrock-agentcore-control": "bedrock-agentcore",
    "bedrock-runtime": "bedrock",
    "bedrock-agent-runtime": "bedrock",
}
"""botocore service name → IAM action prefix (both AgentCore planes share one)."""

TABLE = "arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}"
INDEX = TABLE + "/index/${IndexName}"
BUCKET = "arn:${Partition}:s3:::${BucketName}"
OBJECT = BUCKET + "/${KeyPrefix}"
MEMORY = "arn:${Partition}:bedrock-agentcore:${Region}:${Account}:memory/${MemoryId}"
MODEL = "arn:${Partition}:bedrock:${Region}::foundation-model/${ModelId}"
SESSION = "arn:${Partition}:bedrock:${Region}:${Account}:session/${SessionId}"

PREFIXES: Mapping[str, str] = {
    "TableName": "TableNamePrefix",
    "BucketName": "BucketNamePrefix",
    "MemoryId": "MemoryNamePrefix",
}
"""The operator's documents scope by name prefixes: a name is its own longest prefix."""

PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")
"""``${Name}`` in an ARN template (here and in the documents)."""
_WHERE = ("Partition", "Region", "Account")  # kept as values in a need's shape

Kind = Literal["bucket", "object"]

S3_ACTIONS: Mapping[str, tuple[tuple[str, Kind], ...]] = {
    "CreateBucket": (("s3:CreateBucket", "bucket"),),
    "DeleteBucket": (("s3:DeleteBucket", "bucket"),),
    "HeadBucket": (("s3:ListBucket", "bucket"),),
    "ListObjectsV2": (("s3:ListBucket", "bucket"),),
    "ListObjectVersions": (("s3:ListBucketVersions", "bucket"),),
    "GetPublicAccessBlock": (("s3:GetBucketPublicAccessBlock", "bucket"),),
    "PutPublicAccessBlock": (("s3:PutBucketPublicAccessBlock", "bucket"),),
    "GetBucketEncryption": (("s3:GetEncryptionConfiguration", "bucket"),),
    "PutBucketEncryption": (("s3:PutEncryptionConfiguration", "bucket"),),
    "GetBucketLifecycleConfiguration": (("s3:GetLifecycleConfiguration", "bucket"),),
    "PutBucketLifecycleConfiguration": (("s3:PutLifecycleConfiguration", "bucket"),),
    "GetBucketTagging": (("s3:GetBucketTagging", "bucket"),),
    "PutBucketTagging": (("s3:PutBucketTagging", "bucket"),),
    "DeleteBucketTagging": (("s3:PutBucketTagging", "bucket"),),
    "GetObject": (("s3:GetObject", "object"),),
    "HeadObject": (("s3:GetObject", "object"),),
    "PutObject": (("s3:PutObject", "object"),),
    "DeleteObject": (("s3:DeleteObject", "object"),),
    "DeleteObjects": (("s3:DeleteObject", "object"),),
    "CopyObject": (("s3:PutObject", "object"),),
}
"""S3 operation → its actions and what each acts on. Further actions depend on the request:
:data:`S3_REQUEST_ACTIONS`."""

S3_REQUEST_ACTIONS: Mapping[str, str] = {
    "Tagging": "s3:PutObjectTagging",  # PutObject / CopyObject with tags for the object
    "Tags": "s3:TagResource",  # CreateBucket with CreateBucketConfiguration.Tags
    "CopySource": "s3:GetObject",  # CopyObject reads its source
}
"""What a request parameter adds to an S3 operation's actions."""

S3_VERSION_ACTIONS: Mapping[str, str] = {
    "DeleteObject": "s3:DeleteObjectVersion",
    "DeleteObjects": "s3:DeleteObjectVersion",
    "GetObject": "s3:GetObjectVersion",
    "HeadObject": "s3:GetObjectVersion",
}
"""What the operation needs, besides its own actions, for an object named with a VersionId."""

S3_KNOWN_ACTIONS = frozenset(
    [action for pairs in S3_ACTIONS.values() for action, _ in pairs]
    + [*S3_REQUEST_ACTIONS.values(), *S3_VERSION_ACTIONS.values()]
)
"""Every S3 action this module (and so a document the tests check) may name."""

TRANSACT_ACTIONS: Mapping[str, str] = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
"""DynamoDB has no TransactWriteItems/TransactGetItems action: each item needs its own."""

AGENTCORE_UNSCOPED = frozenset({"CreateMemory", "ListMemories"})
"""AgentCore actions with no resource type: IAM only accepts ``"Resource": "*"`` for them."""


SESSION_UNSCOPED = frozenset({"CreateSession", "ListSessions"})
"""Bedrock session actions with no resource type (the session has no id yet; the list is
the account's): IAM only accepts ``"Resource": "*"`` for them."""


class Unmapped(Exception):
    """A call this module cannot translate into IAM actions yet (add it here)."""


@dataclass(frozen=True)
class Call:
    """One AWS call as the recorder wrote it."""

    role: str
    service: str
    operation: str
    region: str
    params: Mapping[str, Any]
    origin: str = ""
    argv0: str = ""
    pid: int = 0

    @classmethod
    def from_line(cls, line: str) -> Call:
        raw = json.loads(line)
        fields = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        return cls(**fields)

    def __str__(self) -> str:
        where = f" at {self.origin}" if self.origin else ""
        return f"{self.role}: {self.service}.{self.operation}{where}"


@dataclass(frozen=True)
class Need:
    """One action a call needs allowed on one resource."""

    action: str
    resource: str
    names: Mapping[str, str] = field(default_factory=dict)
    """The value of each placeholder (``Region``, ``TableName``...) for this resource."""
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Condition keys and their values, as far as the request decides them."""

    shape: str = ""
    """The resource with its names as placeholders (``...:table/${TableName}``)."""

    def __str__(self) -> str:
        return f"{self.action} on {self.shape or self.resource}"


def read_calls(directory: Path) -> list[Call]:
    """Every complete line of every ``calls-*.jsonl`` in ``directory``."""
    calls = []
    for path in sorted(directory.glob("calls-*.jsonl")):
        text = path.read_text()
        complete = text[: text.rfind("\n") + 1]  # a writer may be mid-line
        calls += [Call.from_line(line) for line in complete.splitlines() if line]
    return calls


def needs(call: Call) -> list[Need]:
    """The actions ``call`` needs allowed; raises :class:`Unmapped` for a call unknown here."""
    if call.service == "dynamodb":
        found = list(_dynamodb(call))
    elif call.service == "s3":
        found = list(_s3(call))
    elif SERVICE_PREFIXES.get(call.service) == "bedrock-agentcore":
        found = [_agentcore(call)]
    elif call.service == "bedrock-agent-runtime":
        found = [_session(call)]
    elif (call.service, call.operation) == ("bedrock-runtime", "InvokeModel"):
        model = str(call.params["modelId"])
        found = [_resource("bedrock:InvokeModel", MODEL, **_in_region(call.region), ModelId=model)]
    else:
        raise Unmapped(f"{call}: no IAM mapping for the service {call.service}")
    context = _request_context(call)
    return [Need(n.action, n.resource, n.names, context, n.shape) for n in found]


# --- resources -------------------------------------------------------------------------


def fill(template: str, names: Mapping[str, str]) -> str:
    """``template`` with each ``${Name}`` it has a value for replaced."""
    return PLACEHOLDER.sub(lambda found: names.get(found.group(1), found.group(0)), template)


def _resource(action: str, template: str, **names: str) -> Need:
    names |= {PREFIXES[name]: value for name, value in names.items() if name in PREFIXES}
    where = {name: names[name] for name in _WHERE if name in names}
    return Need(action, fill(template, names), names, shape=fill(template, where))


def _in_region(region: str) -> dict[str, str]:
    return {"Partition": PARTITION, "Region": region, "Account": ACCOUNT}


def _table(call: Call, action: str, table: str, index: str | None = None) -> Need:
    if index is not None:
        return _resource(action, INDEX, **_in_region(call.region), TableName=table, IndexName=index)
    return _resource(action, TABLE, **_in_region(call.region), TableName=table)


def _memory(call: Call, action: str, memory_id: str) -> Need:
    return _resource(action, MEMORY, **_in_region(call.region), MemoryId=memory_id)


def _from_arn(action: str, arn: str) -> Need:
    """A resource an ARN in the request names (tagging calls)."""
    parts = arn.split(":", 5)
    if len(parts) != 6:
        raise Unmapped(f"{action}: {arn!r} is not an ARN")
    _, partition, service, region, account, resource = parts
    where = {"Partition": partition, "Region": region, "Account": account}
    kind, _, name = resource.partition("/")
    if (service, kind) == ("dynamodb", "table") and "/" not in name:
        return _resource(action, TABLE, **where, TableName=name)
    if (service, kind) == ("bedrock-agentcore", "memory"):
        return _resource(action, MEMORY, **where, MemoryId=name)
    if (service, kind) == ("bedrock", "session"):
        return _resource(action, SESSION, **where, SessionId=name)
    raise Unmapped(f"{action}: no placeholders known for {arn!r}")


def _bucket(action: str, bucket: str) -> Need:
    return _resource(action, BUCKET, Partition=PARTITION, BucketName=bucket)


def _object(action: str, bucket: str, key: str) -> Need:
    return _resource(action, OBJECT, Partition=PARTITION, BucketName=bucket, KeyPrefix=key)


# --- per service -----------------------------------------------------------------------


def _dynamodb(call: Call) -> Iterator[Need]:
    params, operation = call.params, call.operation
    if operation in ("BatchWriteItem", "BatchGetItem"):
        for table in params.get("RequestItems", []):
            yield _table(call, f"dynamodb:{operation}", table)
    elif operation in ("TransactWriteItems", "TransactGetItems"):
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                yield _table(call, TRANSACT_ACTIONS[kind], body["TableName"])
    elif "ResourceArn" in params:
        yield _from_arn(f"dynamodb:{operation}", params["ResourceArn"])
    elif "TableName" in params:
        yield _table(call, f"dynamodb:{operation}", params["TableName"], params.get("IndexName"))
        if operation == "CreateTable" and params.get("Tags"):
            yield _table(call, "dynamodb:TagResource", params["TableName"])
    else:
        raise Unmapped(f"{call}: no resource known for it")


def _s3(call: Call) -> Iterator[Need]:
    params, operation = call.params, call.operation
    if operation not in S3_ACTIONS:
        raise Unmapped(f"{call}: add its IAM actions to S3_ACTIONS (Service Authorization Ref.)")
    bucket = params["Bucket"]
    keys = _s3_keys(params)
    for action, kind in S3_ACTIONS[operation]:
        if kind == "bucket":
            yield _bucket(action, bucket)
        else:
            yield from (_object(action, bucket, key) for key, _ in keys)
    yield from _s3_request_actions(operation, params, bucket, keys)


def _s3_keys(params: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """``(key, versioned)`` of every object the request names (DeleteObjects: all of them)."""
    if "Delete" in params:
        objects = params["Delete"].get("Objects", [])
        return [(o["Key"], "VersionId" in o) for o in objects]
    if "Key" in params:
        return [(params["Key"], "VersionId" in params)]
    return []


def _s3_request_actions(
    operation: str, params: Mapping[str, Any], bucket: str, keys: Sequence[tuple[str, bool]]
) -> Iterator[Need]:
    for key, versioned in keys:
        if versioned and operation in S3_VERSION_ACTIONS:
            yield _object(S3_VERSION_ACTIONS[operation], bucket, key)
        if "Tagging" in params and isinstance(params["Tagging"], str):
            yield _object(S3_REQUEST_ACTIONS["Tagging"], bucket, key)
    if params.get("CreateBucketConfiguration", {}).get("Tags"):
        yield _bucket(S3_REQUEST_ACTIONS["Tags"], bucket)
    source = params.get("CopySource")
    if isinstance(source, str):
        source_bucket, _, source_key = source.lstrip("/").partition("/")
        yield _object(S3_REQUEST_ACTIONS["CopySource"], source_bucket, source_key)
    elif isinstance(source, dict):
        yield _object(S3_REQUEST_ACTIONS["CopySource"], source["Bucket"], source["Key"])


def _agentcore(call: Call) -> Need:
    action = f"bedrock-agentcore:{call.operation}"
    params = call.params
    if "memoryId" in params:
        return _memory(call, action, params["memoryId"])
    if "resourceArn" in params:
        return _from_arn(action, params["resourceArn"])
    if call.operation in AGENTCORE_UNSCOPED:
        return Need(action, "*", _in_region(call.region), shape="*")
    raise Unmapped(f"{call}: no resource known for it")


def _session(call: Call) -> Need:
    """A Bedrock Agent Runtime session call: its action is ``bedrock:<operation>``, on the
    session it names (by id or ARN)."""
    action = f"bedrock:{call.operation}"
    params = call.params
    if call.operation in SESSION_UNSCOPED:
        return Need(action, "*", _in_region(call.region), shape="*")
    if "resourceArn" in params:
        return _from_arn(action, params["resourceArn"])
    if "sessionIdentifier" in params:
        identifier = str(params["sessionIdentifier"])
        if identifier.startswith("arn:"):
            return _from_arn(action, identifier)
        return _resource(action, SESSION, **_in_region(call.region), SessionId=identifier)
    raise Unmapped(f"{call}: no resource known for it")


# --- condition keys the request decides ------------------------------------------------


def _request_context(call: Call) -> dict[str, tuple[str, ...]]:
    tags = _request_tags(call.params)
    context: dict[str, tuple[str, ...]] = {
        f"aws:RequestTag/{key}": (value,) for key, value in tags.items()
    }
    keys = [*tags, *call.params.get("TagKeys", []), *call.params.get("tagKeys", [])]
    if keys:
        context["aws:TagKeys"] = tuple(keys)
    leading = tuple(_leading_keys(call.params))
    if leading:
        context["dynamodb:LeadingKeys"] = leading
    return context


def _request_tags(params: Mapping[str, Any]) -> dict[str, str]:
    """Tags a creating or tagging request carries (``Tags`` as a list or ``tags`` as a map)."""
    found: dict[str, str] = {}
    for tags in (params.get("Tags"), params.get("CreateBucketConfiguration", {}).get("Tags")):
        if isinstance(tags, list):
            found |= {tag["Key"]: tag["Value"] for tag in tags}
    if isinstance(params.get("tags"), dict):
        found |= params["tags"]
    return found


def _leading_keys(params: Mapping[str, Any]) -> Iterable[str]:
    """Partition key values of the items a DynamoDB item request names."""
    for name in ("Key", "Item"):
        value = params.get(name)
        if isinstance(value, dict) and isinstance(value.get(schema.PK), dict):
            yield from (str(v) for v in value[schema.PK].values())
