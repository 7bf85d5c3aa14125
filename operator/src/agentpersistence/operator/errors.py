"""The operator's errors, and the one place that decides *retry* or *give up*.

Every failure of a reconcile becomes a :class:`ReconcileError`: :class:`Retryable`
(throttling, 5xx, unreachable endpoints, a resource still being created or deleted, a
conflicting concurrent change) or :class:`Terminal` (the request is invalid, access is
denied, an existing resource cannot be adopted: retrying the same spec cannot help, so the
resource shows ``Terminal=True`` until its spec changes or a reconcile is requested with the
``agentpersistence.io/reconcile-requested`` annotation).

:func:`from_aws`, :func:`from_valkey` and :func:`from_kube` map each boundary's exceptions;
:func:`guarded` applies the right one around a call. ``handlers`` turns the result into
kopf's ``TemporaryError`` or ``PermanentError`` (:func:`to_kopf`). Messages name the
resource and the error code, are cut short and never carry request payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import aiohttp
import kopf
from botocore import exceptions as bx
from kopf._cogs.clients import errors as kube_errors
from valkey import exceptions as vx

from agentpersistence.client.protocol.errors import BackendUnavailable, SidecarError
from agentpersistence.sidecar.backends import aws as aws_codes
from agentpersistence.sidecar.backends.valkey import errors as valkey_errors

MAX_DETAIL = 300
RETRY_DELAY_S = 15.0
"""How long kopf waits before retrying a handler after a :class:`Retryable` error."""
THROTTLED_DELAY_S = 30.0

TERMINAL_CODES = frozenset(
    {
        "ValidationException",
        "InvalidParameterValue",
        "InvalidParameterException",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidBucketName",
        "IllegalLocationConstraintException",
        "InvalidLocationConstraint",
        "BucketAlreadyExists",
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "ServiceQuotaExceededException",
    }
)
"""AWS error codes retrying cannot fix: the request, the credentials or the account must change."""

RETRYABLE_CODES = frozenset(
    {
        *aws_codes.THROTTLING,
        "ResourceInUseException",
        "OperationAborted",
        "ConflictException",
        "ThrottledException",
        "ServiceException",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
"""AWS error codes of transient states: throttling, concurrent changes, server trouble."""


class ReconcileError(Exception):
    """A reconcile failed; ``reason`` is the condition reason (CamelCase)."""

    terminal = False

    def __init__(self, message: str, *, reason: str, delay: float = RETRY_DELAY_S) -> None:
        super().__init__(_cut(message))
        self.message = _cut(message)
        self.reason = reason
        self.delay = delay


class Retryable(ReconcileError):
    """Transient: kopf retries the handler after ``delay`` seconds."""


class Terminal(ReconcileError):
    """Permanent for this spec: fix what the message says, then change the spec or annotate."""

    terminal = True


# --------------------------------------------------------------------------- AWS


def from_aws(exc: BaseException, where: str) -> ReconcileError:
    """The error for an exception raised by an aiobotocore call about ``where``."""
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, where)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return Terminal(
            f"no usable AWS credentials for {where}: give the operator's ServiceAccount a role "
            "(IRSA or EKS Pod Identity) or set the standard AWS variables",
            reason="NoCredentials",
        )
    if isinstance(exc, bx.NoRegionError):
        return Terminal(
            f"no AWS region for {where}: set the 'region' of the block or AWS_REGION",
            reason="NoRegion",
        )
    if isinstance(exc, bx.ParamValidationError):
        return Terminal(f"{where}: invalid request: {_detail(exc)}", reason="InvalidParameters")
    if isinstance(exc, bx.WaiterError):
        return Retryable(f"{where} is not ready yet: {exc}", reason="NotReady")
    if isinstance(exc, (*aws_codes.UNREACHABLE, bx.BotoCoreError)):
        return Retryable(f"{where} is unreachable: {_detail(exc)}", reason="Unreachable")
    return Retryable(f"{where} failed: {type(exc).__name__}: {_detail(exc)}", reason="Error")


def _client_error(exc: bx.ClientError, where: str) -> ReconcileError:
    code = aws_codes.code_of(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = str(exc.response.get("Error", {}).get("Message", "") or code)
    message = f"{where}: {code or status}: {text}"
    if code in aws_codes.THROTTLING:
        return Retryable(message, reason="Throttled", delay=THROTTLED_DELAY_S)
    if code in RETRYABLE_CODES or status >= 500:
        return Retryable(message, reason=code or "ServerError")
    if code in TERMINAL_CODES or status in (400, 403):
        return Terminal(message, reason=code or "Refused")
    return Retryable(message, reason=code or "Error")


# --------------------------------------------------------------------------- Valkey


def from_valkey(exc: BaseException, where: str) -> ReconcileError:
    """The error for an exception from the sidecar's Valkey code (or valkey-py) at ``where``."""
    if isinstance(exc, valkey_errors.IndexMismatch):
        return Terminal(f"{exc} {exc.hint}", reason="IndexMismatch")
    if isinstance(exc, SidecarError):
        return _sidecar_error(exc)
    translated = valkey_errors.translate(exc, where)
    return _sidecar_error(translated)


def _sidecar_error(exc: SidecarError) -> ReconcileError:
    message = str(exc)
    if "no search module" in message:
        return Terminal(message, reason="NoSearchModule")
    if isinstance(exc, BackendUnavailable):
        return Retryable(message, reason="ValkeyUnavailable")
    return Retryable(message, reason="ValkeyError")


# --------------------------------------------------------------------------- Kubernetes


def from_kube(exc: BaseException, where: str) -> ReconcileError:
    """The error for a Kubernetes API call about ``where`` (through kopf's client)."""
    if isinstance(exc, kube_errors.APIError):
        message = f"{where}: HTTP {exc.status}: {_detail(exc)}"
        if exc.status == 403:
            return Terminal(message, reason="Forbidden")
        if exc.status in (400, 422):
            return Terminal(message, reason="KubernetesRefused")
        return Retryable(message, reason="KubernetesError")
    return Retryable(f"{where}: {_detail(exc)}", reason="KubernetesUnreachable")


# --------------------------------------------------------------------------- one gate

AWS_FAILURES = (bx.BotoCoreError, bx.ClientError, aiohttp.ClientError, asyncio.TimeoutError)
VALKEY_FAILURES = (SidecarError, vx.ValkeyError, asyncio.TimeoutError, OSError)
KUBE_FAILURES = (kube_errors.APIError, aiohttp.ClientError, asyncio.TimeoutError)


Translate = Callable[[BaseException, str], ReconcileError]
GATES: dict[str, tuple[tuple[type[BaseException], ...], Translate]] = {
    "aws": (AWS_FAILURES, from_aws),
    "valkey": (VALKEY_FAILURES, from_valkey),
    "kube": (KUBE_FAILURES, from_kube),
}


@contextlib.contextmanager
def guarded(service: str, where: str) -> Iterator[None]:
    """Map what the block raises talking to ``service`` (aws, valkey, kube) about ``where``."""
    failures, translate = GATES[service]
    try:
        yield
    except ReconcileError:
        raise
    except failures as exc:
        raise translate(exc, where) from exc


def to_kopf(error: ReconcileError) -> kopf.PermanentError | kopf.TemporaryError:
    """What the handler raises so that kopf retries (or stops retrying) the way we decided."""
    if error.terminal:
        return kopf.PermanentError(error.message)
    return kopf.TemporaryError(error.message, delay=error.delay)


def _detail(exc: BaseException) -> str:
    return _cut(str(exc) or type(exc).__name__)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."
