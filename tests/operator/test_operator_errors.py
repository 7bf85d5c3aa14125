"""Retry or give up: one decision per AWS error code, Valkey error and API status
(:mod:`...operator.errors`)."""

from __future__ import annotations

import kopf
import pytest
from botocore import exceptions as bx
from kopf._cogs.clients import errors as kube_errors

from agentpersistence.client.protocol.errors import BackendUnavailable
from agentpersistence.operator import errors
from agentpersistence.sidecar.backends.valkey import errors as valkey_errors


def client_error(code: str, status: int) -> bx.ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return bx.ClientError(response, "CreateTable")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("AccessDenied", 403),
        ("AccessDeniedException", 403),
        ("UnrecognizedClientException", 400),
        ("InvalidBucketName", 400),
        ("BucketAlreadyExists", 409),
        ("SomethingNew", 400),
    ],
)
def test_requests_retrying_cannot_fix_are_terminal(code: str, status: int) -> None:
    error = errors.from_aws(client_error(code, status), "DynamoDB table t")
    assert isinstance(error, errors.Terminal)
    assert error.reason == code
    assert error.message == f"DynamoDB table t: {code}: {code} happened"


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        ("ThrottlingException", 400, "Throttled"),
        ("ProvisionedThroughputExceededException", 400, "Throttled"),
        ("SlowDown", 503, "Throttled"),
        ("ThrottledException", 429, "Throttled"),  # AgentCore's throttling code
        ("ResourceInUseException", 400, "ResourceInUseException"),
        ("OperationAborted", 409, "OperationAborted"),
        ("InternalServerError", 500, "InternalServerError"),
        ("", 502, "ServerError"),
        ("SomethingNew", 409, "SomethingNew"),
    ],
)
def test_transient_failures_are_retried(code: str, status: int, reason: str) -> None:
    error = errors.from_aws(client_error(code, status), "S3 bucket b")
    assert isinstance(error, errors.Retryable)
    assert error.reason == reason


def test_throttling_waits_longer_before_the_retry() -> None:
    throttled = errors.from_aws(client_error("ThrottlingException", 400), "t")
    assert throttled.delay == errors.THROTTLED_DELAY_S > errors.RETRY_DELAY_S


def test_missing_credentials_and_region_are_terminal_and_say_what_to_do() -> None:
    credentials = errors.from_aws(bx.NoCredentialsError(), "DynamoDB table t")
    assert isinstance(credentials, errors.Terminal)
    assert "IRSA or EKS Pod Identity" in credentials.message
    region = errors.from_aws(bx.NoRegionError(), "DynamoDB table t")
    assert isinstance(region, errors.Terminal)
    assert "AWS_REGION" in region.message


def test_requests_botocore_refuses_to_send_are_terminal() -> None:
    refused = bx.ParamValidationError(report="Invalid length for parameter description")
    error = errors.from_aws(refused, "AgentCore Memory m")
    assert isinstance(error, errors.Terminal)
    assert error.reason == "InvalidParameters"


def test_unreachable_endpoints_are_retried() -> None:
    error = errors.from_aws(bx.EndpointConnectionError(endpoint_url="http://x"), "t")
    assert isinstance(error, errors.Retryable)
    assert error.reason == "Unreachable"


def test_valkey_index_mismatch_and_missing_module_are_terminal() -> None:
    mismatch = errors.from_valkey(valkey_errors.IndexMismatch("ap:store", ["dim 4"]), "i")
    assert isinstance(mismatch, errors.Terminal)
    assert "FT.DROPINDEX" in mismatch.message
    no_module = errors.from_valkey(valkey_errors.no_search_module("ap:store"), "i")
    assert isinstance(no_module, errors.Terminal)
    assert no_module.reason == "NoSearchModule"


def test_an_unavailable_valkey_is_retried() -> None:
    error = errors.from_valkey(BackendUnavailable("Valkey at v:6379/0 is unreachable"), "i")
    assert isinstance(error, errors.Retryable)
    unreachable = errors.from_valkey(ConnectionRefusedError("refused"), "Valkey at v:6379/0")
    assert isinstance(unreachable, errors.Retryable)


@pytest.mark.parametrize(("status", "terminal"), [(403, True), (422, True), (409, False)])
def test_kubernetes_refusals_are_terminal_conflicts_are_not(status: int, terminal: bool) -> None:
    error = errors.from_kube(kube_errors.APIError("no", status=status, headers={}), "cm")
    assert error.terminal is terminal


def test_guarded_maps_what_the_block_raises() -> None:
    with pytest.raises(errors.Terminal) as raised, errors.guarded("aws", "S3 bucket b"):
        raise client_error("AccessDenied", 403)
    assert raised.value.message.startswith("S3 bucket b: AccessDenied")


def test_guarded_lets_other_exceptions_through() -> None:
    with pytest.raises(KeyError), errors.guarded("aws", "S3 bucket b"):
        raise KeyError("a bug")


def test_kopf_is_told_to_stop_or_to_retry_later() -> None:
    permanent = errors.to_kopf(errors.Terminal("no", reason="AccessDenied"))
    assert isinstance(permanent, kopf.PermanentError)
    temporary = errors.to_kopf(errors.Retryable("later", reason="Throttled", delay=30))
    assert isinstance(temporary, kopf.TemporaryError)
    assert temporary.delay == 30


def test_long_messages_are_cut_short() -> None:
    error = errors.Retryable("x" * 5000, reason="Error")
    assert len(error.message) == errors.MAX_DETAIL + 3
