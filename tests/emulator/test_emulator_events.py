"""Short-term memory through boto3's data-plane client: events, their order, filters,
branches, pagination, idempotent creation, sessions and actors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rig.emulator import EmulatorProcess, conversational, error_of, error_reason

BASE = datetime(2025, 1, 1, tzinfo=UTC)
ACTOR, SESSION = "tenant:user/1", "session-1"  # ":" and "/" travel percent-encoded in the URI


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def put(data: Any, memory_id: str, seconds: float, text: str = "hi", **extra: Any) -> Any:
    """An event in the test's session; its eventId."""
    event = data.create_event(
        memoryId=memory_id,
        actorId=extra.pop("actorId", ACTOR),
        sessionId=extra.pop("sessionId", SESSION),
        eventTimestamp=at(seconds),
        payload=extra.pop("payload", [conversational(text)]),
        **extra,
    )["event"]
    return event["eventId"]


def listed(data: Any, memory_id: str, **params: Any) -> list[str]:
    """The event ids ListEvents answers (one page)."""
    events = data.list_events(memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, **params)
    return [event["eventId"] for event in events["events"]]


def test_an_event_is_created_read_and_deleted(data: Any, memory_id: str) -> None:
    when = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    payload = [
        conversational("I like tea"),
        {"blob": {"any": ["json", 1, None]}},
        {"json": {"content": {"tool": "search", "args": {"q": "tea"}}}},
    ]
    created = data.create_event(
        memoryId=memory_id,
        actorId=ACTOR,
        sessionId=SESSION,
        eventTimestamp=when,
        payload=payload,
        metadata={"kind": {"stringValue": "chat"}},
        branch={"name": "main"},
    )["event"]
    assert re.fullmatch(r"1741064767123#[a-fA-F0-9]+", created["eventId"])
    assert created["eventTimestamp"] == when  # kept to the microsecond
    assert created["payload"] == payload
    fetched = data.get_event(
        memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, eventId=created["eventId"]
    )["event"]
    assert fetched == created
    deleted = data.delete_event(
        memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, eventId=created["eventId"]
    )
    assert deleted["eventId"] == created["eventId"]
    for call in (data.get_event, data.delete_event):
        with pytest.raises(ClientError) as raised:
            call(memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, eventId=created["eventId"])
        assert error_of(raised)[:2] == (404, "ResourceNotFoundException")


def test_an_event_is_found_only_in_its_own_session(data: Any, memory_id: str) -> None:
    event_id = put(data, memory_id, 1)
    with pytest.raises(ClientError) as raised:
        data.get_event(memoryId=memory_id, actorId=ACTOR, sessionId="other", eventId=event_id)
    assert error_of(raised)[:2] == (404, "ResourceNotFoundException")


def test_without_a_session_id_the_event_gets_one(data: Any, memory_id: str) -> None:
    event = data.create_event(
        memoryId=memory_id, actorId="solo", eventTimestamp=BASE, payload=[conversational("x")]
    )["event"]
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9-_]*", event["sessionId"])
    events = data.list_events(memoryId=memory_id, actorId="solo", sessionId=event["sessionId"])
    assert [e["eventId"] for e in events["events"]] == [event["eventId"]]


def test_a_memory_arn_works_as_the_memory_id(
    agentcore_emulator: EmulatorProcess, data: Any, memory_id: str
) -> None:
    arn = f"arn:aws:bedrock-agentcore:us-east-1:123456789012:memory/{memory_id}"
    event_id = put(data, arn, 1)
    assert listed(data, memory_id) == [event_id]


def test_a_repeated_client_token_creates_nothing_more(data: Any, memory_id: str) -> None:
    """A client retrying after a lost response sends the same token: it gets the original
    event back and no duplicate exists."""
    first = put(data, memory_id, 1, "once", clientToken="retry-1")
    again = put(data, memory_id, 1, "once", clientToken="retry-1")
    assert again == first
    assert listed(data, memory_id) == [first]
    other = put(data, memory_id, 1, "once", clientToken="retry-2")
    assert listed(data, memory_id) == [other, first]


