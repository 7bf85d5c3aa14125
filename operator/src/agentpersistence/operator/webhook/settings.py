"""What the webhook is configured with: the injected sidecar, and the HTTPS server.

Both are frozen dataclasses passed explicitly (never read from globals). The operator's
Deployment sets them through environment variables (the Helm chart renders them from its
values); :func:`injection_from_env` and :func:`server_from_env` read them once, at startup,
and fail with a message naming the variable when one is malformed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast, get_args

from .payloads import EnvVar, ResourceRequirements

PullPolicy = Literal["Always", "IfNotPresent", "Never"]

SOCKET_DIR: Final = "/var/run/agentpersistence"
"""Where the socket's volume is mounted; with :data:`SOCKET_NAME`, the client's default path."""
SOCKET_NAME: Final = "sidecar.sock"
PROBE_PORT: Final = 9147
"""The sidecar's TCP port for /healthz, /readyz and /metrics (unused by common software)."""
SIDECAR_UID: Final = 65532
"""The sidecar's user and group: the images' non-root ``nonroot`` id (as distroless uses)."""
WEBHOOK_PORT: Final = 9443
WEBHOOK_CERT_DIR: Final = "/etc/agentpersistence/webhook"

ENV_IMAGE: Final = "AGENTPERSISTENCE_SIDECAR_IMAGE"
ENV_PULL_POLICY: Final = "AGENTPERSISTENCE_SIDECAR_IMAGE_PULL_POLICY"
ENV_RESOURCES: Final = "AGENTPERSISTENCE_SIDECAR_RESOURCES"
ENV_EXTRA_ENV: Final = "AGENTPERSISTENCE_SIDECAR_ENV"
ENV_SOCKET_DIR: Final = "AGENTPERSISTENCE_SOCKET_DIR"
ENV_PROBE_PORT: Final = "AGENTPERSISTENCE_SIDECAR_PROBE_PORT"
ENV_NATIVE: Final = "AGENTPERSISTENCE_NATIVE_SIDECARS"
ENV_UID: Final = "AGENTPERSISTENCE_SIDECAR_UID"
ENV_GID: Final = "AGENTPERSISTENCE_SIDECAR_GID"
ENV_WEBHOOK_ADDR: Final = "AGENTPERSISTENCE_WEBHOOK_ADDR"
ENV_WEBHOOK_PORT: Final = "AGENTPERSISTENCE_WEBHOOK_PORT"
ENV_WEBHOOK_CERT_DIR: Final = "AGENTPERSISTENCE_WEBHOOK_CERT_DIR"

_T = TypeVar("_T")


class SettingsError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


