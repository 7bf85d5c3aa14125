"""What every AWS backend shares: client settings, and the one mapping from botocore's (and
aiohttp's) exceptions to the protocol's errors.

Unreachable endpoints, missing credentials, throttling that outlasted botocore's retries,
5xx answers and missing tables, buckets or memories become ``BackendUnavailable``: the sidecar
is fine, its storage is not (yet). Requests AWS refuses as invalid become
``RequestRejected``. Anything else is a bug here and becomes an internal ``SidecarError``.
Messages name the service, the resource and the AWS error code; they are cut short and never
include request parameters (so no payloads).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from botocore import exceptions as bx

from agentpersistence.client.protocol.errors import (
    BackendUnavailable,
    RequestRejected,
    SidecarError,
)

from .. import deadlines
from ..settings import AwsClientSettings

_MAX_DETAIL = 200

THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "ThrottledException",
        "Throttling",
        "RequestLimitExceeded",
        "SlowDown",
        "TooManyRequestsException",
        "LimitExceededException",
    }
)
_MISSING = frozenset({"ResourceNotFoundException", "NoSuchBucket", "TableNotFoundException"})
_REFUSED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
    }
)
_INVALID = frozenset({"ValidationException", "InvalidArgument", "EntityTooLarge", "KeyTooLong"})

UNREACHABLE = (
    bx.EndpointConnectionError,
    bx.ConnectionClosedError,
    bx.ReadTimeoutError,
    bx.ConnectTimeoutError,
    bx.HTTPClientError,
    bx.ConnectionError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)
FAILURES = (bx.BotoCoreError, bx.ClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""Every exception a call through aiobotocore may raise; :func:`translate` maps each."""


def code_of(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` ("" for anything else)."""
    if isinstance(exc, bx.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def translate(exc: BaseException, where: str) -> SidecarError:
    """The protocol error for an exception raised by a call to ``where`` (e.g. "DynamoDB
    table checkpoints")."""
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, where)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return BackendUnavailable(
            f"no usable AWS credentials for {where}: {_detail(exc)}; provide them through the "
            "standard chain (environment, web identity, instance or pod role)"
        )
    if isinstance(exc, bx.NoRegionError):
        return BackendUnavailable(
            f"no AWS region for {where}: set AWS_REGION or the backend's 'region' setting"
        )
    if isinstance(exc, bx.CredentialRetrievalError | bx.TokenRetrievalError):
        return BackendUnavailable(f"cannot obtain AWS credentials for {where}: {_detail(exc)}")
    if isinstance(exc, UNREACHABLE):
        return BackendUnavailable(f"{where} is unreachable: {_detail(exc)}")
    return SidecarError(f"{where} failed unexpectedly: {type(exc).__name__}: {_detail(exc)}")


def _client_error(exc: bx.ClientError, where: str) -> SidecarError:
    code = code_of(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = _detail(exc.response.get("Error", {}).get("Message", "") or code)
    if code in THROTTLING:
        return BackendUnavailable(
            f"{where} is throttling requests ({code}) beyond botocore's retries; "
            "retry later, or raise its capacity or quota"
        )
    if code in _MISSING or status == 404:
        return BackendUnavailable(
            f"{where} does not exist ({code}); create it with `agentpersistence-sidecar "
            "--provision` or let the operator provision it"
        )
    if code in _REFUSED or status == 403:
        return BackendUnavailable(f"{where} refused the credentials ({code}): {message}")
    if status >= 500:
        return BackendUnavailable(f"{where} answered {status} ({code}): {message}")
    if code in _INVALID or 400 <= status < 500:
        return RequestRejected(f"{where} rejected the request ({code}): {message}")
    return SidecarError(f"{where} answered an unexpected error ({code}): {message}")


def _detail(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."


def client_config(settings: AwsClientSettings) -> AioConfig:
    """Retries (botocore's adaptive mode: throttling and 5xx, rate-limited while throttled),
    timeouts and pool size of a backend's clients."""
    return AioConfig(
        retries={"mode": "adaptive", "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        max_pool_connections=settings.max_connections,
    )


BACKOFF_MAX_S = 20.0
"""botocore's longest wait between two attempts (its standard and adaptive modes)."""


def bound_retries(client: Any) -> None:
    """Let ``client`` retry only while the request it serves has time for another attempt.

    botocore backs off up to ``min(2 ** (attempt - 1), 20)`` seconds between attempts, so an
    unreachable endpoint would keep a call retrying past the caller's deadline, which then
    gets ``DeadlineExceeded`` and no cause. Stopping earlier (see :mod:`..deadlines`) lets the
    last failure reach the caller as ``BackendUnavailable`` naming the endpoint.
    """
    service = client.meta.service_model.service_id.hyphenize()
    # First among the handlers of botocore's own event: a False there vetoes the retry.
    client.meta.events.register_first(
        f"needs-retry.{service}", _retry_in_time, unique_id="agentpersistence-deadline"
    )


def _retry_in_time(attempts: int, **_: Any) -> bool | None:
    """False (no retry) when botocore's next wait could leave no time to answer; None
    leaves the decision to botocore's retry handler."""
    if deadlines.may_wait(min(2.0 ** (attempts - 1), BACKOFF_MAX_S)):
        return None
    return False


def region(settings: AwsClientSettings) -> str | None:
    """The configured region, else ``AWS_REGION``; None leaves it to botocore's chain."""
    return settings.region or os.environ.get("AWS_REGION") or None


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """Raise what a call to ``where`` raises as the protocol's error (see :func:`translate`)."""
    try:
        yield
    except FAILURES as exc:
        raise translate(exc, where) from None
