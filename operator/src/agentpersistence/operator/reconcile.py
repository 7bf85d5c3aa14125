"""From a spec to the resources it describes, and the three things done with them.

:func:`planned` turns a spec into resource objects (:mod:`.resources`), opening what they need
(AWS clients from the shared :class:`.aws.AwsClients`, a Valkey connection for the index).
Then:

- :func:`apply` brings each resource to its desired state in order (storage first, the
  sidecar's ConfigMap last, so a config never names storage that does not exist yet) and
  reports what changed: ``Created``, ``Updated`` or ``Adopted`` (it existed, unknown to the
  status);
- :func:`observe` only reads, for the drift check;
- :func:`release` runs at deletion: the ConfigMap always goes (unless it is not this
  resource's: then it stays); the storage too with
  ``deletionPolicy: Delete``, and stays with ``Retain``. Only storage the status records
  (created or adopted by this resource) is ever deleted: a table the operator refused to
  adopt stays, whatever the policy.

Resources a spec stops describing (another table name after a backend change...) are left as
they are; :func:`dropped` names them so the handlers can say so in an event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf

from agentpersistence.sidecar.backends.valkey.connection import Connection

from . import errors
from .aws import AwsClients
from .bodies import Outputs
from .config import OperatorConfig
from .resources.agentcore_memory import AgentCoreMemory
from .resources.base import Resource
from .resources.dynamodb_table import DynamoDBTable
from .resources.s3_bucket import S3Bucket
from .resources.sidecar_configmap import Owner, SidecarConfigMap
from .resources.valkey_index import ValkeyIndex
from .spec import AgentPersistenceSpec

Action = Literal["Created", "Updated", "Adopted"]
NAMED_OUTPUTS = ("tableName", "bucketName", "indexName", "memoryId")
"""Outputs that name storage (the ARNs follow them)."""


@dataclass(frozen=True)
class Target:
    """The ``AgentPersistence`` being handled, and what its status knew."""

    namespace: str
    name: str
    uid: str
    generation: int
    outputs: Outputs = field(default_factory=lambda: Outputs())

    @property
    def owner(self) -> Owner:
        return Owner(self.namespace, self.name, self.uid)


@dataclass(frozen=True)
class Context:
    """What a pass needs besides the resource: clients, settings, kopf's API access."""

    aws: AwsClients
    config: OperatorConfig
    settings: kopf.OperatorSettings
    logger: kopf.Logger


@dataclass(frozen=True)
class Change:
    resource: str
    action: Action
    details: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        detail = f": {'; '.join(self.details)}" if self.details else ""
        return f"{self.action} {self.resource}{detail}"


@dataclass(frozen=True)
class Report:
    """What :func:`apply` did."""

    resources: tuple[str, ...]
    changes: tuple[Change, ...]
    outputs: Outputs

    @property
    def summary(self) -> str:
        return "in sync: " + ", ".join(self.resources)


@dataclass(frozen=True)
class Drift:
    """What :func:`observe` found: differences, and whether a resource is missing."""

    differences: tuple[str, ...]
    missing: bool


# --------------------------------------------------------------------------- planning


@contextlib.asynccontextmanager
async def planned(
    spec: AgentPersistenceSpec, target: Target, context: Context, provisioned: Outputs
) -> AsyncIterator[list[Resource[Any]]]:
    """The resources ``spec`` describes, in creation order; connections closed on exit.

    ``provisioned`` is what the ConfigMap reads the memory's ARN from: the outputs a pass
    fills in as it goes, or the status's for passes that only read.
    """
    async with contextlib.AsyncExitStack() as stack:
        resources: list[Resource[Any]] = []
        resources += await _dynamodb(spec, context)
        resources += await _valkey(spec, stack)
        resources += await _agentcore(spec, target, context)
        resources.append(
            SidecarConfigMap(
                spec,
                target.owner,
                provisioned=provisioned,
                settings=context.settings,
                logger=context.logger,
            )
        )
        yield resources


async def _dynamodb(spec: AgentPersistenceSpec, context: Context) -> list[Resource[Any]]:
    checkpointer = spec.checkpointer
    if checkpointer is None or checkpointer.dynamodb is None:
        return []
    settings = checkpointer.dynamodb
    region = context.aws.region(settings.region)
    with errors.guarded("aws", f"the AWS clients for {settings.table_name}"):
        found: list[Resource[Any]] = [
            DynamoDBTable(await context.aws.dynamodb(region), settings.table_name)
        ]
        if settings.s3_offload is not None:
            s3 = await context.aws.s3(region)
            partition = context.aws.partition(region)
            offload, ttl = settings.s3_offload, settings.ttl_seconds
            found.append(S3Bucket(s3, offload, ttl, region, partition))
    return found


