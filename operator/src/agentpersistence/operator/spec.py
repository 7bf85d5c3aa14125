"""The ``spec`` of an ``AgentPersistence``: the sidecar's config model plus the operator's fields.

:class:`AgentPersistenceSpec` *is* the sidecar's :class:`SidecarConfig` (same blocks, same
validators, same camelCase aliases) with the fields only the operator reads added beside
them: ``deletionPolicy``, ``adoptExisting``, ``sidecar`` (the injected container),
``serviceAccountName`` (how the sidecar gets AWS credentials), ``agentcoreMemory`` and
``valkeyCredentials``. The CRD's schema is generated from
this model (:mod:`.crd`) and the ConfigMap the sidecar reads is :func:`sidecar_config` of it,
so the resource, the operator and the sidecar cannot disagree on a field.

``agentcoreMemory`` makes the operator provision a Bedrock AgentCore Memory. A checkpointer or
store block on
``backend: agentcore-memory`` that names no ``memoryId`` uses that memory: the operator writes
its id (and region) into the sidecar's ConfigMap once the memory is ``ACTIVE``.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, model_validator

from agentpersistence.sidecar.settings import (
    SidecarConfig,
    ValkeyConnectionSettings,
    describe_errors,
)

from . import naming

DeletionPolicy = Literal["Retain", "Delete"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
Quantity = int | str

SIDECAR_FIELDS = ("checkpointer", "store", "cache")
"""The blocks of the spec that are the sidecar's config, verbatim."""


class InvalidSpec(ValueError):
    """The spec does not parse; the message lists every problem by path."""


class _Block(BaseModel):
    model_config = SidecarConfig.model_config


class ResourceRequirements(_Block):
    """CPU and memory of the sidecar container, as in a Pod (``100m``, ``64Mi``)."""

    requests: dict[str, Quantity] | None = Field(
        default=None, description="Minimum resources, e.g. {cpu: 50m, memory: 64Mi}."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, description="Maximum resources, e.g. {memory: 256Mi}."
    )


class AllowedPeers(_Block):
    """Who may use the sidecar's socket, by the kernel's record of the connecting process
    (SO_PEERCRED). Unset: every process of the pod the socket's mode admits (its group)."""

    uids: list[int] = Field(
        default_factory=list, description="User ids allowed to connect (e.g. the agent's)."
    )
    gids: list[int] = Field(default_factory=list, description="Group ids allowed to connect.")


class AwsIdentity(_Block):
    """An AWS role for the sidecar alone (IRSA-style web identity): a service-account token
    for ``audience`` is projected into the sidecar container only, with AWS_ROLE_ARN and
    AWS_WEB_IDENTITY_TOKEN_FILE in its environment only; the agent containers get neither.
    The role's trust policy names the cluster's OIDC provider, the pod's ServiceAccount
    (system:serviceaccount:NAMESPACE:NAME) and this audience. Do not also annotate that
    ServiceAccount for IRSA, or EKS's webhook gives the role to every container."""

    role_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$",
        max_length=2048,
        description="The role the sidecar assumes (arn:aws:iam::ACCOUNT:role/NAME).",
    )
    audience: str = Field(
        default="sts.amazonaws.com",
        min_length=1,
        description="Audience of the projected token; the role's trust policy must require it.",
    )
    expiration_seconds: int = Field(
        default=86400,
        ge=600,
        le=86400 * 7,
        description="Lifetime of the projected token (the kubelet renews it before it ends).",
    )


class SidecarContainer(_Block):
    """The sidecar container the webhook injects into agent pods that use this resource."""

    image: str | None = Field(
        default=None,
        description="Sidecar image; unset uses the image the operator was installed with.",
    )
    image_pull_policy: PullPolicy | None = Field(
        default=None, description="Always, IfNotPresent or Never; unset: Kubernetes' default."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Requests and limits; unset uses the operator's defaults."
    )
    aws_identity: AwsIdentity | None = Field(
        default=None,
        description="An AWS role for the sidecar alone, so the agent containers hold no AWS "
        "credentials. Unset: the sidecar uses the pod's credentials (serviceAccountName).",
    )
    allowed_peers: AllowedPeers | None = Field(
        default=None,
        description="Admit only these uids and gids to the socket (for pods with containers "
        "the agent should not share its state with); others get peer_not_allowed.",
    )


