"""The sidecar's configuration: one model for the config file and the CR's ``spec``.

The file has top-level blocks ``checkpointer``, ``store`` and ``cache``; each names its
``backend`` and carries that backend's settings in a block of the same name, camelCase as
in the Kubernetes resource::

    checkpointer:
      backend: valkey
      valkey: {url: "valkey://localhost:6379/0", ttlSeconds: 86400}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

CheckpointBackendName = Literal[
    "memory", "valkey", "dynamodb", "agentcore-memory", "agentcore-valkey", "bedrock-session"
]


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message says where."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class MemorySettings(_Model):
    """In-process dictionaries: for development and tests; lost when the sidecar stops."""


class ValkeyIamAuthSettings(_Model):
    """ElastiCache IAM authentication: each new connection authenticates as ``userId`` with a
    fresh token, a SigV4-presigned ``connect`` request signed with the credentials of the
    standard AWS chain (web identity in a pod). Tokens live 15 minutes, but ElastiCache keeps
    an authenticated connection up to 12 hours; connections the pool opens again later get
    a fresh token each. Needs ``valkeys://`` (ElastiCache takes IAM tokens only over TLS)."""

    user_id: str = Field(
        min_length=1, description="The IAM-enabled ElastiCache user (its user id and name)."
    )
    cache_name: str = Field(
        min_length=1,
        description="The replication group id, or the serverless cache's name (lowercase).",
    )
    region: str | None = Field(
        default=None,
        description="The cache's AWS region; default: AWS_REGION, then the AWS config chain.",
    )
    serverless: bool = Field(default=False, description="Whether cacheName is a serverless cache.")


TLS_SCHEMES = frozenset({"valkeys", "rediss"})
"""URL schemes over TLS (valkey-py reads ``rediss://`` as ``valkeys://``)."""


