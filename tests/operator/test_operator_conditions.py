"""Ready, Synced and Terminal follow what a pass found (:mod:`...operator.conditions`)."""

from __future__ import annotations

from agentpersistence.operator import conditions
from agentpersistence.operator.bodies import Condition
from agentpersistence.operator.errors import Retryable, Terminal


def by_type(found: list[Condition]) -> dict[str, Condition]:
    return {c["type"]: c for c in found}


def aged(found: list[Condition]) -> list[Condition]:
    """The same conditions, as if written long ago."""
    return [{**c, "lastTransitionTime": "2020-01-01T00:00:00Z"} for c in found]


def test_a_successful_pass_makes_everything_ready_for_its_generation() -> None:
    found = by_type(conditions.reconciled([], 3, "in sync: DynamoDB table t"))
    assert {k: c["status"] for k, c in found.items()} == {
        "Ready": "True",
        "Synced": "True",
        "Terminal": "False",
    }
    assert {c["observedGeneration"] for c in found.values()} == {3}
    assert found["Ready"]["message"] == "in sync: DynamoDB table t"


def test_conditions_are_ordered_ready_synced_terminal() -> None:
    found = conditions.reconciled([], 1, "")
    assert [c["type"] for c in found] == ["Ready", "Synced", "Terminal"]


def test_an_unchanged_status_keeps_its_transition_time() -> None:
    before = aged(conditions.reconciled([], 1, "ok"))
    after = by_type(conditions.reconciled(before, 2, "ok"))
    assert after["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert after["Ready"]["observedGeneration"] == 2


def test_a_changed_status_gets_a_new_transition_time() -> None:
    before = aged(conditions.reconciled([], 1, "ok"))
    error = Retryable("S3 bucket b: SlowDown", reason="Throttled")
    after = by_type(conditions.failed(before, 2, error))
    assert after["Synced"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert after["Synced"]["reason"] == "Throttled"


def test_a_retryable_failure_is_not_terminal_and_keeps_ready() -> None:
    before = conditions.reconciled([], 1, "ok")
    found = by_type(conditions.failed(before, 2, Retryable("later", reason="Throttled")))
    assert found["Ready"]["status"] == "True"  # the storage is still there
    assert found["Synced"]["status"] == "False"
    assert found["Terminal"]["status"] == "False"
    assert found["Terminal"]["reason"] == conditions.NO_ERROR


def test_a_terminal_failure_before_ready_says_why_everywhere() -> None:
    error = Terminal("table t has keys id (HASH)", reason="TableNotAdoptable")
    found = by_type(conditions.failed([], 1, error))
    assert {c["status"] for c in (found["Ready"], found["Synced"])} == {"False"}
    assert found["Terminal"]["status"] == "True"
    assert {c["reason"] for c in found.values()} == {"TableNotAdoptable"}
    assert found["Terminal"]["message"] == "table t has keys id (HASH)"


def test_drift_unsyncs_and_a_missing_resource_unreadies() -> None:
    before = conditions.reconciled([], 1, "ok")
    changed = by_type(conditions.drifted(before, 1, ["bucket b lacks rule r"], missing=False))
    assert changed["Synced"]["status"] == "False"
    assert changed["Synced"]["reason"] == conditions.DRIFTED
    assert changed["Synced"]["message"] == "bucket b lacks rule r"
    assert changed["Ready"]["status"] == "True"
    gone = by_type(conditions.drifted(before, 1, ["table t does not exist"], missing=True))
    assert gone["Ready"]["status"] == "False"
    assert gone["Ready"]["reason"] == conditions.MISSING


def test_a_clean_drift_check_undoes_only_what_drift_reported() -> None:
    drifted = conditions.drifted(conditions.reconciled([], 1, "ok"), 1, ["x"], missing=True)
    found = by_type(conditions.in_sync(drifted, 1))
    assert (found["Ready"]["status"], found["Synced"]["status"]) == ("True", "True")
    failed = conditions.failed([], 1, Retryable("down", reason="ValkeyUnavailable"))
    assert conditions.in_sync(failed, 1) == failed  # an error is the reconcile's to clear