def default_resources() -> ResourceRequirements:
    """Requests for an idle sidecar, and a memory limit for its largest requests (32 MiB)."""
    return {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


@dataclass(frozen=True)
class InjectionSettings:
    """The sidecar the webhook injects, unless the ``AgentPersistence`` overrides a field."""

    image: str
    """Image of the sidecar (``spec.sidecar.image`` overrides it)."""
    image_pull_policy: PullPolicy | None = None
    """None leaves Kubernetes' default (``Always`` for ``:latest``, else ``IfNotPresent``)."""
    resources: ResourceRequirements = field(default_factory=default_resources)
    """Requests and limits (``spec.sidecar.resources`` replaces them as a whole)."""
    extra_env: tuple[EnvVar, ...] = ()
    """Environment of every sidecar, e.g. ``AWS_REGION`` or ``AWS_ENDPOINT_URL_*``."""
    socket_dir: str = SOCKET_DIR
    """Mount path of the socket's in-memory volume, in the sidecar and every app container."""
    probe_port: int | None = PROBE_PORT
    """TCP port of the sidecar's liveness and readiness endpoints; None: socket only, and
    no liveness/readiness probes (the startup probe needs no port)."""
    native_sidecars: bool = True
    """Kubernetes ≥ 1.29: an init container with ``restartPolicy: Always``. False: a regular
    container (older clusters; agents then rely on the client's connection retry)."""
    run_as_user: int = SIDECAR_UID
    run_as_group: int = SIDECAR_UID
    """Also added to the pod's ``supplementalGroups``: the socket is mode 0660, so app
    containers need the group to connect, whatever user they run as."""
    startup_timeout_seconds: int = 120
    """How long the sidecar may take to create its socket before the kubelet restarts it."""

    @property
    def socket_path(self) -> str:
        return f"{self.socket_dir.rstrip('/')}/{SOCKET_NAME}"


@dataclass(frozen=True)
class ServerSettings:
    """The HTTPS endpoint kopf serves admission requests on."""

    addr: str = "0.0.0.0"
    """Listening address; the Service in front of the operator targets :attr:`port`."""
    port: int = WEBHOOK_PORT
    cert_dir: Path = Path(WEBHOOK_CERT_DIR)
    """Holds ``tls.crt``, ``tls.key`` and ``ca.crt`` (a ``kubernetes.io/tls`` Secret as the
    chart or cert-manager writes it). kopf re-reads them when they change."""

    @property
    def certfile(self) -> Path:
        return self.cert_dir / "tls.crt"

    @property
    def pkeyfile(self) -> Path:
        return self.cert_dir / "tls.key"

    @property
    def cafile(self) -> Path:
        return self.cert_dir / "ca.crt"


def injection_from_env(env: Mapping[str, str]) -> InjectionSettings:
    """Reads the ``AGENTPERSISTENCE_SIDECAR_*`` variables; only the image is required."""
    image = env.get(ENV_IMAGE, "").strip()
    if not image:
        raise SettingsError(f"{ENV_IMAGE} is not set: the webhook needs the sidecar image")
    defaults = InjectionSettings(image=image)
    return InjectionSettings(
        image=image,
        image_pull_policy=_optional(env, ENV_PULL_POLICY, _pull_policy),
        resources=_read(env, ENV_RESOURCES, _resources, defaults.resources),
        extra_env=_read(env, ENV_EXTRA_ENV, _env_list, defaults.extra_env),
        socket_dir=_read(env, ENV_SOCKET_DIR, _absolute_path, defaults.socket_dir),
        probe_port=_read(env, ENV_PROBE_PORT, _optional_port, defaults.probe_port),
        native_sidecars=_read(env, ENV_NATIVE, _boolean, defaults.native_sidecars),
        run_as_user=_read(env, ENV_UID, _non_root_id, defaults.run_as_user),
        run_as_group=_read(env, ENV_GID, _non_root_id, defaults.run_as_group),
    )


def server_from_env(env: Mapping[str, str]) -> ServerSettings:
    """Reads the ``AGENTPERSISTENCE_WEBHOOK_*`` variables; all have defaults."""
    defaults = ServerSettings()
    return ServerSettings(
        addr=env.get(ENV_WEBHOOK_ADDR) or defaults.addr,
        port=_read(env, ENV_WEBHOOK_PORT, _port, defaults.port),
        cert_dir=Path(env.get(ENV_WEBHOOK_CERT_DIR) or defaults.cert_dir),
    )


# --------------------------------------------------------------------------- parsers


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], _T], default: _T) -> _T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{name}={raw[:200]!r} is invalid: {exc}") from None


def _optional(env: Mapping[str, str], name: str, parse: Callable[[str], _T]) -> _T | None:
    return _read(env, name, parse, None)


def _pull_policy(raw: str) -> PullPolicy:
    if raw not in get_args(PullPolicy):
        raise ValueError(f"expected one of {', '.join(get_args(PullPolicy))}")
    return cast(PullPolicy, raw)


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None


def _resources(raw: str) -> ResourceRequirements:
    value = _json(raw)
    if not isinstance(value, dict) or not set(value) <= {"requests", "limits"}:
        raise ValueError('expected a JSON object like {"requests": {...}, "limits": {...}}')
    return cast(ResourceRequirements, value)


def _env_list(raw: str) -> tuple[EnvVar, ...]:
    value = _json(raw)
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in value
    ):
        raise ValueError('expected a JSON list like [{"name": "AWS_REGION", "value": "..."}]')
    return tuple(cast(list[EnvVar], value))


def _absolute_path(raw: str) -> str:
    if not raw.startswith("/"):
        raise ValueError("expected an absolute path")
    return raw.rstrip("/") or "/"


def _port(raw: str) -> int:
    port = int(raw)
    if not 1 <= port <= 65535:
        raise ValueError("expected a TCP port, 1-65535")
    return port


def _optional_port(raw: str) -> int | None:
    return None if raw in {"0", "none"} else _port(raw)


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in {"true", "false"}:
        raise ValueError("expected true or false")
    return lowered == "true"


def _non_root_id(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a non-root id (> 0)")
    return value