def test_a_client_token_reused_with_other_parameters_is_refused(data: Any, memory_id: str) -> None:
    put(data, memory_id, 1, "first", clientToken="reused")
    with pytest.raises(ClientError) as raised:
        put(data, memory_id, 1, "second", clientToken="reused")
    assert error_of(raised)[:2] == (400, "ValidationException")
    assert error_reason(raised) == "IdempotentParameterMismatchException"
    assert len(listed(data, memory_id)) == 1


def test_events_are_listed_newest_first_ties_by_creation(data: Any, memory_id: str) -> None:
    middle = put(data, memory_id, 20)
    oldest = put(data, memory_id, 10)
    newest = put(data, memory_id, 30)
    tie_first = put(data, memory_id, 25)
    tie_second = put(data, memory_id, 25)
    assert listed(data, memory_id) == [newest, tie_second, tie_first, middle, oldest]


def test_payloads_can_be_left_out(data: Any, memory_id: str) -> None:
    put(data, memory_id, 1, "secret")
    (with_payload,) = data.list_events(memoryId=memory_id, actorId=ACTOR, sessionId=SESSION)[
        "events"
    ]
    assert with_payload["payload"] == [conversational("secret")]
    (without,) = data.list_events(
        memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, includePayloads=False
    )["events"]
    assert without["payload"] == []
    assert without["eventId"] == with_payload["eventId"]


def test_metadata_filters_are_anded(data: Any, memory_id: str) -> None:
    def tags(**values: str) -> dict[str, Any]:
        return {k: {"stringValue": v} for k, v in values.items()}

    red_big = put(data, memory_id, 1, metadata=tags(color="red", size="big"))
    red = put(data, memory_id, 2, metadata=tags(color="red"))
    blue_big = put(data, memory_id, 3, metadata=tags(color="blue", size="big"))
    plain = put(data, memory_id, 4)

    def equals(key: str, value: str) -> dict[str, Any]:
        right = {"metadataValue": {"stringValue": value}}
        return {"left": {"metadataKey": key}, "operator": "EQUALS_TO", "right": right}

    def exists(key: str, operator: str = "EXISTS") -> dict[str, Any]:
        return {"left": {"metadataKey": key}, "operator": operator}

    def matching(*expressions: dict[str, Any]) -> list[str]:
        return listed(data, memory_id, filter={"eventMetadata": list(expressions)})

    assert matching(equals("color", "red")) == [red, red_big]
    assert matching(equals("color", "red"), exists("size")) == [red_big]
    assert matching(exists("size", "NOT_EXISTS")) == [plain, red]
    assert matching(equals("color", "red"), equals("size", "big"), exists("x", "NOT_EXISTS")) == [
        red_big
    ]
    assert matching(equals("color", "green")) == []
    assert blue_big in matching(exists("color"))


def test_branches_follow_their_parent_chain(data: Any, memory_id: str) -> None:
    m1, m2 = put(data, memory_id, 1), put(data, memory_id, 2)
    m3 = put(data, memory_id, 5)  # on main after the fork: not in the branch's history
    a1 = put(data, memory_id, 3, branch={"name": "alt", "rootEventId": m2})
    a2 = put(data, memory_id, 4, branch={"name": "alt"})
    b1 = put(data, memory_id, 6, branch={"name": "deeper", "rootEventId": a1})

    def on(name: str, parents: bool = False) -> list[str]:
        branch = {"name": name, "includeParentBranches": parents}
        return listed(data, memory_id, filter={"branch": branch})

    assert on("main") == [m3, m2, m1]
    assert on("alt") == [a2, a1]
    assert on("alt", parents=True) == [a2, a1, m2, m1]
    assert on("deeper", parents=True) == [b1, a1, m2, m1]
    assert on("main", parents=True) == [m3, m2, m1]
    assert on("nowhere", parents=True) == []


