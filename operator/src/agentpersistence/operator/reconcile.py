"""From a spec to the resources it describes, and the three things done with them.

:func:`planned` turns a spec into a :class:`Plan`: the storage (:mod:`.resources`: tables,
buckets, indexes, memories, with what they need opened: AWS clients from the shared
:class:`.aws.AwsClients`, a Valkey connection for the index) and the sidecar's ConfigMap.
Then:

- :func:`apply` first reads every piece of storage and its claim and decides, by
  :mod:`.ownership`'s rules, whether this resource may use it; a refusal (storage another
  resource owns, or existing storage without ``adoptExisting``) stops the pass before
  anything changed. It records its intent to create what is missing on the resource, then
  brings each to its desired state in order (storage first, the ConfigMap last, so a config
  never names storage that does not exist yet), removes the intent once every claim is
  written, and reports what changed: ``Created``, ``Updated`` or ``Adopted``. A pass killed
  anywhere in between is resumed by the next one: storage it created before writing the
  claim is claimed then, as created;
- :func:`observe` only reads, for the drift check;
- :func:`release` runs at deletion: the ConfigMap goes (unless it is not this resource's);
  storage this resource created goes too with ``deletionPolicy: Delete`` (including storage
  a killed pass created and had not claimed yet); any other storage it claimed stays, its
  claim removed; storage it never claimed is not touched.

Resources a spec stops describing (another table name after a backend change...) are left as
they are; :func:`dropped` names them so the handlers can say so in an event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf

from agentpersistence.sidecar.backends.dynamodb import store_schema
from agentpersistence.sidecar.backends.valkey import credentials
from agentpersistence.sidecar.backends.valkey.connection import Connection

from . import errors, kube, naming, ownership
from .aws import AwsClients
from .bodies import Outputs
from .config import OperatorConfig
from .ownership import Claim
from .resources.agentcore_memory import AgentCoreMemory
from .resources.base import Storage
from .resources.dynamodb_table import DynamoDBTable
from .resources.s3_bucket import S3Bucket
from .resources.sidecar_configmap import Owner, SidecarConfigMap
from .resources.valkey_index import ValkeyIndex
from .spec import AgentPersistenceSpec

Action = Literal["Created", "Updated", "Adopted"]
SECRET_RETRY_DELAY_S = 30.0
"""How soon a pass retries after the operator was refused a Secret (RBAC granted later)."""
NAMED_OUTPUTS = ("tableName", "storeTableName", "bucketName", "indexName", "memoryId")
"""Outputs that name storage (the ARNs follow them)."""


@dataclass(frozen=True)
class Target:
    """The ``AgentPersistence`` being handled, and what its status knew."""

    namespace: str
    name: str
    uid: str
    generation: int
    outputs: Outputs = field(default_factory=lambda: Outputs())
    intended: frozenset[str] = frozenset()
    """Storage a pass was creating when it stopped (:data:`.ownership.INTENT_ANNOTATION`)."""

    @property
    def owner(self) -> Owner:
        return Owner(self.namespace, self.name, self.uid)

    def claim(self, kind: ownership.Kind) -> Claim:
        return Claim(self.uid, naming.reference(self.namespace, self.name), kind)


@dataclass(frozen=True)
class Context:
    """What a pass needs besides the resource: clients, settings, kopf's API access."""

    aws: AwsClients
    config: OperatorConfig
    settings: kopf.OperatorSettings
    logger: kopf.Logger


PASSES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
"""The operator's turns, one semaphore per event loop (the process has one)."""


@contextlib.asynccontextmanager
async def turn(context: Context) -> AsyncIterator[None]:
    """Wait for one of the operator's ``reconcile_concurrency`` turns: a burst of resources
    is worked through a few at a time, and the webhook on the same loop stays responsive."""
    loop = asyncio.get_running_loop()
    passes = PASSES.get(loop)
    if passes is None:
        passes = PASSES[loop] = asyncio.Semaphore(context.config.reconcile_concurrency)
    async with passes:
        yield


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


@dataclass(frozen=True)
class Plan:
    storage: list[Storage[Any]]
    """In creation order."""
    configmap: SidecarConfigMap

    @property
    def descriptions(self) -> tuple[str, ...]:
        return (*(s.description for s in self.storage), self.configmap.description)


@contextlib.asynccontextmanager
async def planned(
    spec: AgentPersistenceSpec, target: Target, context: Context, provisioned: Outputs
) -> AsyncIterator[Plan]:
    """The resources ``spec`` describes; connections closed on exit.

    ``provisioned`` is what the ConfigMap reads the memory's ARN from: the outputs a pass
    fills in as it goes, or the status's for passes that only read.
    """
    async with contextlib.AsyncExitStack() as stack:
        storage: list[Storage[Any]] = []
        storage += await _dynamodb(spec, context)
        storage += await _valkey(spec, target, context, stack)
        storage += await _agentcore(spec, target, context)
        configmap = SidecarConfigMap(
            spec,
            target.owner,
            provisioned=provisioned,
            settings=context.settings,
            logger=context.logger,
        )
        yield Plan(storage, configmap)


