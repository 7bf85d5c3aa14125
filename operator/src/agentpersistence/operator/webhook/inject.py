"""The injection, as a pure function: pod + ``AgentPersistence`` + settings → JSON patch.

:func:`inject` returns an :class:`Injection` (RFC 6902 operations, possibly none, and
warnings for the user) or a :class:`Refusal` (the pod is rejected with its message). No I/O:
the handler (:mod:`.handlers`) looks the ``AgentPersistence`` up and answers the API server.

Who gets the sidecar: a pod that opts in by one of two routes (:class:`Route`). Each route is
its own entry of the chart's webhook configuration, served at its own path by its own
handler, so the API server sends no other pod and no pod takes both routes:

- the label route: the pod's label ``agentpersistence.io/inject: "true"``, in any namespace
  the operator serves;
- the namespace route: in a namespace labelled ``agentpersistence.io/inject: enabled``, a pod
  without that label that carries the annotation ``agentpersistence.io/name`` (the way Dapr
  and Istio sidecars are asked for). The API server selects namespaces by label but cannot
  select pods by annotation, so its entry sends every pod of such a namespace that has no
  inject label, and :func:`opted_in` decides; an unannotated pod there is admitted unchanged.

``agentpersistence.io/inject: "false"`` opts a pod out of both routes, in any namespace.
Either way the annotation ``agentpersistence.io/name`` names the pod's ``AgentPersistence``
(in the pod's namespace), and the pod gets:

- an in-memory ``emptyDir`` (``medium: Memory``) for the socket, mounted read-only at
  ``settings.socket_dir`` in every app container (``spec.containers``) and read-write in the
  sidecar; connecting to a unix socket needs no write access to its directory;
- ``AGENTPERSISTENCE_SOCKET`` in every app container's ``env`` (a container that already sets
  it keeps its value, with a warning);
- the sidecar's config, the ConfigMap ``<name>-sidecar-config`` (key ``sidecar.yaml``, written
  by the operator's reconcile), mounted read-only at ``/etc/agentpersistence``;
- the sidecar ``agentpersistence-sidecar``: ``agentpersistence-sidecar --socket PATH --config
  FILE [--probe-port P]``, non-root (``settings.run_as_user``), read-only root filesystem, no
  privilege escalation, every capability dropped, ``RuntimeDefault`` seccomp; a startup probe
  ``test -S <socket>`` (the socket appears only once the sidecar is ready to serve), and with
  a probe port, liveness on ``/healthz`` and readiness on ``/readyz``;
- with ``spec.valkeyCredentials``, its Secret (the password and user keys only) mounted
  read-only at ``naming.VALKEY_CREDENTIALS_DIR`` in the sidecar alone; with
  ``spec.sidecar.awsIdentity``, a projected token there too (and the role in its env);
- the sidecar's group in the pod's ``securityContext.supplementalGroups``: the socket is mode
  0660, so app containers need that group to connect, whatever user they run as;
- ``serviceAccountName`` from the resource's ``spec.serviceAccountName`` (how the sidecar gets
  AWS credentials) when the pod has none (unset or ``default``, which the ServiceAccount
  admission plugin fills in); a pod naming another ServiceAccount is **refused**: its sidecar
  would run without the credentials the resource was provisioned for;
- the annotation ``agentpersistence.io/status: injected``.

Native sidecar (``settings.native_sidecars``, Kubernetes ≥ 1.29): the sidecar is appended
to ``initContainers`` with ``restartPolicy: Always``. The kubelet starts it after the pod's
other init containers (a mesh proxy injected as a native sidecar is up first) and starts the
app containers only once its startup probe passed, so the socket exists when the agent
starts; it is stopped after them. Fallback (a regular container, appended last so it is not
the pod's default container): the app may start first, so the agent relies on the client's
connection retry while the socket appears; a Job's pod does not complete while the sidecar
runs. Choose native wherever the cluster supports it.

Idempotent: a pod that already has the status annotation or a container named
``agentpersistence-sidecar`` gets no patch (the webhook is reinvoked, ``IfNeeded``, when a
later webhook changes the pod). A pod that did not opt in by the route it came through gets no
patch either.

Refused, with a message saying what to do: a pod labelled ``"true"`` without the name
annotation, a pod of the namespace route whose annotation is empty, a pod naming an
``AgentPersistence`` that does not exist in its namespace (the same message on both routes;
its controller retries the creation, so a Deployment created together with its resource
converges), a pod whose ``serviceAccountName`` conflicts, a pod already using the names,
mount path or probe port the injection needs.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from agentpersistence.operator import naming

from .patching import pointer
from .payloads import (
    AgentPersistenceView,
    Container,
    EnvVar,
    JsonValue,
    PatchOperation,
    Pod,
    PodSpec,
    Probe,
    ResourceRequirements,
    SecurityContext,
    Volume,
    VolumeMount,
)
from .settings import InjectionSettings

INJECT_LABEL: Final = f"{naming.GROUP}/inject"
"""Pods opt in with this label set to ``"true"`` (the label route's objectSelector), and out of
both routes with ``"false"``."""
NAMESPACE_INJECT_LABEL: Final = INJECT_LABEL
"""Namespaces turn the namespace route on with this label set to :data:`NAMESPACE_INJECT_ENABLED`
(the namespace route's namespaceSelector)."""
NAMESPACE_INJECT_ENABLED: Final = "enabled"
NAME_ANNOTATION: Final = f"{naming.GROUP}/name"
"""Names the ``AgentPersistence`` (in the pod's namespace) the sidecar serves."""
STATUS_ANNOTATION: Final = f"{naming.GROUP}/status"
STATUS_INJECTED: Final = "injected"
SOCKET_ENV: Final = "AGENTPERSISTENCE_SOCKET"

SIDECAR_NAME: Final = "agentpersistence-sidecar"
SIDECAR_COMMAND: Final = "agentpersistence-sidecar"
SOCKET_VOLUME: Final = "agentpersistence-socket"
CONFIG_VOLUME: Final = "agentpersistence-config"
CONFIG_DIR: Final = "/etc/agentpersistence"
PROBE_PORT_NAME: Final = "ap-probe"
SOCKET_VOLUME_SIZE: Final = "1Mi"
"""The socket directory holds one socket file; a limit keeps it from holding anything else."""
DEFAULT_SERVICE_ACCOUNT: Final = "default"
"""What the ServiceAccount admission plugin sets on a pod that names none."""


class Route(enum.Enum):
    """How a pod asked for the sidecar: one webhook entry, path and handler per route."""

    LABEL = "label"
    """The pod's label ``agentpersistence.io/inject: "true"``."""
    NAMESPACE = "namespace"
    """Its namespace's label ``agentpersistence.io/inject: enabled`` and the pod's name
    annotation (the API server sends only pods of such namespaces to this route)."""


class RefusalReason(enum.Enum):
    MISSING_NAME = "MissingName"
    NOT_FOUND = "NotFound"
    SERVICE_ACCOUNT_CONFLICT = "ServiceAccountConflict"
    NAME_CONFLICT = "NameConflict"


@dataclass(frozen=True)
class Refusal:
    """The pod must not be admitted as it is; ``message`` tells its author why and what to do."""

    reason: RefusalReason
    message: str


@dataclass(frozen=True)
class Injection:
    """The RFC 6902 operations to apply (none: leave the pod as it is), and warnings."""

    patch: list[PatchOperation] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


def inject(
    pod: Pod,
    resource: AgentPersistenceView | None,
    settings: InjectionSettings,
    route: Route = Route.LABEL,
) -> Injection | Refusal:
    """The patch that injects the sidecar into ``pod``, or why it cannot be admitted.

    ``resource`` is the ``AgentPersistence`` the pod names (:func:`requested_name`) in its
    namespace, or None when there is none; ``route`` is the one the pod came through (the
    handler knows it from the path the API server called).
    """
    if not opted_in(pod, route) or already_injected(pod):
        return Injection()
    name = requested_name(pod)
    if name is None:
        return _missing_name(pod, route)
    if resource is None:
        return _not_found(pod, name)
    refusal = _conflicts(pod, settings) or _service_account_conflict(pod, resource)
    if refusal is not None:
        return refusal
    return Injection(
        patch=_operations(pod, resource, settings),
        warnings=(*_socket_env_warnings(pod, settings), *_readiness_warnings(resource)),
    )


# --------------------------------------------------------------------------- reading the pod


def opted_in(pod: Pod, route: Route = Route.LABEL) -> bool:
    """Whether the pod asks for the sidecar by ``route``.

    Label route: the label is ``"true"``. Namespace route (its namespace is enabled, which the
    webhook entry's namespaceSelector guarantees): no inject label at all, so ``"false"`` opts
    out and a ``"true"`` pod belongs to the label route only, and the name annotation is there
    (empty or not: an empty one is refused, not ignored).
    """
    metadata = pod.get("metadata", {})
    labels = metadata.get("labels") or {}
    if route is Route.LABEL:
        return labels.get(INJECT_LABEL) == "true"
    annotations = metadata.get("annotations") or {}
    return INJECT_LABEL not in labels and NAME_ANNOTATION in annotations


def already_injected(pod: Pod) -> bool:
    """The status annotation is there, or a container already has the sidecar's name."""
    annotations = pod.get("metadata", {}).get("annotations") or {}
    if annotations.get(STATUS_ANNOTATION) == STATUS_INJECTED:
        return True
    return any(c.get("name") == SIDECAR_NAME for c in _all_containers(pod.get("spec", {})))


def requested_name(pod: Pod) -> str | None:
    """The ``AgentPersistence`` the pod names, or None when the annotation is missing/empty."""
    annotations = pod.get("metadata", {}).get("annotations") or {}
    name = annotations.get(NAME_ANNOTATION, "").strip()
    return name or None


def _all_containers(spec: PodSpec) -> list[Container]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _describe(pod: Pod) -> str:
    metadata = pod.get("metadata", {})
    name = metadata.get("name") or f"{metadata.get('generateName', '')}<generated>"
    return f"pod {name!r}"


def _namespace(pod: Pod) -> str:
    namespace = pod.get("metadata", {}).get("namespace")
    return f"namespace {namespace!r}" if namespace else "the pod's namespace"


# --------------------------------------------------------------------------- refusals


def _missing_name(pod: Pod, route: Route) -> Refusal:
    if route is Route.NAMESPACE:
        return Refusal(
            RefusalReason.MISSING_NAME,
            f"{_describe(pod)} is in a namespace labelled {NAMESPACE_INJECT_LABEL}="
            f"{NAMESPACE_INJECT_ENABLED} and has an empty annotation {NAME_ANNOTATION}: set it "
            f"to the name of an AgentPersistence in {_namespace(pod)}, or remove it to run "
            "the pod without the sidecar",
        )
    return Refusal(
        RefusalReason.MISSING_NAME,
        f"{_describe(pod)} has the label {INJECT_LABEL}=true but no annotation "
        f"{NAME_ANNOTATION}: add {NAME_ANNOTATION}: <AgentPersistence name> to the pod "
        "template, or remove the label",
    )


def _not_found(pod: Pod, name: str) -> Refusal:
    return Refusal(
        RefusalReason.NOT_FOUND,
        f"{_describe(pod)} names AgentPersistence {name!r} ({NAME_ANNOTATION}), which does "
        f"not exist in {_namespace(pod)}: create it (kubectl get agentpersistences lists "
        "them) or fix the annotation; a controller retries the pod's creation",
    )


def _conflicts(pod: Pod, settings: InjectionSettings) -> Refusal | None:
    spec = pod.get("spec", {})
    problems = [
        *_volume_conflicts(spec),
        *_mount_conflicts(spec, settings.socket_dir),
        *_port_conflicts(spec, settings.probe_port),
    ]
    if not problems:
        return None
    return Refusal(
        RefusalReason.NAME_CONFLICT,
        f"{_describe(pod)} cannot get the agentpersistence sidecar: {'; '.join(problems)}",
    )


def _volume_conflicts(spec: PodSpec) -> list[str]:
    reserved = {SOCKET_VOLUME, CONFIG_VOLUME, AWS_TOKEN_VOLUME, VALKEY_CREDENTIALS_VOLUME}
    return [
        f"volume {v.get('name')!r} is reserved for the sidecar; rename it"
        for v in spec.get("volumes") or []
        if v.get("name") in reserved
    ]


def _mount_conflicts(spec: PodSpec, socket_dir: str) -> list[str]:
    return [
        f"container {c.get('name')!r} already mounts a volume at {socket_dir}, where the "
        "sidecar's socket goes"
        for c in spec.get("containers") or []
        for m in c.get("volumeMounts") or []
        if m.get("mountPath", "").rstrip("/") == socket_dir
    ]


def _port_conflicts(spec: PodSpec, probe_port: int | None) -> list[str]:
    if probe_port is None:
        return []
    return [
        f"container {c.get('name')!r} uses port {probe_port}, the sidecar's probe port; "
        "change the operator's sidecar probe port (chart value sidecar.probePort)"
        for c in _all_containers(spec)
        for p in c.get("ports") or []
        if p.get("containerPort") == probe_port
    ]


def _wanted_service_account(resource: AgentPersistenceView) -> str | None:
    wanted = resource["spec"].get("serviceAccountName")
    return wanted if isinstance(wanted, str) and wanted else None


def _current_service_account(spec: PodSpec) -> str:
    current = spec.get("serviceAccountName") or spec.get("serviceAccount") or ""
    return "" if current == DEFAULT_SERVICE_ACCOUNT else current


def _service_account_conflict(pod: Pod, resource: AgentPersistenceView) -> Refusal | None:
    wanted = _wanted_service_account(resource)
    current = _current_service_account(pod.get("spec", {}))
    if wanted is None or current in ("", wanted):
        return None
    return Refusal(
        RefusalReason.SERVICE_ACCOUNT_CONFLICT,
        f"{_describe(pod)} runs as ServiceAccount {current!r}, but AgentPersistence "
        f"{resource['name']!r} gives its sidecar AWS credentials through ServiceAccount "
        f"{wanted!r} (spec.serviceAccountName): remove serviceAccountName from the pod "
        f"template or set it to {wanted!r}",
    )


# --------------------------------------------------------------------------- warnings


def _socket_env_warnings(pod: Pod, settings: InjectionSettings) -> list[str]:
    return [
        f"container {c.get('name')!r} sets {SOCKET_ENV}={env.get('value', '')!r}, kept as "
        f"it is; the sidecar listens at {settings.socket_path}"
        for c in pod.get("spec", {}).get("containers") or []
        for env in c.get("env") or []
        if env.get("name") == SOCKET_ENV and env.get("value") != settings.socket_path
    ]


def _readiness_warnings(resource: AgentPersistenceView) -> list[str]:
    conditions = resource["status"].get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return []
    detail = f": {ready.get('message')}" if ready is not None and ready.get("message") else ""
    return [
        f"AgentPersistence {resource['name']!r} is not Ready yet{detail}; the sidecar starts "
        "once its storage and ConfigMap exist"
    ]


# --------------------------------------------------------------------------- the patch


def _operations(
    pod: Pod, resource: AgentPersistenceView, settings: InjectionSettings
) -> list[PatchOperation]:
    spec = pod.get("spec", {})
    sidecar = sidecar_container(resource, settings)
    where: Literal["initContainers", "containers"] = (
        "initContainers" if settings.native_sidecars else "containers"
    )
    annotations = pod.get("metadata", {}).get("annotations")
    return [
        *_append(("spec", "volumes"), spec.get("volumes"), pod_volumes(resource, settings)),
        *_app_container_operations(spec.get("containers") or [], settings),
        *_append(("spec", where), spec.get(where), [sidecar]),
        *_supplemental_group(spec, settings.run_as_group),
        *_service_account(spec, resource),
        *_put(("metadata", "annotations"), annotations, STATUS_ANNOTATION, STATUS_INJECTED),
    ]


def _append(
    path: Sequence[str | int], current: Sequence[object] | None, items: Iterable[JsonValue]
) -> list[PatchOperation]:
    """Appends ``items`` to the list at ``path``, creating it when absent (or null)."""
    values = list(items)
    if not values:
        return []
    if current is None:
        return [{"op": "add", "path": pointer(*path), "value": values}]
    return [{"op": "add", "path": pointer(*path, "-"), "value": value} for value in values]


def _put(
    path: Sequence[str | int], current: object | None, key: str, value: JsonValue
) -> list[PatchOperation]:
    """Sets ``key`` in the object at ``path``, creating the object when absent (or null)."""
    if current is None:
        return [{"op": "add", "path": pointer(*path), "value": {key: value}}]
    return [{"op": "add", "path": pointer(*path, key), "value": value}]


def _app_container_operations(
    containers: Sequence[Container], settings: InjectionSettings
) -> list[PatchOperation]:
    mount: VolumeMount = {"name": SOCKET_VOLUME, "mountPath": settings.socket_dir, "readOnly": True}
    env: EnvVar = {"name": SOCKET_ENV, "value": settings.socket_path}
    operations: list[PatchOperation] = []
    for index, container in enumerate(containers):
        base = ("spec", "containers", index)
        operations += _append((*base, "volumeMounts"), container.get("volumeMounts"), [mount])
        if not any(e.get("name") == SOCKET_ENV for e in container.get("env") or []):
            operations += _append((*base, "env"), container.get("env"), [env])
    return operations


def _supplemental_group(spec: PodSpec, group: int) -> list[PatchOperation]:
    context = spec.get("securityContext")
    if context is None:
        value = {"supplementalGroups": [group]}
        return [{"op": "add", "path": pointer("spec", "securityContext"), "value": value}]
    groups = context.get("supplementalGroups")
    if groups is not None and group in groups:
        return []
    return _append(("spec", "securityContext", "supplementalGroups"), groups, [group])


def _service_account(spec: PodSpec, resource: AgentPersistenceView) -> list[PatchOperation]:
    wanted = _wanted_service_account(resource)
    if wanted is None or _current_service_account(spec) == wanted:
        return []
    operations: list[PatchOperation] = [
        {"op": "add", "path": "/spec/serviceAccountName", "value": wanted}
    ]
    if "serviceAccount" in spec:  # the deprecated alias must not contradict the name
        operations.append({"op": "add", "path": "/spec/serviceAccount", "value": wanted})
    return operations


# --------------------------------------------------------------------------- what is added


AWS_TOKEN_VOLUME: Final = "agentpersistence-aws-token"
AWS_TOKEN_DIR: Final = "/var/run/secrets/agentpersistence/aws"
AWS_TOKEN_FILE: Final = "token"
VALKEY_CREDENTIALS_VOLUME: Final = "agentpersistence-valkey-credentials"
SECRET_FILE_MODE: Final = 0o444
"""Readable by the sidecar's non-root user; the volume is mounted into no other container."""


def _valkey_credentials(resource: AgentPersistenceView) -> dict[str, JsonValue] | None:
    """``spec.valkeyCredentials`` (validated by the CRD), if the resource sets one."""
    credentials = resource["spec"].get("valkeyCredentials")
    if isinstance(credentials, dict) and credentials.get("secretName"):
        return credentials
    return None


def _credentials_volume(credentials: dict[str, JsonValue]) -> Volume:
    """The Secret's password (and user name) as the files the sidecar's config names."""
    items: list[JsonValue] = [
        {"key": credentials.get("passwordKey") or "password", "path": "password"}
    ]
    if credentials.get("usernameKey"):
        items.append({"key": credentials["usernameKey"], "path": "username"})
    secret: dict[str, JsonValue] = {
        "secretName": credentials["secretName"],
        "items": items,
        "defaultMode": SECRET_FILE_MODE,
    }
    return {"name": VALKEY_CREDENTIALS_VOLUME, "secret": secret}


def _aws_identity(resource: AgentPersistenceView) -> dict[str, JsonValue] | None:
    """``spec.sidecar.awsIdentity`` (validated by the CRD), if the resource sets one."""
    sidecar = resource["spec"].get("sidecar") or {}
    identity = sidecar.get("awsIdentity") if isinstance(sidecar, dict) else None
    return identity if isinstance(identity, dict) and identity.get("roleArn") else None


def pod_volumes(resource: AgentPersistenceView, settings: InjectionSettings) -> list[Volume]:
    """The socket's in-memory volume, the sidecar's config volume and, mounted into the sidecar
    only: with an AWS identity its projected token, with Valkey credentials their Secret."""
    volumes = _shared_volumes(resource)
    identity = _aws_identity(resource)
    if identity is not None:
        token = {
            "audience": identity.get("audience") or "sts.amazonaws.com",
            "expirationSeconds": identity.get("expirationSeconds") or 86400,
            "path": AWS_TOKEN_FILE,
        }
        volumes.append(
            {"name": AWS_TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}
        )
    credentials = _valkey_credentials(resource)
    if credentials is not None:
        volumes.append(_credentials_volume(credentials))
    return volumes


def _shared_volumes(resource: AgentPersistenceView) -> list[Volume]:
    return [
        {"name": SOCKET_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SOCKET_VOLUME_SIZE}},
        {
            "name": CONFIG_VOLUME,
            "configMap": {
                "name": naming.sidecar_configmap(resource["name"]),
                "items": [{"key": naming.CONFIG_KEY, "path": naming.CONFIG_KEY}],
            },
        },
    ]


def sidecar_container(resource: AgentPersistenceView, settings: InjectionSettings) -> Container:
    """The sidecar container, with ``spec.sidecar`` overrides (image, pull policy, resources,
    allowed peers)."""
    overrides = resource["spec"].get("sidecar") or {}
    container: Container = {
        "name": SIDECAR_NAME,
        "image": overrides.get("image") or settings.image,
        "command": [SIDECAR_COMMAND],
        "args": _sidecar_args(settings, overrides.get("allowedPeers")),
    }
    pull_policy = overrides.get("imagePullPolicy") or settings.image_pull_policy
    if pull_policy:
        container["imagePullPolicy"] = pull_policy
    env = copy.deepcopy(list(settings.extra_env))
    identity = _aws_identity(resource)
    if identity is not None:  # the web identity, for the sidecar's AWS chain only
        env += [
            {"name": "AWS_ROLE_ARN", "value": str(identity["roleArn"])},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{AWS_TOKEN_DIR}/{AWS_TOKEN_FILE}"},
            {"name": "AWS_ROLE_SESSION_NAME", "value": "agentpersistence-sidecar"},
        ]
    if env:
        container["env"] = env
    if settings.probe_port is not None:
        container["ports"] = [
            {"name": PROBE_PORT_NAME, "containerPort": settings.probe_port, "protocol": "TCP"}
        ]
    container["resources"] = _resources(overrides.get("resources"), settings)
    container["volumeMounts"] = [
        {"name": SOCKET_VOLUME, "mountPath": settings.socket_dir},
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    if identity is not None:
        mount: VolumeMount = {
            "name": AWS_TOKEN_VOLUME,
            "mountPath": AWS_TOKEN_DIR,
            "readOnly": True,
        }
        container["volumeMounts"].append(mount)
    if _valkey_credentials(resource) is not None:
        secret_mount: VolumeMount = {
            "name": VALKEY_CREDENTIALS_VOLUME,
            "mountPath": naming.VALKEY_CREDENTIALS_DIR,
            "readOnly": True,
        }
        container["volumeMounts"].append(secret_mount)
    container["securityContext"] = sidecar_security_context(settings)
    container |= _probes(settings)
    if settings.native_sidecars:
        container["restartPolicy"] = "Always"
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def _sidecar_args(settings: InjectionSettings, peers: object) -> list[str]:
    args = ["--socket", settings.socket_path, "--config", f"{CONFIG_DIR}/{naming.CONFIG_KEY}"]
    if settings.probe_port is not None:
        args += ["--probe-port", str(settings.probe_port)]
    if isinstance(peers, dict):  # spec.sidecar.allowedPeers, validated by the CRD
        args += [arg for uid in peers.get("uids") or () for arg in ("--allow-uid", str(uid))]
        args += [arg for gid in peers.get("gids") or () for arg in ("--allow-gid", str(gid))]
    return args


def _resources(override: object, settings: InjectionSettings) -> ResourceRequirements:
    """``spec.sidecar.resources`` replaces the operator's defaults as a whole (unset parts
    stay unset, as in a container spec); without it, the defaults."""
    chosen = override if isinstance(override, dict) and override else settings.resources
    return copy.deepcopy(chosen)  # type: ignore[return-value]  # a raw spec block


def sidecar_security_context(settings: InjectionSettings) -> SecurityContext:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probes(settings: InjectionSettings) -> Container:
    startup: Probe = {
        "exec": {"command": ["test", "-S", settings.socket_path]},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": settings.startup_timeout_seconds,
    }
    probes: Container = {"startupProbe": startup}
    if settings.probe_port is not None:
        probes["livenessProbe"] = _http_probe("/healthz", settings.probe_port)
        probes["readinessProbe"] = _http_probe("/readyz", settings.probe_port)
    return probes


def _http_probe(path: str, port: int) -> Probe:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
