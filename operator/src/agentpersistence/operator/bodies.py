"""Typed shapes of the raw Kubernetes payloads the operator reads and writes.

The ``status`` of an ``AgentPersistence`` (:class:`Status`, its :class:`Condition` list and
:class:`Outputs`), and the ConfigMap it owns. The CRD's status schema (:mod:`.crd`) describes
the same fields; a unit test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal, TypedDict

ConditionType = Literal["Ready", "Synced", "Terminal"]
ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TypedDict):
    """One entry of ``status.conditions`` (the shape of Kubernetes' ``metav1.Condition``)."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class Outputs(TypedDict, total=False):
    """What the operator provisioned, for people and tools (only what this spec has)."""

    configMapName: str
    tableName: str
    tableArn: str
    storeTableName: str
    storeTableArn: str
    bucketName: str
    bucketArn: str
    indexName: str
    memoryId: str
    memoryArn: str


class Status(TypedDict, total=False):
    observedGeneration: int
    conditions: list[Condition]
    outputs: Outputs


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]


class ConfigMap(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["ConfigMap"]
    metadata: ObjectMeta
    data: dict[str, str]