class ValkeyConnectionSettings(_Model):
    """Where a Valkey backend connects and as whom: the fields every Valkey block shares."""

    url: str = Field(
        description="Valkey URL: valkey:// or valkeys:// (TLS: the server's certificate and "
        "hostname are verified; ssl_ca_certs=PATH names the CA, ssl_check_hostname=false "
        "skips the hostname), optional user:password@ and /db."
    )
    max_connections: int = Field(default=64, gt=0, description="Connection pool size.")
    socket_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Per-command timeout towards Valkey."
    )
    password_file: str | None = Field(
        default=None,
        min_length=1,
        description="Path of a file holding the password (e.g. a mounted Kubernetes Secret), "
        "read at every new connection so a rotated Secret is used from then on; a trailing "
        "newline is ignored. Keeps the password out of the URL.",
    )
    username_file: str | None = Field(
        default=None,
        min_length=1,
        description="Path of a file holding the ACL user name, read with passwordFile; "
        "default: the URL's user, else the default user.",
    )
    iam_auth: ValkeyIamAuthSettings | None = Field(
        default=None,
        description="ElastiCache IAM authentication instead of a password (needs valkeys://).",
    )
    wait_replicas: int = Field(
        default=0,
        ge=0,
        description="Replicas that must hold each write before the sidecar acknowledges it "
        "(a WAIT in the write's round trip), so a failover to one of them loses nothing "
        "acknowledged. Fewer within waitTimeoutMs fails the call with backend_unavailable "
        "(retry it; the write is on the primary). 0: acknowledged once on the primary; "
        "replication is asynchronous, so a failover can lose the last acknowledged writes. "
        "Standalone (replicated) servers only, not cluster mode.",
    )
    wait_timeout_ms: int = Field(
        default=1000,
        gt=0,
        description="Milliseconds a write waits for waitReplicas replicas; below "
        "socketTimeoutSeconds.",
    )

    @model_validator(mode="after")
    def _one_credentials_source(self) -> ValkeyConnectionSettings:
        problem = credentials_conflict(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _wait_within_timeout(self) -> ValkeyConnectionSettings:
        if self.wait_replicas and self.wait_timeout_ms >= self.socket_timeout_seconds * 1000:
            raise ValueError(
                f"waitTimeoutMs ({self.wait_timeout_ms}) must be below socketTimeoutSeconds "
                f"({self.socket_timeout_seconds:g} s): a write waiting for replicas would "
                "otherwise be cut off as an unreachable server"
            )
        return self


def credentials_conflict(settings: ValkeyConnectionSettings) -> str | None:
    """Why the block's credential fields contradict each other; None when they agree."""
    parts = urlsplit(settings.url)
    given = (("passwordFile", settings.password_file), ("iamAuth", settings.iam_auth))
    sources = [alias for alias, value in given if value is not None]
    if parts.password is not None and sources:
        return (
            f"the url carries a password and {sources[0]} is given: take the password out "
            "of the url"
        )
    if len(sources) > 1:
        return "passwordFile and iamAuth are both given: keep one"
    if settings.username_file is not None and settings.password_file is None:
        return "usernameFile needs passwordFile (a user name alone cannot log in)"
    if settings.username_file is not None and parts.username:
        return "the url names a user and usernameFile is given: keep one"
    if settings.iam_auth is not None:
        if parts.username:
            return "the url names a user and iamAuth is given: iamAuth logs in as its userId"
        if parts.scheme not in TLS_SCHEMES:
            return (
                f"iamAuth needs a valkeys:// url, not {parts.scheme}://: ElastiCache accepts "
                "IAM tokens only over TLS, and a token sent in clear could be replayed"
            )
    return None


class ValkeySettings(ValkeyConnectionSettings):
    key_prefix: str = Field(
        default="ap", description="Prefix of every key, so several deployments can share a server."
    )
    ttl_seconds: int | None = Field(
        default=None,
        gt=0,
        description="Expire a thread's keys this long after its last write; unset keeps them.",
    )


class S3OffloadSettings(_Model):
    """Where payloads too large for a DynamoDB item go (created by ``--provision``)."""

    bucket_name: str = Field(
        min_length=3, max_length=63, description="S3 bucket for payloads over thresholdBytes."
    )
    threshold_bytes: int = Field(
        default=350 * 1024,
        gt=0,
        le=400 * 1024,
        description="Payloads (after compression) larger than this go to S3; DynamoDB's "
        "item limit is 400 KB, so keep room for the item's other attributes.",
    )
    key_prefix: str = Field(
        default="agentpersistence/", description="Prefix of every object key in the bucket."
    )


class CompressionSettings(_Model):
    """gzip for payloads at or above a size; kept only when it makes the payload smaller."""

    enabled: bool = Field(default=True, description="Compress payloads above thresholdBytes.")
    threshold_bytes: int = Field(
        default=2048, ge=0, description="Compress payloads of at least this many bytes."
    )
    level: int = Field(default=6, ge=1, le=9, description="gzip level: 1 fastest, 9 smallest.")


class AwsClientSettings(_Model):
    """How a backend talks to AWS. Endpoints and credentials come from the standard chain
    (``AWS_ENDPOINT_URL_<SERVICE>``, web identity, pod or instance roles, ...)."""

    region: str | None = Field(
        default=None, description="AWS region; default: AWS_REGION, then the AWS config chain."
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        le=20,
        description="Attempts per AWS call (botocore's adaptive retries: throttling, 5xx).",
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection to AWS."
    )
    read_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Seconds to wait for an answer from AWS."
    )
    max_connections: int = Field(default=64, gt=0, description="HTTP connections per client.")


class DynamoDBSettings(AwsClientSettings):
    """Checkpoints in a DynamoDB table, large payloads in S3. Endpoints, region and
    credentials come from the standard AWS chain (``AWS_REGION``,
    ``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_ENDPOINT_URL_S3``, ...)."""

    table_name: str = Field(
        min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$", description="The table."
    )
    s3_offload: S3OffloadSettings | None = Field(
        default=None,
        description="Without it, a payload that cannot fit in a 400 KB item is rejected.",
    )
    compression: CompressionSettings = Field(
        default=CompressionSettings(),
        description="gzip of large payloads, kept only when it saves.",
    )
    ttl_seconds: int | None = Field(
        default=None,
        gt=0,
        description="Every item (and S3 object, by lifecycle) expires this long after its "
        "write; unset keeps them.",
    )


