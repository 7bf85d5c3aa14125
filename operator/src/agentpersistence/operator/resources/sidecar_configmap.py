"""The ConfigMap ``<name>-sidecar-config``: the sidecar's config file, resolved from the spec.

One key, ``sidecar.yaml``: the spec's ``checkpointer``/``store``/``cache`` blocks with every
default filled in, and the provisioned AgentCore Memory's id where a block uses it
(:func:`..spec.sidecar_config`): the file the injected sidecar reads with ``--config``.
The resource owns it (controller owner reference), so Kubernetes' garbage collector removes
it with the resource; the delete handler removes it too, whatever the deletion policy (it
holds configuration, not data).
"""

from __future__ import annotations

from dataclasses import dataclass

import kopf
import yaml

from .. import errors, kube, naming
from ..bodies import ConfigMap, Outputs, OwnerReference
from ..spec import AgentPersistenceSpec, MemoryPending, sidecar_config


@dataclass(frozen=True)
class Owner:
    """The ``AgentPersistence`` a ConfigMap belongs to."""

    namespace: str
    name: str
    uid: str


def render(spec: AgentPersistenceSpec, owner: Owner, memory_arn: str | None = None) -> ConfigMap:
    """The ConfigMap for this spec, naming the provisioned memory ``memory_arn`` (pure)."""
    reference: OwnerReference = {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    text = yaml.safe_dump(sidecar_config(spec, memory_arn), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": naming.sidecar_configmap(owner.name),
            "namespace": owner.namespace,
            "labels": {
                naming.MANAGED_BY_LABEL: naming.FIELD_MANAGER,
                naming.OWNER_LABEL: owner.name,
            },
            "ownerReferences": [reference],
        },
        "data": {naming.CONFIG_KEY: text},
    }


@dataclass(frozen=True)
class ConfigMapState:
    name: str
    data: dict[str, str]
    owned: bool
    previous_owners: tuple[str, ...] = ()
    """Names of other AgentPersistences (other uids) that own it."""


class SidecarConfigMap:
    """``provisioned`` holds the outputs of the resources synced before this one (the
    memory's ARN among them); the body is rendered from it when needed."""

    def __init__(
        self,
        spec: AgentPersistenceSpec,
        owner: Owner,
        *,
        provisioned: Outputs,
        settings: kopf.OperatorSettings,
        logger: kube.Logger,
    ) -> None:
        self.spec = spec
        self.provisioned = provisioned
        self.owner = owner
        self.name = naming.sidecar_configmap(owner.name)
        self.path = kube.configmap_path(owner.namespace, self.name)
        self.settings = settings
        self.logger = logger
        self.description = f"ConfigMap {self.name}"

    async def read(self) -> ConfigMapState | None:
        found = await kube.read(self.path, settings=self.settings, logger=self.logger)
        return None if found is None else self._state(found)

    @property
    def body(self) -> ConfigMap:
        try:
            return render(self.spec, self.owner, self.provisioned.get("memoryArn"))
        except MemoryPending as exc:
            raise errors.Retryable(str(exc), reason="Creating") from None

    def delta(self, observed: ConfigMapState) -> list[str]:
        problems = []
        try:
            body = self.body
        except errors.Retryable as exc:
            return [str(exc)]
        if observed.data != body["data"]:
            problems.append(f"{self.description} holds another sidecar config")
        if not observed.owned:
            problems.append(f"{self.description} is not owned by {self.owner.name}")
        return problems

    async def create(self) -> ConfigMapState:
        return await self._apply()

    async def update(self, observed: ConfigMapState) -> ConfigMapState:
        if not observed.owned:
            raise self._not_ours(observed)
        return await self._apply()

    async def delete(self) -> None:
        await kube.delete(self.path, settings=self.settings, logger=self.logger)

    async def foreign(self) -> bool:
        """Whether a ConfigMap of this name exists that this resource does not own."""
        observed = await self.read()
        return observed is not None and not observed.owned

    async def check_usable(self) -> None:
        """Raise if a ConfigMap of this name exists that this resource may not write."""
        observed = await self.read()
        if observed is not None and not observed.owned:
            raise self._not_ours(observed)

    def _not_ours(self, observed: ConfigMapState) -> errors.ReconcileError:
        if self.owner.name in observed.previous_owners:
            return errors.Retryable(
                f"{self.description} still belongs to a deleted {naming.KIND} named "
                f"{self.owner.name}; waiting for Kubernetes to remove it",
                reason="ConfigMapNotOwned",
            )
        return errors.Terminal(
            f"{self.description} exists and is not this resource's (it was not created by "
            "the operator for it); the operator never takes it over: delete or rename it, "
            "then request a reconcile",
            reason="ConfigMapNotOwned",
        )

    def outputs(self, observed: ConfigMapState) -> Outputs:
        return {"configMapName": observed.name}

    async def _apply(self) -> ConfigMapState:
        stored = await kube.apply(self.path, self.body, settings=self.settings, logger=self.logger)
        return self._state(stored)

    def _state(self, found: dict[str, object]) -> ConfigMapState:
        metadata = found.get("metadata")
        references = metadata.get("ownerReferences", []) if isinstance(metadata, dict) else []
        data = found.get("data")
        return ConfigMapState(
            name=self.name,
            data=dict(data) if isinstance(data, dict) else {},
            owned=any(r.get("uid") == self.owner.uid for r in references),
            previous_owners=tuple(
                str(r.get("name"))
                for r in references
                if r.get("kind") == naming.KIND and r.get("uid") != self.owner.uid
            ),
        )
