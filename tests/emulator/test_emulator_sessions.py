"""Bedrock Agent Runtime sessions on the emulator, through boto3: the lifecycle ACTIVE → ENDED
→ deleted, what an ended or expired session refuses, invocations and their steps (payloads
round trip, newest first, pages), and session tags beside memory tags at the same path."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from agentpersistence.emulator.errors import ApiError
from agentpersistence.emulator.sessions import SessionStore
from agentpersistence.emulator.state import Settings, State
from rig.emulator import AGENT_RUNTIME, CONTROL, EmulatorProcess, error_of, unique_name

UUID = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}")
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"
BASE = datetime(2025, 3, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n\x00\x01\x02\xff"


@pytest.fixture
def runtime(agentcore_emulator: EmulatorProcess) -> Any:
    return agentcore_emulator.client(AGENT_RUNTIME)


@pytest.fixture
def session_id(runtime: Any) -> str:
    created: str = runtime.create_session()["sessionId"]
    return created


def refused(call: Any, **params: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return error_of(raised)


def text_step(runtime: Any, session_id: str, invocation_id: str, text: str, **more: Any) -> str:
    step_id: str = runtime.put_invocation_step(
        sessionIdentifier=session_id,
        invocationIdentifier=invocation_id,
        invocationStepTime=more.pop("when", BASE),
        payload={"contentBlocks": [{"text": text}]},
        **more,
    )["invocationStepId"]
    return step_id


def new_invocation(runtime: Any, session_id: str) -> str:
    invocation_id: str = runtime.create_invocation(sessionIdentifier=session_id)["invocationId"]
    return invocation_id


# --- lifecycle ------------------------------------------------------------------------------


def test_a_session_is_created_active_and_answers_its_settings(runtime: Any) -> None:
    created = runtime.create_session(sessionMetadata={"user": "u1"}, encryptionKeyArn=KEY_ARN)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert UUID.fullmatch(created["sessionId"])
    assert created["sessionArn"] == (
        f"arn:aws:bedrock:us-east-1:123456789012:session/{created['sessionId']}"
    )
    assert created["sessionStatus"] == "ACTIVE"
    for identifier in (created["sessionId"], created["sessionArn"]):
        got = runtime.get_session(sessionIdentifier=identifier)
        assert got["sessionStatus"] == "ACTIVE"
        assert got["sessionMetadata"] == {"user": "u1"}
        assert got["encryptionKeyArn"] == KEY_ARN
        assert got["createdAt"] == created["createdAt"]


def test_update_replaces_the_metadata(runtime: Any, session_id: str) -> None:
    runtime.update_session(sessionIdentifier=session_id, sessionMetadata={"a": "1"})
    updated = runtime.update_session(sessionIdentifier=session_id, sessionMetadata={"b": "2"})
    assert updated["sessionStatus"] == "ACTIVE"
    assert updated["lastUpdatedAt"] >= updated["createdAt"]
    assert runtime.get_session(sessionIdentifier=session_id)["sessionMetadata"] == {"b": "2"}


def test_an_ended_session_keeps_its_content_and_refuses_additions(
    runtime: Any, session_id: str
) -> None:
    invocation_id = new_invocation(runtime, session_id)
    step_id = text_step(runtime, session_id, invocation_id, "before the end")
    ended = runtime.end_session(sessionIdentifier=session_id)
    assert (ended["sessionId"], ended["sessionStatus"]) == (session_id, "ENDED")
    assert runtime.end_session(sessionIdentifier=session_id)["sessionStatus"] == "ENDED"
    assert runtime.get_session(sessionIdentifier=session_id)["sessionStatus"] == "ENDED"

    for call, params in (
        (runtime.create_invocation, {}),
        (runtime.update_session, {"sessionMetadata": {"k": "v"}}),
        (
            runtime.put_invocation_step,
            {
                "invocationIdentifier": invocation_id,
                "invocationStepTime": BASE,
                "payload": {"contentBlocks": [{"text": "after"}]},
            },
        ),
    ):
        status, code, message = refused(call, sessionIdentifier=session_id, **params)
        assert (status, code) == (409, "ConflictException")
        assert "ENDED" in message

    step = runtime.get_invocation_step(
        sessionIdentifier=session_id, invocationIdentifier=invocation_id, invocationStepId=step_id
    )["invocationStep"]
    assert step["payload"] == {"contentBlocks": [{"text": "before the end"}]}
    listed = runtime.list_invocation_steps(sessionIdentifier=session_id)
    assert [s["invocationStepId"] for s in listed["invocationStepSummaries"]] == [step_id]


def test_only_a_session_that_is_not_active_can_be_deleted(runtime: Any, session_id: str) -> None:
    status, code, message = refused(runtime.delete_session, sessionIdentifier=session_id)
    assert (status, code) == (409, "ConflictException")
    assert "EndSession" in message
    runtime.end_session(sessionIdentifier=session_id)
    runtime.delete_session(sessionIdentifier=session_id)
    for call in (runtime.get_session, runtime.delete_session, runtime.end_session):
        status, code, _ = refused(call, sessionIdentifier=session_id)
        assert (status, code) == (404, "ResourceNotFoundException")


def test_an_unknown_or_malformed_session_is_refused(runtime: Any) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert refused(runtime.get_session, sessionIdentifier=unknown)[:2] == (
        404,
        "ResourceNotFoundException",
    )
    status, code, message = refused(runtime.get_session, sessionIdentifier="not-a-uuid")
    assert (status, code) == (400, "ValidationException")
    assert "sessionIdentifier" in message


def test_sessions_expire_when_left_unmodified() -> None:
    """Expiry is read from the clock when asked: nothing runs on a timer."""
    now = [1000.0]
    state = State(Settings(session_expiry_seconds=60), clock=lambda: now[0])
    store: SessionStore = state.sessions
    session_id = store.create_session({})["sessionId"]
    other_id = store.create_session({})["sessionId"]
    now[0] += 30
    store.create_invocation({"sessionIdentifier": other_id})  # a change keeps it ACTIVE
    now[0] += 30
    assert store.get_session({"sessionIdentifier": session_id})["sessionStatus"] == "EXPIRED"
    assert store.get_session({"sessionIdentifier": other_id})["sessionStatus"] == "ACTIVE"
    for call in (store.create_invocation, store.end_session):
        with pytest.raises(ApiError) as raised:
            call({"sessionIdentifier": session_id})
        assert raised.value.code == "ConflictException"
    store.delete_session({"sessionIdentifier": session_id})
    listed = store.list_sessions({})["sessionSummaries"]
    assert [s["sessionId"] for s in listed] == [other_id]


def test_list_sessions_pages_newest_first(runtime: Any) -> None:
    mine = [runtime.create_session()["sessionId"] for _ in range(5)]
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = runtime.list_sessions(maxResults=2, **token)
        assert len(page["sessionSummaries"]) <= 2
        seen += [s["sessionId"] for s in page["sessionSummaries"]]
        if "nextToken" not in page:
            break
        token = {"nextToken": page["nextToken"]}
    assert [s for s in seen if s in mine] == mine[::-1]
    assert seen[:5] == mine[::-1]  # nothing else was created meanwhile
    status, code, _ = refused(runtime.list_sessions, nextToken="bogus")
    assert (status, code) == (400, "ValidationException")


# --- invocations and steps ------------------------------------------------------------------


def test_invocation_ids_are_given_or_generated_and_unique(runtime: Any, session_id: str) -> None:
    given = "11111111-2222-4333-8444-555555555555"
    created = runtime.create_invocation(sessionIdentifier=session_id, invocationId=given)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (created["invocationId"], created["sessionId"]) == (given, session_id)
    generated = new_invocation(runtime, session_id)
    assert UUID.fullmatch(generated)
    status, code, _ = refused(
        runtime.create_invocation, sessionIdentifier=session_id, invocationId=given
    )
    assert (status, code) == (409, "ConflictException")
    first = runtime.list_invocations(sessionIdentifier=session_id, maxResults=1)
    assert [i["invocationId"] for i in first["invocationSummaries"]] == [generated]
    rest = runtime.list_invocations(sessionIdentifier=session_id, nextToken=first["nextToken"])
    assert [i["invocationId"] for i in rest["invocationSummaries"]] == [given]
    assert "nextToken" not in rest


def test_step_payloads_round_trip_text_and_image_bytes(runtime: Any, session_id: str) -> None:
    invocation_id = new_invocation(runtime, session_id)
    payload = {
        "contentBlocks": [
            {"text": "a picture"},
            {"image": {"format": "png", "source": {"bytes": PNG}}},
            {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bkt/a.jpg"}}}},
        ]
    }
    step_of = {
        "sessionIdentifier": session_id,
        "invocationIdentifier": invocation_id,
        "invocationStepId": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
    }
    given = step_of["invocationStepId"]
    put = runtime.put_invocation_step(**step_of, invocationStepTime=BASE, payload=payload)
    assert put["invocationStepId"] == given
    step = runtime.get_invocation_step(**step_of)["invocationStep"]
    assert step == {
        "invocationId": invocation_id,
        "invocationStepId": given,
        "invocationStepTime": BASE,
        "payload": payload,
        "sessionId": session_id,
    }
    generated = text_step(runtime, session_id, invocation_id, "no id given")
    assert UUID.fullmatch(generated)


def test_steps_list_newest_first_by_step_time_per_invocation(runtime: Any, session_id: str) -> None:
    one, two = new_invocation(runtime, session_id), new_invocation(runtime, session_id)
    late = text_step(runtime, session_id, one, "late", when=BASE + timedelta(minutes=2))
    early = text_step(runtime, session_id, one, "early", when=BASE)
    tie = text_step(runtime, session_id, two, "tie", when=BASE)
    steps: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = runtime.list_invocation_steps(sessionIdentifier=session_id, maxResults=2, **token)
        steps += [s["invocationStepId"] for s in page["invocationStepSummaries"]]
        if "nextToken" not in page:
            break
        token = {"nextToken": page["nextToken"]}
    assert steps == [late, tie, early]  # equal times: the later write first
    only_one = runtime.list_invocation_steps(sessionIdentifier=session_id, invocationIdentifier=one)
    assert [s["invocationStepId"] for s in only_one["invocationStepSummaries"]] == [late, early]
    unknown = "00000000-0000-4000-8000-000000000000"
    status, code, _ = refused(
        runtime.list_invocation_steps, sessionIdentifier=session_id, invocationIdentifier=unknown
    )
    assert (status, code) == (404, "ResourceNotFoundException")


def test_a_step_id_is_replaced_in_its_invocation_and_refused_in_another(
    runtime: Any, session_id: str
) -> None:
    one, two = new_invocation(runtime, session_id), new_invocation(runtime, session_id)
    step_id = text_step(runtime, session_id, one, "first")
    assert text_step(runtime, session_id, one, "second", invocationStepId=step_id) == step_id
    got = runtime.get_invocation_step(
        sessionIdentifier=session_id, invocationIdentifier=one, invocationStepId=step_id
    )
    assert got["invocationStep"]["payload"] == {"contentBlocks": [{"text": "second"}]}
    with pytest.raises(ClientError) as raised:
        text_step(runtime, session_id, two, "elsewhere", invocationStepId=step_id)
    assert error_of(raised)[:2] == (409, "ConflictException")
    status, code, _ = refused(
        runtime.get_invocation_step,
        sessionIdentifier=session_id,
        invocationIdentifier=two,
        invocationStepId=step_id,
    )
    assert (status, code) == (404, "ResourceNotFoundException")


# --- tags -----------------------------------------------------------------------------------


def test_session_and_memory_tags_share_a_path_and_stay_apart(
    agentcore_emulator: EmulatorProcess, runtime: Any
) -> None:
    control = agentcore_emulator.client(CONTROL)
    memory = control.create_memory(
        name=unique_name("tags"), eventExpiryDuration=7, tags={"kind": "memory"}
    )["memory"]
    session = runtime.create_session(tags={"kind": "session"})
    arn = session["sessionArn"]
    assert runtime.list_tags_for_resource(resourceArn=arn)["tags"] == {"kind": "session"}
    assert control.list_tags_for_resource(resourceArn=memory["arn"])["tags"] == {"kind": "memory"}

    runtime.tag_resource(resourceArn=arn, tags={"cost": "c1"})
    runtime.untag_resource(resourceArn=arn, tagKeys=["kind"])
    assert runtime.list_tags_for_resource(resourceArn=arn)["tags"] == {"cost": "c1"}
    assert control.list_tags_for_resource(resourceArn=memory["arn"])["tags"] == {"kind": "memory"}
    runtime.untag_resource(resourceArn=arn, tagKeys=["cost"])
    assert "tags" not in runtime.list_tags_for_resource(resourceArn=arn)

    # Each service knows only its own resources.
    status, code, _ = refused(runtime.list_tags_for_resource, resourceArn=memory["arn"])
    assert (status, code) == (400, "ValidationException")
    status, code, _ = refused(control.list_tags_for_resource, resourceArn=arn)
    assert status in (400, 404)
    gone = arn.replace(session["sessionId"], "00000000-0000-4000-8000-000000000000")
    status, code, _ = refused(runtime.tag_resource, resourceArn=gone, tags={"a": "b"})
    assert (status, code) == (404, "ResourceNotFoundException")


def test_the_standard_variable_points_boto3_at_the_emulator(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3  # type: ignore[import-untyped]  # untyped (no boto3-stubs)

    for name, value in agentcore_emulator.env().items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client(AGENT_RUNTIME)
    created = client.create_session()
    assert client.get_session(sessionIdentifier=created["sessionId"])["sessionStatus"] == "ACTIVE"
