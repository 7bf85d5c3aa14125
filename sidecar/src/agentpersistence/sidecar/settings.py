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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

CheckpointBackendName = Literal["memory", "valkey"]


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message says where."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class MemorySettings(_Model):
    """In-process dictionaries: for development and tests; lost when the sidecar stops."""


class ValkeySettings(_Model):
    url: str = Field(
        description="Valkey URL: valkey:// or valkeys:// (TLS), optional user:password@ and /db."
    )
    key_prefix: str = Field(
        default="ap", description="Prefix of every key, so several deployments can share a server."
    )
    ttl_seconds: int | None = Field(
        default=None,
        gt=0,
        description="Expire a thread's keys this long after its last write; unset keeps them.",
    )
    max_connections: int = Field(default=64, gt=0, description="Connection pool size.")
    socket_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Per-command timeout towards Valkey."
    )


class CheckpointerConfig(_Model):
    backend: CheckpointBackendName
    memory: MemorySettings | None = None
    valkey: ValkeySettings | None = None

    @model_validator(mode="after")
    def _one_backend_block(self) -> CheckpointerConfig:
        blocks = {name for name in ("memory", "valkey") if getattr(self, name) is not None}
        extra = blocks - {self.backend}
        if extra:
            raise ValueError(
                f"backend is {self.backend!r} but settings are given for {sorted(extra)}; "
                "keep only the block of the chosen backend"
            )
        if self.backend == "valkey" and self.valkey is None:
            raise ValueError("backend 'valkey' needs a 'valkey' block with at least 'url'")
        return self


class SidecarConfig(_Model):
    checkpointer: CheckpointerConfig | None = None

    @model_validator(mode="after")
    def _something_configured(self) -> SidecarConfig:
        if self.checkpointer is None:
            raise ValueError("configure at least one block: checkpointer")
        return self


def parse_config(data: Any, *, source: str = "config") -> SidecarConfig:
    try:
        return SidecarConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{source} is invalid: {problems}") from None


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