async def _valkey(
    spec: AgentPersistenceSpec, stack: contextlib.AsyncExitStack
) -> list[Resource[Any]]:
    store = spec.store
    if store is None or store.valkey is None or store.index is None:
        return []
    connection = Connection(store.valkey, ())
    with errors.guarded("valkey", f"Valkey at {connection.where}"):
        await connection.open()
    stack.push_async_callback(connection.close)
    return [ValkeyIndex(connection, store.valkey, store.index)]


async def _agentcore(
    spec: AgentPersistenceSpec, target: Target, context: Context
) -> list[Resource[Any]]:
    memory = spec.agentcore_memory
    if memory is None:
        return []
    with errors.guarded("aws", f"the AWS client for AgentCore Memory {memory.name}"):
        client = await context.aws.agentcore(memory.region)
    resource = AgentCoreMemory(
        client,
        memory,
        owner_uid=target.uid,
        known_id=target.outputs.get("memoryId"),
        wait_seconds=context.config.memory_wait_seconds,
    )
    return [resource]


# --------------------------------------------------------------------------- the passes


async def apply(
    spec: AgentPersistenceSpec, target: Target, context: Context, progress: Outputs | None = None
) -> Report:
    """Create, update or adopt every resource; what changed and the new outputs.

    ``progress`` receives each resource's outputs as soon as it is in place, so a pass that
    fails halfway can still record what it created (and so may delete it later).
    """
    changes: list[Change] = []
    outputs = progress if progress is not None else Outputs()
    async with planned(spec, target, context, outputs) as resources:
        for resource in resources:
            change, produced = await sync(resource, target.outputs)
            outputs.update(produced)
            if change is not None:
                changes.append(change)
        names = tuple(resource.description for resource in resources)
    return Report(names, tuple(changes), outputs)


async def sync(resource: Resource[Any], known: Outputs) -> tuple[Change | None, Outputs]:
    """Bring one resource to its desired state: the change made (if any) and its outputs.

    An existing resource the status did not know is *adopted* (and updated if it differs).
    """
    observed = await resource.read()
    if observed is None:
        observed = await resource.create()
        return Change(resource.description, "Created"), resource.outputs(observed)
    differences = tuple(resource.delta(observed))
    if differences:
        observed = await resource.update(observed)
    produced = resource.outputs(observed)
    if not named(produced).items() <= named(known).items():
        return Change(resource.description, "Adopted", differences), produced
    if differences:
        return Change(resource.description, "Updated", differences), produced
    return None, produced


async def observe(spec: AgentPersistenceSpec, target: Target, context: Context) -> Drift:
    """Read every resource; how they depart from the spec (nothing is changed)."""
    differences: list[str] = []
    missing = False
    async with planned(spec, target, context, target.outputs) as resources:
        for resource in resources:
            observed = await resource.read()
            if observed is None:
                missing = True
                differences.append(f"{resource.description} does not exist")
            else:
                differences += resource.delta(observed)
    return Drift(tuple(differences), missing)


@dataclass(frozen=True)
class Release:
    """What :func:`release` deleted, and what it left in place (with why)."""

    deleted: tuple[str, ...]
    retained: tuple[str, ...]


async def release(spec: AgentPersistenceSpec, target: Target, context: Context) -> Release:
    """Delete the ConfigMap, and the claimed storage if the policy says so."""
    deleted: list[str] = []
    retained: list[str] = []
    known = named(target.outputs)
    async with planned(spec, target, context, target.outputs) as resources:
        for resource in reversed(resources):
            key, value = resource.claim
            claimed = known.get(key) == value
            if isinstance(resource, SidecarConfigMap) and await resource.foreign():
                retained.append(f"{resource.description} (not this resource's)")
            elif isinstance(resource, SidecarConfigMap) or (claimed and _deleting(spec)):
                await resource.delete()
                deleted.append(resource.description)
            elif claimed:
                retained.append(f"{resource.description} (deletionPolicy: Retain)")
            else:
                retained.append(f"{resource.description} (never provisioned or adopted)")
    return Release(tuple(deleted), tuple(retained))


def _deleting(spec: AgentPersistenceSpec) -> bool:
    return spec.deletion_policy == "Delete"


def named(outputs: Mapping[str, object]) -> dict[str, str]:
    """The outputs as plain strings (a TypedDict cannot be indexed by a variable key)."""
    return {key: str(value) for key, value in outputs.items()}


def dropped(previous: Outputs, current: Outputs) -> list[str]:
    """Storage named in ``previous`` outputs that the current spec no longer describes."""
    before, now = named(previous), named(current)
    return [
        f"{key} {before[key]}"
        for key in NAMED_OUTPUTS
        if key in before and before[key] != now.get(key)
    ]
