"""Typed shapes of the raw payloads the webhook reads and writes.

Only the fields the injection reads or writes are declared: a Pod carries many more, and
they pass through untouched (the patch names paths, it never rewrites the pod). Keys are
spelled as in the Kubernetes API (camelCase). ``total=False`` everywhere a field is optional
in the API, because admission requests carry whatever the client sent.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from agentpersistence.operator.bodies import Status

JsonValue = Any
"""A JSON value inside a patch operation: whatever the target path holds."""


class EnvVar(TypedDict, total=False):
    name: str
    value: str
    valueFrom: dict[str, JsonValue]


class VolumeMount(TypedDict, total=False):
    name: str
    mountPath: str
    readOnly: bool


class ContainerPort(TypedDict, total=False):
    name: str
    containerPort: int
    protocol: Literal["TCP", "UDP", "SCTP"]


class ExecAction(TypedDict):
    command: list[str]


class HTTPGetAction(TypedDict, total=False):
    path: str
    port: int | str


class Probe(TypedDict, total=False):
    exec: ExecAction
    httpGet: HTTPGetAction
    periodSeconds: int
    timeoutSeconds: int
    failureThreshold: int


class ResourceRequirements(TypedDict, total=False):
    requests: dict[str, str | int]
    limits: dict[str, str | int]


class Capabilities(TypedDict, total=False):
    drop: list[str]


class SeccompProfile(TypedDict):
    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]


class SecurityContext(TypedDict, total=False):
    runAsNonRoot: bool
    runAsUser: int
    runAsGroup: int
    readOnlyRootFilesystem: bool
    allowPrivilegeEscalation: bool
    capabilities: Capabilities
    seccompProfile: SeccompProfile


class PodSecurityContext(TypedDict, total=False):
    runAsUser: int
    runAsGroup: int
    fsGroup: int
    supplementalGroups: list[int]


class Container(TypedDict, total=False):
    name: str
    image: str
    imagePullPolicy: str
    command: list[str]
    args: list[str]
    env: list[EnvVar]
    ports: list[ContainerPort]
    volumeMounts: list[VolumeMount]
    resources: ResourceRequirements
    securityContext: SecurityContext
    startupProbe: Probe
    livenessProbe: Probe
    readinessProbe: Probe
    restartPolicy: Literal["Always"]
    terminationMessagePolicy: Literal["File", "FallbackToLogsOnError"]


class EmptyDirVolumeSource(TypedDict, total=False):
    medium: Literal["", "Memory"]
    sizeLimit: str


class KeyToPath(TypedDict):
    key: str
    path: str


class ConfigMapVolumeSource(TypedDict, total=False):
    name: str
    items: list[KeyToPath]
    defaultMode: int


class Volume(TypedDict, total=False):
    name: str
    emptyDir: EmptyDirVolumeSource
    configMap: ConfigMapVolumeSource
    projected: dict[str, JsonValue]
    secret: dict[str, JsonValue]


class PodSpec(TypedDict, total=False):
    containers: list[Container]
    initContainers: list[Container]
    volumes: list[Volume]
    serviceAccountName: str
    serviceAccount: str  # the deprecated alias; the API server keeps it equal to the name
    securityContext: PodSecurityContext


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]


class Pod(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PodSpec


PatchOp = Literal["add", "remove", "replace", "test"]


class PatchOperation(TypedDict, total=False):
    """One RFC 6902 operation; ``value`` is absent for ``remove``."""

    op: PatchOp
    path: str
    value: JsonValue


class AgentPersistenceView(TypedDict):
    """What the webhook knows of an ``AgentPersistence``: its name, spec and status.

    ``spec`` is the raw ``spec`` (camelCase, as stored: see :mod:`..spec` for its model);
    the webhook reads only ``sidecar`` and ``serviceAccountName`` from it.
    """

    name: str
    spec: dict[str, JsonValue]
    status: Status