async def _dynamodb(spec: AgentPersistenceSpec, context: Context) -> list[Storage[Any]]:
    found: list[Storage[Any]] = []
    checkpointer = spec.checkpointer
    if checkpointer is not None and checkpointer.dynamodb is not None:
        settings = checkpointer.dynamodb
        region = context.aws.region(settings.region)
        with errors.guarded("aws", f"the AWS clients for {settings.table_name}"):
            found.append(DynamoDBTable(await context.aws.dynamodb(region), settings.table_name))
            if settings.s3_offload is not None:
                s3 = await context.aws.s3(region)
                partition = context.aws.partition(region)
                offload, ttl = settings.s3_offload, settings.ttl_seconds
                found.append(S3Bucket(s3, offload, ttl, region, partition))
    store = spec.store
    if store is not None and store.dynamodb is not None:
        table = store.dynamodb
        index = store.index if table.vector_index else None  # the model requires index then
        vector = (index.dims, index.distance) if index is not None else None
        region = context.aws.region(table.region)
        with errors.guarded("aws", f"the AWS client for {table.table_name}"):
            client = await context.aws.dynamodb(region)
        definition = store_schema.table_definition(table.table_name, vector)
        found.append(
            DynamoDBTable(client, table.table_name, definition=definition, output="storeTable")
        )
    return found


async def _valkey(
    spec: AgentPersistenceSpec, target: Target, context: Context, stack: contextlib.AsyncExitStack
) -> list[Storage[Any]]:
    store = spec.store
    if store is None or store.valkey is None or store.index is None:
        return []
    login = await _valkey_login(spec, target, context)
    connection = Connection(store.valkey, (), credentials=login)
    with errors.guarded("valkey", f"Valkey at {connection.where}"):
        await connection.open()
    stack.push_async_callback(connection.close)
    return [ValkeyIndex(connection, store.valkey, store.index)]


async def _valkey_login(
    spec: AgentPersistenceSpec, target: Target, context: Context
) -> credentials.Static | None:
    """The login in ``spec.valkeyCredentials``' Secret (None without one: the block's own
    settings decide). Held in memory for this pass only."""
    wanted = spec.valkey_credentials
    if wanted is None:
        return None
    where = f"Secret {naming.reference(target.namespace, wanted.secret_name)}"
    path = naming.secret_path(target.namespace, wanted.secret_name)
    try:
        secret = await kube.read(path, settings=context.settings, logger=context.logger)
    except errors.ReconcileError as error:
        if error.reason != "Forbidden":
            raise
        raise errors.Retryable(  # granting it needs no change of the resource: keep trying
            f"the operator may not read {where} (spec.valkeyCredentials): add namespace "
            f"{target.namespace} to the chart's rbac.secretNamespaces, or bind its ClusterRole "
            "<release>-agentpersistence-secrets there",
            reason="SecretForbidden",
            delay=SECRET_RETRY_DELAY_S,
        ) from None
    if secret is None:
        raise errors.Retryable(
            f"{where} (spec.valkeyCredentials) does not exist: create it", reason="SecretMissing"
        )
    data = secret.get("data") or {}

    def value(key: str) -> str:
        if key not in data:
            raise errors.Retryable(
                f"{where} has no key {key!r} (spec.valkeyCredentials): add it",
                reason="SecretMissing",
            )
        return base64.b64decode(data[key]).decode().rstrip("\n")

    username = value(wanted.username_key) if wanted.username_key else None
    return credentials.Static(username, value(wanted.password_key))


async def _agentcore(
    spec: AgentPersistenceSpec, target: Target, context: Context
) -> list[Storage[Any]]:
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


@dataclass(frozen=True)
class Found:
    """One piece of storage as the first phase of :func:`apply` read it."""

    storage: Storage[Any]
    observed: Any | None
    """None: it does not exist."""
    claim: Claim | None
    verdict: ownership.Verdict | None
    """None when it does not exist."""


async def apply(
    spec: AgentPersistenceSpec, target: Target, context: Context, progress: Outputs | None = None
) -> Report:
    """Create, update or adopt every resource; what changed and the new outputs.

    ``progress`` receives each resource's outputs as soon as it is in place, so a pass that
    fails halfway can still record what it created.
    """
    changes: list[Change] = []
    outputs = progress if progress is not None else Outputs()
    async with turn(context), planned(spec, target, context, outputs) as plan:
        await plan.configmap.check_usable()
        found = [await judged(s, spec, target, context) for s in plan.storage]
        creating = frozenset(f.storage.description for f in found if f.observed is None)
        if not creating <= target.intended:
            await _record_intent(target, context, target.intended | creating)
        for each in found:
            change, produced = await sync(each, target)
            outputs.update(produced)
            if change is not None:
                changes.append(change)
        if creating or target.intended:
            await _record_intent(target, context, frozenset())  # every claim is written
        change, produced = await sync_configmap(plan.configmap)
        outputs.update(produced)
        if change is not None:
            changes.append(change)
        names = plan.descriptions
    return Report(names, tuple(changes), outputs)