MEMORY_ID_PATTERN = (
    r"^(arn:(aws|aws-cn|aws-us-gov):bedrock-agentcore:[a-z0-9-]+:[0-9]{12}:memory/)?"
    r"[a-zA-Z][a-zA-Z0-9-_]{0,99}-[a-zA-Z0-9]{10}$"
)
ACTOR_ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9-_/]*(?::[a-zA-Z0-9-_/]+)*[a-zA-Z0-9-_/]*$"


def _default_actor_id(
    description: str = "The actorId of threads whose config carries no configurable.actor_id.",
) -> Any:
    """The ``defaultActorId`` field of the blocks whose threads belong to AgentCore actors."""
    return Field(
        default="agentpersistence",
        min_length=1,
        max_length=255,
        pattern=ACTOR_ID_PATTERN,
        description=description,
    )


class AgentCoreMemorySettings(AwsClientSettings):
    """Checkpoints as events of a Bedrock AgentCore Memory (``AWS_ENDPOINT_URL_BEDROCK_AGENTCORE``
    overrides the endpoint). A thread is a session of an actor: ``configurable.actor_id``, else
    ``defaultActorId``."""

    memory_id: str | None = Field(
        default=None,
        pattern=MEMORY_ID_PATTERN,
        description="The memory's id or ARN. Required in a sidecar config file; in an "
        "AgentPersistence, leave it unset to use the memory the operator provisions from "
        "spec.agentcoreMemory.",
    )
    default_actor_id: str = _default_actor_id()


SESSION_ID_PATTERN = (
    r"^(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]+:[0-9]{12}:session/)?"
    r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$"
)
KMS_KEY_ARN_PATTERN = r"^arn:aws(|-cn|-us-gov):kms:[a-zA-Z0-9-]*:[0-9]{12}:key/[a-zA-Z0-9-]{36}$"


class BedrockSessionSettings(AwsClientSettings):
    """Checkpoints as invocation steps of Bedrock Agent Runtime sessions, one session per
    thread (``AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME`` overrides the endpoint). A thread id
    that is an existing session's id or ARN is that session; other thread ids get a session
    the sidecar creates, recorded in a directory session."""

    kms_key_arn: str | None = Field(
        default=None,
        pattern=KMS_KEY_ARN_PATTERN,
        description="KMS key (ARN) that encrypts the sessions the sidecar creates (CreateSession's "
        "encryptionKeyArn); the sidecar's role needs kms:Encrypt, kms:Decrypt, "
        "kms:GenerateDataKey and kms:DescribeKey on it. Unset: AWS-managed keys.",
    )
    directory_session_id: str | None = Field(
        default=None,
        pattern=SESSION_ID_PATTERN,
        description="The session (id or ARN) that maps thread ids to sessions. Unset: found by "
        "its metadata (directoryName) among the account's sessions at the first request, "
        "or created; setting it saves that scan.",
    )
    directory_name: str = Field(
        default="agentpersistence",
        min_length=1,
        max_length=100,
        pattern=r"^[a-zA-Z0-9._:/=+@-]+$",
        description="Name of the directory session looked up when directorySessionId is unset; "
        "sidecars that share a name share threads.",
    )


class AgentCoreValkeySettings(ValkeySettings):
    """Checkpoints in Valkey in AgentCore's data model, as ``langgraph-checkpoint-aws``'s
    ``AgentCoreValkeySaver`` keeps them: a thread belongs to an actor (``configurable.actor_id``,
    else ``defaultActorId``). Threads that saver wrote are read too."""

    key_prefix: str = Field(
        default="agentcore",
        description="Prefix of the keys this backend writes (the saver's own keys always "
        "start with agentcore: and are read whatever this is).",
    )
    default_actor_id: str = _default_actor_id()
    read_saver_keys: bool = Field(
        default=True,
        description="Also read threads AgentCoreValkeySaver wrote (its agentcore:session:, "
        "agentcore:checkpoint: and agentcore:writes: keys; standalone servers only). Off "
        "saves a small script call per read.",
    )


