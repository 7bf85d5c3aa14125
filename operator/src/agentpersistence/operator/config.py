"""The operator's own settings (not a resource's): read once from the environment at start.

Each field says its unit and why it exists. The Helm chart sets them as environment variables
of the operator's Deployment; AWS endpoints, credentials and the default region come from the
standard AWS variables and credential chain, as for the sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DRIFT_INTERVAL_ENV = "AGENTPERSISTENCE_DRIFT_INTERVAL_SECONDS"
AWS_MAX_ATTEMPTS_ENV = "AGENTPERSISTENCE_AWS_MAX_ATTEMPTS"
MEMORY_WAIT_ENV = "AGENTPERSISTENCE_MEMORY_WAIT_SECONDS"
RECONCILE_CONCURRENCY_ENV = "AGENTPERSISTENCE_RECONCILE_CONCURRENCY"


class InvalidConfig(ValueError):
    """An environment variable of the operator has an unusable value."""


@dataclass(frozen=True)
class OperatorConfig:
    drift_interval_seconds: float = 300.0
    """Seconds between two drift checks of one resource (re-reading its storage)."""

    aws_region: str | None = None
    """Region for blocks that name none (``AWS_REGION``); None leaves it to botocore's chain."""

    aws_max_attempts: int = 3
    """Attempts per AWS call (botocore's standard retries) before kopf's own retry takes over
    with a longer delay: the handler must not block for minutes on a throttled API."""

    memory_wait_seconds: float = 20.0
    """How long one pass waits for a new AgentCore Memory to become ACTIVE before it retries
    later (creation takes minutes on AWS; the resource shows Ready=False meanwhile)."""

    reconcile_concurrency: int = 16
    """Resources one operator process reconciles at a time (the others wait their turn), and
    the connections each AWS client keeps. The same event loop serves the admission webhook:
    hundreds of passes at once would make admissions wait behind them."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OperatorConfig:
        return cls(
            drift_interval_seconds=_number(environ, DRIFT_INTERVAL_ENV, cls.drift_interval_seconds),
            aws_region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
            aws_max_attempts=int(_number(environ, AWS_MAX_ATTEMPTS_ENV, cls.aws_max_attempts)),
            memory_wait_seconds=_number(environ, MEMORY_WAIT_ENV, cls.memory_wait_seconds),
            reconcile_concurrency=int(
                _number(environ, RECONCILE_CONCURRENCY_ENV, cls.reconcile_concurrency)
            ),
        )


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidConfig(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise InvalidConfig(f"{name}={text!r} must be positive")
    return value