class ValkeyCredentials(_Block):
    """A Secret in the resource's namespace holding the Valkey password (and ACL user).

    The webhook mounts it into the sidecar container only; the sidecar's config names the
    mounted files (``passwordFile``, ``usernameFile``) in every Valkey block, so the password
    is in no ConfigMap, status, event or log. A rotated Secret is used from the sidecar's
    next connection on. The operator reads it (``get`` on that Secret) only to create the
    store's search index.
    """

    secret_name: str = Field(
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the Secret, in the resource's namespace.",
    )
    password_key: str = Field(
        default="password",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the password in the Secret.",
    )
    username_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the ACL user name in the Secret; unset: the default user.",
    )


class AgentCoreMemorySpec(_Block):
    """A Bedrock AgentCore Memory the operator provisions (its id appears in the status).

    Blocks on ``backend: agentcore-memory`` without a ``memoryId`` use it; agents may also
    call AgentCore directly with the id from ``status.outputs.memoryId``.
    """

    name: str = Field(
        pattern=r"^[a-zA-Z][a-zA-Z0-9_]{0,47}$",
        description="Memory name, unique per account and region: a letter, then up to 47 "
        "letters, digits or underscores. Immutable.",
    )
    event_expiry_days: int = Field(
        default=90, ge=3, le=365, description="Days AgentCore keeps short-term memory events."
    )
    description: str | None = Field(
        default=None, max_length=4096, description="Free text shown in the AgentCore console."
    )
    region: str | None = Field(
        default=None, description="AWS region; default: the operator's AWS_REGION."
    )


class AgentPersistenceSpec(SidecarConfig):
    """Durable state for LangGraph agents: what the sidecar stores where, and what the operator
    provisions for it (DynamoDB table, S3 bucket, Valkey search index, AgentCore Memory)."""

    deletion_policy: DeletionPolicy = Field(
        default="Retain",
        description="What happens to the tables, buckets, indexes and memories this resource "
        "created when it is deleted: Retain keeps them (and their data), Delete removes "
        "them. Adopted storage is always kept; so is storage another resource owns. The "
        "sidecar's ConfigMap is always removed.",
    )
    adopt_existing: bool = Field(
        default=False,
        description="Use tables, buckets, indexes and memories that already exist and that "
        "no other AgentPersistence claims. Adopted storage is tagged as used by this resource "
        "and is never deleted by it, whatever deletionPolicy says. Unset: existing storage "
        "is refused (reason AdoptionRefused) and nothing is changed.",
    )
    sidecar: SidecarContainer | None = Field(
        default=None, description="The injected sidecar container (image, pull policy, resources)."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The ServiceAccount agent pods using this resource run as; the sidecar "
        "gets its AWS credentials from it. IRSA: annotate it with "
        "eks.amazonaws.com/role-arn: <role ARN>. EKS Pod Identity: associate the role with "
        "it (aws eks create-pod-identity-association). Credentials are per pod, so the role "
        "needs DynamoDB, S3 (and Bedrock) access to the resources named here. Unset: the "
        "pod's own ServiceAccount.",
    )
    agentcore_memory: AgentCoreMemorySpec | None = Field(
        default=None,
        description="Provision a Bedrock AgentCore Memory. A checkpointer or store on "
        "backend agentcore-memory without a memoryId uses it.",
    )
    valkey_credentials: ValkeyCredentials | None = Field(
        default=None,
        description="A Secret with the password (and user) of every Valkey block, mounted "
        "into the sidecar only: keep passwords out of the urls, this resource and its "
        "ConfigMap.",
    )

    @model_validator(mode="after")
    def _credentials_in_one_place(self) -> AgentPersistenceSpec:
        if self.valkey_credentials is None:
            return self
        blocks = valkey_blocks(self)
        if not blocks:
            raise ValueError(
                "valkeyCredentials is set but no checkpointer, store or cache uses backend "
                "valkey: remove it"
            )
        for path, block in blocks.items():
            if urlsplit(block.url).password is not None:
                raise ValueError(
                    f"{path}.url carries a password and valkeyCredentials is set: remove the "
                    "password from the url (it would be stored in the resource)"
                )
            for field, value in (
                ("passwordFile", block.password_file),
                ("usernameFile", block.username_file),
                ("iamAuth", block.iam_auth),
            ):
                if value is not None:
                    raise ValueError(
                        f"{path}.{field} and valkeyCredentials are both set: keep "
                        "valkeyCredentials (the operator fills in the files)"
                    )
        return self

    @model_validator(mode="after")
    def _memories_named(self) -> AgentPersistenceSpec:
        """Replaces the sidecar's rule: the operator names the memory it provisions."""
        if self.agentcore_memory is None:
            for block in self.unnamed_memories():
                raise ValueError(
                    f"{block}.backend 'agentcore-memory' needs a memory: set "
                    f"{block}.agentcoreMemory.memoryId, or add spec.agentcoreMemory for the "
                    "operator to provision one"
                )
        return self