async def judged(
    storage: Storage[Any], spec: AgentPersistenceSpec, target: Target, context: Context
) -> Found:
    """Read ``storage`` and its claim; whether this resource may use it (raises if not)."""
    observed = await storage.read()
    if observed is None:
        return Found(storage, None, None, None)
    claim = await storage.read_claim(observed)
    key, value = storage.recorded_as
    verdict = ownership.judge(
        storage.description,
        claim,
        uid=target.uid,
        owner_alive=claim is not None and claim.uid != target.uid and await _exists(claim, context),
        adopt_existing=spec.adopt_existing,
        recorded=named(target.outputs).get(key) == value,
        intended=storage.description in target.intended,
    )
    return Found(storage, observed, claim, verdict)


async def _record_intent(target: Target, context: Context, creating: frozenset[str]) -> None:
    """Write (or, with nothing, remove) the resource's intent to create ``creating``."""
    value = ownership.intent_text(creating) if creating else None
    body = {"metadata": {"annotations": {ownership.INTENT_ANNOTATION: value}}}
    path = naming.resource_path(target.namespace, target.name)
    await kube.merge_patch(path, body, settings=context.settings, logger=context.logger)


async def _exists(claim: Claim, context: Context) -> bool:
    """Whether the resource a claim names still exists (with the claim's uid)."""
    path = naming.resource_path(claim.namespace, claim.name)
    body = await kube.read(path, settings=context.settings, logger=context.logger)
    return body is not None and body.get("metadata", {}).get("uid") == claim.uid


async def sync(found: Found, target: Target) -> tuple[Change | None, Outputs]:
    """Bring one piece of storage to its desired state: the change made (if any) and its
    outputs. Existing storage this resource had no claim on is *adopted* (claimed as such,
    then updated if it differs)."""
    storage = found.storage
    if found.observed is None:
        observed = await storage.create(target.claim("created"))
        return Change(storage.description, "Created"), storage.outputs(observed)
    observed = found.observed
    if found.verdict == "adopt":
        await storage.write_claim(observed, target.claim("adopted"), found.claim)
    if found.verdict == "resume":
        await storage.write_claim(observed, target.claim("created"), None)
    differences = tuple(storage.delta(observed))
    if differences:
        observed = await storage.update(observed)
    produced = storage.outputs(observed)
    if found.verdict == "adopt":
        return Change(storage.description, "Adopted", differences), produced
    if found.verdict == "resume":
        return Change(storage.description, "Created", differences), produced
    if differences:
        return Change(storage.description, "Updated", differences), produced
    return None, produced


async def sync_configmap(configmap: SidecarConfigMap) -> tuple[Change | None, Outputs]:
    observed = await configmap.read()
    if observed is None:
        observed = await configmap.create()
        return Change(configmap.description, "Created"), configmap.outputs(observed)
    differences = tuple(configmap.delta(observed))
    if not differences:
        return None, configmap.outputs(observed)
    observed = await configmap.update(observed)
    return Change(configmap.description, "Updated", differences), configmap.outputs(observed)


async def observe(spec: AgentPersistenceSpec, target: Target, context: Context) -> Drift:
    """Read every resource; how they depart from the spec (nothing is changed)."""
    differences: list[str] = []
    missing = False
    async with turn(context), planned(spec, target, context, target.outputs) as plan:
        resources: list[Storage[Any] | SidecarConfigMap] = [*plan.storage, plan.configmap]
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
    """Delete the ConfigMap, and the storage this resource created if the policy says so;
    let go of the rest of the storage it claimed."""
    deleted: list[str] = []
    retained: list[str] = []
    async with turn(context), planned(spec, target, context, target.outputs) as plan:
        if await plan.configmap.foreign():
            retained.append(f"{plan.configmap.description} (not this resource's)")
        else:
            await plan.configmap.delete()
            deleted.append(plan.configmap.description)
        for storage in reversed(plan.storage):
            observed = await storage.read()
            claim = None if observed is None else await storage.read_claim(observed)
            if claim is None and storage.description in target.intended:
                claim = target.claim("created")  # created by a pass stopped before its claim
            if observed is None:
                retained.append(f"{storage.description} (does not exist)")
            elif claim is None or claim.uid != target.uid:
                retained.append(f"{storage.description} (never provisioned or adopted)")
            elif ownership.deletable(claim, target.uid) and _deleting(spec):
                await storage.delete()
                deleted.append(storage.description)
            else:
                await storage.clear_claim(observed, claim)
                why = "adopted" if claim.kind == "adopted" else "deletionPolicy: Retain"
                retained.append(f"{storage.description} ({why})")
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