class CheckpointerConfig(_Model):
    backend: CheckpointBackendName = Field(description="Where checkpoints are stored.")
    memory: MemorySettings | None = Field(default=None, description="No settings; for tests.")
    valkey: ValkeySettings | None = Field(default=None, description="For backend: valkey.")
    dynamodb: DynamoDBSettings | None = Field(default=None, description="For backend: dynamodb.")
    agentcore_memory: AgentCoreMemorySettings | None = Field(
        default=None, description="For backend: agentcore-memory."
    )
    bedrock_session: BedrockSessionSettings | None = Field(
        default=None, description="For backend: bedrock-session (optional: defaults apply)."
    )
    agentcore_valkey: AgentCoreValkeySettings | None = Field(
        default=None, description="For backend: agentcore-valkey."
    )

    @model_validator(mode="after")
    def _one_backend_block(self) -> CheckpointerConfig:
        _check_blocks(self)
        return self


StoreBackendName = Literal["memory", "valkey", "dynamodb", "agentcore-memory"]
CacheBackendName = Literal["memory", "valkey"]


class EmbedSettings(_Model):
    """An embedding provider the sidecar calls itself (when the agent sends no vectors)."""

    provider: Literal["bedrock", "sentence-transformers"] = Field(
        description="bedrock (InvokeModel through aiobotocore) or sentence-transformers (local)."
    )
    model: str = Field(
        description="Bedrock model id (amazon.titan-embed-text-v2:0) or sentence-transformers name."
    )


class IndexSettings(_Model):
    """Vector search over stored items, as LangGraph's ``IndexConfig``."""

    dims: int = Field(gt=0, description="Embedding dimensions.")
    distance: Literal["cosine", "l2", "ip"] = Field(
        default="cosine", description="Distance metric; scores are always higher-is-closer."
    )
    fields: list[str] = Field(
        default_factory=lambda: ["$"], description="Field paths embedded when the sidecar embeds."
    )
    algorithm: Literal["hnsw", "flat"] = Field(
        default="hnsw", description="Vector index: hnsw (approximate, fast) or flat (exact)."
    )
    m: int = Field(default=16, gt=0, description="HNSW: links per node.")
    ef_construction: int = Field(default=200, gt=0, description="HNSW: build-time candidate list.")
    ef_runtime: int = Field(
        default=300,
        gt=0,
        description=(
            "HNSW: query-time candidate list. The default keeps recall@10 above 0.95 on hard "
            "data (3,000 random 384-dim vectors: 0.50 at 10, 0.95 at 200, 0.99 at 300)."
        ),
    )
    embed: EmbedSettings | None = Field(
        default=None, description="Embed in the sidecar; leave unset when the agent embeds."
    )


class ValkeyStoreSettings(ValkeyConnectionSettings):
    url: str = Field(description="Valkey URL, as for the checkpointer.")
    key_prefix: str = Field(default="ap", description="Prefix of every key and of the index.")
    max_exact_search: int = Field(
        default=10_000,
        gt=0,
        description=(
            "Most items a search may examine in the sidecar itself: the exact vector search "
            "without a search module, filtered scans, and the over-fetch of a KNN query whose "
            "filter the index cannot apply. Past it the search is refused, naming this setting."
        ),
    )


class DynamoDBStoreSettings(AwsClientSettings):
    """Store items in a DynamoDB table of their own (``PK``/``SK`` keys, TTL on ``expires``),
    an item per namespace in a registry partition. Endpoints, region and credentials come
    from the standard AWS chain (``AWS_REGION``, ``AWS_ENDPOINT_URL_DYNAMODB``, ...)."""

    table_name: str = Field(
        min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$", description="The table."
    )
    max_exact_search: int = Field(
        default=10_000,
        gt=0,
        description="Most items one search may read and rank in the sidecar (every item under "
        "its namespace prefix: searches are ordered and filtered here, and vectors ranked "
        "exactly without vectorIndex). Past it the search is refused, naming this setting.",
    )
    vector_index: bool = Field(
        default=False,
        description="Rank queries with DynamoDB's own vector index (SearchVectors; created "
        "by --provision or the operator from the store's index block). Off: vector search "
        "runs exactly in the sidecar, bounded by maxExactSearch. DynamoDB Local lacks it.",
    )


STORE_TEMPLATE_VARIABLES = ("actorId", "sessionId", "memoryStrategyId")
"""The namespace-template variables a conversational store understands."""
_TEMPLATE_VARIABLE = re.compile(r"\{([^{}]*)\}")