def valkey_blocks(config: SidecarConfig) -> dict[str, ValkeyConnectionSettings]:
    """The spec's Valkey blocks by path (``checkpointer.valkey``, ...)."""
    found: dict[str, ValkeyConnectionSettings] = {}
    for name in SIDECAR_FIELDS:
        block = getattr(config, name)
        settings = getattr(block, "valkey", None) if block is not None else None
        if isinstance(settings, ValkeyConnectionSettings):
            found[f"{name}.valkey"] = settings
    return found


def parse_spec(data: Any) -> AgentPersistenceSpec:
    """The spec of a resource body, or :class:`InvalidSpec` naming each problem."""
    try:
        return AgentPersistenceSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(describe_errors(exc, "spec.")) from None


class MemoryPending(Exception):
    """The spec's blocks need the provisioned memory, whose id is not known yet."""


def sidecar_config(spec: AgentPersistenceSpec, memory_arn: str | None = None) -> dict[str, Any]:
    """The sidecar's config file for this spec: its blocks, camelCase, unset fields left out.

    Blocks on ``agentcore-memory`` without a ``memoryId`` get the provisioned memory's id and
    (unless they set one) its region, both read from ``memory_arn``
    (``arn:<partition>:bedrock-agentcore:<region>:<account>:memory/<id>``). With
    ``valkeyCredentials``, every Valkey block gets ``passwordFile`` (and ``usernameFile``)
    naming the Secret's files where the webhook mounts them.
    """
    blocks = spec.model_dump(include=set(SIDECAR_FIELDS))
    for name in spec.unnamed_memories():
        if memory_arn is None:
            raise MemoryPending(f"{name} waits for the AgentCore Memory to be provisioned")
        region, memory_id = memory_arn.split(":")[3], memory_arn.rsplit("/", 1)[-1]
        settings = blocks[name].get("agentcore_memory") or {}
        settings["memory_id"] = memory_id
        settings["region"] = settings.get("region") or region
        blocks[name]["agentcore_memory"] = settings
    if spec.valkey_credentials is not None:
        for path in valkey_blocks(spec):
            settings = blocks[path.partition(".")[0]]["valkey"]
            settings["password_file"] = naming.VALKEY_PASSWORD_FILE
            if spec.valkey_credentials.username_key is not None:
                settings["username_file"] = naming.VALKEY_USERNAME_FILE
    config = SidecarConfig.model_validate(blocks)
    dumped: dict[str, Any] = config.model_dump(by_alias=True, exclude_none=True, mode="json")
    return dumped