def test_a_branch_root_must_exist_in_the_same_session(data: Any, memory_id: str) -> None:
    elsewhere = put(data, memory_id, 1, sessionId="another-session")
    with pytest.raises(ClientError) as raised:
        put(data, memory_id, 2, branch={"name": "alt", "rootEventId": elsewhere})
    assert error_of(raised)[:2] == (400, "ValidationException")
    assert error_reason(raised) == "EventInOtherSession"
    with pytest.raises(ClientError) as raised:
        put(data, memory_id, 2, branch={"name": "alt", "rootEventId": "1#abc"})
    assert error_of(raised)[:2] == (404, "ResourceNotFoundException")


def test_pages_stay_consistent_while_events_are_added(data: Any, memory_id: str) -> None:
    first_five = [put(data, memory_id, t) for t in (1, 2, 3, 4, 5)][::-1]  # newest first
    page = data.list_events(memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, maxResults=2)
    seen = [e["eventId"] for e in page["events"]]
    put(data, memory_id, 10)  # newer than everything listed so far
    put(data, memory_id, 4.5)  # inside the part already listed
    while "nextToken" in page:
        page = data.list_events(
            memoryId=memory_id,
            actorId=ACTOR,
            sessionId=SESSION,
            maxResults=2,
            nextToken=page["nextToken"],
        )
        assert len(page["events"]) <= 2
        seen += [e["eventId"] for e in page["events"]]
    assert seen == first_five


def test_the_default_page_is_twenty_events(data: Any, memory_id: str) -> None:
    for t in range(21):
        put(data, memory_id, t)
    page = data.list_events(memoryId=memory_id, actorId=ACTOR, sessionId=SESSION)
    assert len(page["events"]) == 20
    assert "nextToken" in page
    rest = data.list_events(
        memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, nextToken=page["nextToken"]
    )
    assert len(rest["events"]) == 1
    assert "nextToken" not in rest


def test_a_bad_next_token_is_refused(data: Any, memory_id: str) -> None:
    for t in range(3):
        put(data, memory_id, t)
    page = data.list_events(memoryId=memory_id, actorId=ACTOR, sessionId=SESSION, maxResults=1)
    for token, session in (("not-a-token", SESSION), (page["nextToken"], "another-session")):
        with pytest.raises(ClientError) as raised:
            data.list_events(memoryId=memory_id, actorId=ACTOR, sessionId=session, nextToken=token)
        assert error_of(raised)[:2] == (400, "ValidationException")


def test_sessions_are_listed_per_actor_and_outlive_their_events(data: Any, memory_id: str) -> None:
    put(data, memory_id, 1, sessionId="s-old")
    emptied = put(data, memory_id, 2, sessionId="s-emptied")
    put(data, memory_id, 3, sessionId="s-new")
    put(data, memory_id, 4, actorId="someone-else", sessionId="theirs")
    data.delete_event(memoryId=memory_id, actorId=ACTOR, sessionId="s-emptied", eventId=emptied)

    def sessions(**params: Any) -> list[str]:
        answer = data.list_sessions(memoryId=memory_id, actorId=ACTOR, **params)
        for summary in answer["sessionSummaries"]:
            assert summary["actorId"] == ACTOR
            assert isinstance(summary["createdAt"], datetime)
        return [s["sessionId"] for s in answer["sessionSummaries"]]

    assert sessions() == ["s-new", "s-emptied", "s-old"]
    assert sessions(filter={"eventFilter": "HAS_EVENTS"}) == ["s-new", "s-old"]
    first = data.list_sessions(memoryId=memory_id, actorId=ACTOR, maxResults=2)
    assert [s["sessionId"] for s in first["sessionSummaries"]] == ["s-new", "s-emptied"]
    assert sessions(nextToken=first["nextToken"]) == ["s-old"]


def test_actors_with_sessions_are_listed_in_pages(data: Any, memory_id: str) -> None:
    for actor in ("ann", "bob", "cy"):
        put(data, memory_id, 1, actorId=actor, sessionId="s")
    put(data, memory_id, 2, actorId="ann", sessionId="t")
    first = data.list_actors(memoryId=memory_id, maxResults=2)
    rest = data.list_actors(memoryId=memory_id, nextToken=first["nextToken"])
    actors = [a["actorId"] for a in first["actorSummaries"] + rest["actorSummaries"]]
    assert actors == ["cy", "bob", "ann"]
    assert "nextToken" not in rest