class AgentCoreMemoryStoreSettings(AgentCoreMemorySettings):
    """Long-term memory in a Bedrock AgentCore Memory. ``records`` mode: each item is one
    memory record, searched with AgentCore's semantic retrieval. ``conversational`` mode:
    puts of messages become conversational events, searches read the records the memory's
    strategies extract from them."""

    default_actor_id: str = Field(
        default="agentpersistence",
        min_length=1,
        max_length=255,
        pattern=ACTOR_ID_PATTERN,
        description="Not used by the store (in conversational mode the actor is the "
        "namespace's first label); accepted so one block can serve checkpointer and store.",
    )
    mode: Literal["records", "conversational"] = Field(
        default="records",
        description="records: put/get/search items as memory records (one record per item). "
        "conversational: put {'messages': [{'role', 'content'}]} values as conversational "
        "events (actor: the namespace's first label; session: the key), and search the "
        "records the memory's strategies extract from them (namespaceTemplate).",
    )
    max_scan: int = Field(
        default=10_000,
        gt=0,
        description="Most memory records one search or namespace listing examines in the "
        "sidecar (listings, searches without a query, filters): past it the request is "
        "refused, naming this setting. Also caps the records a search with a query and a "
        "filter asks AgentCore for (at most 100, RetrieveMemoryRecords' topK limit).",
    )
    namespace_template: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="conversational mode (required there): the namespace template of the "
        "memory strategy whose extracted records searches read, as given to CreateMemory, "
        "e.g. /users/{actorId}/facts. Variables: {actorId} (required), {sessionId} (after "
        "{actorId}), {memoryStrategyId} (before {actorId} only with memoryStrategyId set).",
    )
    memory_strategy_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9-_]*$",
        description="conversational mode: the strategy whose records searches read; fills "
        "{memoryStrategyId} in namespaceTemplate. Unset: records of every strategy under the "
        "template.",
    )

    @model_validator(mode="after")
    def _conversational_template(self) -> AgentCoreMemoryStoreSettings:
        if self.mode == "records":
            return self
        template = self.namespace_template
        if template is None:
            raise ValueError(
                "mode 'conversational' needs namespaceTemplate: the namespace template of "
                "the memory strategy whose records searches read, e.g. /users/{actorId}/facts"
            )
        found = _TEMPLATE_VARIABLE.findall(template)
        unknown = sorted(set(found) - set(STORE_TEMPLATE_VARIABLES))
        if unknown:
            known = ", ".join("{" + name + "}" for name in STORE_TEMPLATE_VARIABLES)
            raise ValueError(f"namespaceTemplate names {unknown}; the store fills only {known}")
        if "actorId" not in found:
            raise ValueError("namespaceTemplate must contain {actorId}")
        before = found[: found.index("actorId")]
        if "sessionId" in before or ("memoryStrategyId" in before and not self.memory_strategy_id):
            raise ValueError(
                "namespaceTemplate must not need {sessionId}, or {memoryStrategyId} without "
                "memoryStrategyId set, before {actorId}: a search of one actor's records "
                "would cover every actor's"
            )
        return self


class StoreConfig(_Model):
    backend: StoreBackendName = Field(description="Where long-term memory items are stored.")
    memory: MemorySettings | None = Field(default=None, description="No settings; for tests.")
    valkey: ValkeyStoreSettings | None = Field(default=None, description="For backend: valkey.")
    dynamodb: DynamoDBStoreSettings | None = Field(
        default=None, description="For backend: dynamodb."
    )
    agentcore_memory: AgentCoreMemoryStoreSettings | None = Field(
        default=None,
        description="For backend: agentcore-memory. In an AgentPersistence, a block without "
        "memoryId (or no block) uses the memory the operator provisions from "
        "spec.agentcoreMemory.",
    )
    index: IndexSettings | None = Field(
        default=None, description="Vector search; leave unset for key-value and filter search only."
    )

    @model_validator(mode="after")
    def _one_backend_block(self) -> StoreConfig:
        _check_blocks(self)
        dynamodb = self.dynamodb
        if dynamodb is not None and dynamodb.vector_index and self.index is None:
            raise ValueError(
                "dynamodb.vectorIndex needs an index block (dims, distance): the vector "
                "index is created from it; add one, or turn vectorIndex off"
            )
        if self.backend == "agentcore-memory" and self.index is not None:
            raise ValueError(
                "backend 'agentcore-memory' ranks searches with AgentCore's own semantic "
                "retrieval: remove the index block (vectors an agent sends are ignored)"
            )
        return self


class ValkeyCacheSettings(ValkeyConnectionSettings):
    url: str = Field(description="Valkey URL, as for the checkpointer.")
    key_prefix: str = Field(default="ap", description="Prefix of every key.")


class CacheConfig(_Model):
    backend: CacheBackendName = Field(description="Where cached node results are stored.")
    memory: MemorySettings | None = Field(default=None, description="No settings; for tests.")
    valkey: ValkeyCacheSettings | None = Field(default=None, description="For backend: valkey.")

    @model_validator(mode="after")
    def _one_backend_block(self) -> CacheConfig:
        _check_blocks(self)
        return self


BLOCKLESS = frozenset({"memory", "agentcore-memory", "bedrock-session"})
"""Backends whose settings block may be left out (agentcore-memory: the operator fills in the
memory it provisions; a sidecar config file must name one, see ``SidecarConfig``;
bedrock-session: every setting has a default)."""


def block_name(backend: str) -> str:
    """The field of a backend's settings block: ``agentcore-memory`` -> ``agentcore_memory``."""
    return backend.replace("-", "_")


def _check_blocks(config: BaseModel) -> None:
    """Exactly the chosen backend's block (when it needs one), no other backend's."""
    backend: str = getattr(config, "backend")  # noqa: B009 -- any block model
    blocks = [name for name in type(config).model_fields if name not in ("backend", "index")]
    given = {name for name in blocks if getattr(config, name) is not None}
    extra = given - {block_name(backend)}
    if extra:
        camel = sorted(to_camel(name) for name in extra)
        raise ValueError(
            f"backend is {backend!r} but settings are given for {camel}; "
            "keep only the block of the chosen backend"
        )
    if backend not in BLOCKLESS and getattr(config, block_name(backend)) is None:
        required = {"valkey": "url", "dynamodb": "tableName", "agentcore-valkey": "url"}.get(
            backend, "its settings"
        )
        raise ValueError(
            f"backend {backend!r} needs a {to_camel(block_name(backend))!r} block with at "
            f"least {required!r}"
        )


class SidecarConfig(_Model):
    checkpointer: CheckpointerConfig | None = Field(
        default=None, description="LangGraph checkpoints (SidecarSaver)."
    )
    store: StoreConfig | None = Field(
        default=None, description="LangGraph long-term memory (SidecarStore)."
    )
    cache: CacheConfig | None = Field(
        default=None, description="LangGraph node cache (SidecarCache)."
    )

    @model_validator(mode="after")
    def _something_configured(self) -> SidecarConfig:
        if self.checkpointer is None and self.store is None and self.cache is None:
            raise ValueError("configure at least one block: checkpointer, store or cache")
        return self

    @model_validator(mode="after")
    def _memories_named(self) -> SidecarConfig:
        for block in self.unnamed_memories():
            raise ValueError(
                f"{block}.backend 'agentcore-memory' needs {block}.agentcoreMemory.memoryId"
            )
        return self

    def unnamed_memories(self) -> list[str]:
        """The blocks on ``agentcore-memory`` that name no memory id."""
        unnamed = []
        for name in ("checkpointer", "store"):
            block = getattr(self, name)
            if block is not None and block.backend == "agentcore-memory":
                settings = block.agentcore_memory
                if settings is None or settings.memory_id is None:
                    unnamed.append(name)
        return unnamed


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """Every problem of a validation error as ``where: what``, joined; for error messages."""
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
        for e in exc.errors()
    )


def parse_config(data: Any, *, source: str = "config") -> SidecarConfig:
    try:
        return SidecarConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid: {describe_errors(exc)}") from None


def load_config(path: str | Path) -> SidecarConfig:
    """Read a YAML or JSON config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {exc}") from None
    return parse_config(data, source=f"config file {path}")
