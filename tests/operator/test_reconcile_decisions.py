"""What one pass does with storage: create, update, adopt, refuse or leave it
(:func:`...operator.reconcile.sync` after :func:`...operator.ownership.judge`), and what
deletion may remove."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agentpersistence.operator import errors, ownership, reconcile
from agentpersistence.operator.bodies import Outputs
from agentpersistence.operator.ownership import Claim

TARGET = reconcile.Target("ns", "mine", "uid-mine", 1)
MINE_CREATED = TARGET.claim("created")
THEIRS = Claim("uid-theirs", "other/theirs", "created")


@dataclass
class FakeTable:
    """A piece of storage whose state is a dict; records the verbs called."""

    state: dict[str, int] | None
    claim: Claim | None = None
    wanted: int = 1
    calls: list[str] = field(default_factory=list)
    description: str = "DynamoDB table t"
    recorded_as: tuple[str, str] = ("tableName", "t")

    async def read(self) -> dict[str, int] | None:
        self.calls.append("read")
        return self.state

    def delta(self, observed: dict[str, int]) -> list[str]:
        have = observed["ttl"]
        return [] if have == self.wanted else [f"ttl {have} (want {self.wanted})"]

    async def create(self, claim: Claim) -> dict[str, int]:
        self.calls.append("create")
        self.state, self.claim = {"ttl": self.wanted}, claim
        return self.state

    async def update(self, observed: dict[str, int]) -> dict[str, int]:
        self.calls.append("update")
        self.state = {"ttl": self.wanted}
        return self.state

    async def delete(self) -> None:
        self.calls.append("delete")

    def outputs(self, observed: dict[str, int]) -> Outputs:
        return {"tableName": "t"}

    async def read_claim(self, observed: dict[str, int]) -> Claim | None:
        return self.claim

    async def write_claim(
        self, observed: dict[str, int], claim: Claim, replacing: Claim | None
    ) -> None:
        assert replacing == self.claim
        self.calls.append(f"claim {claim.kind}")
        self.claim = claim

    async def clear_claim(self, observed: dict[str, int], claim: Claim) -> None:
        self.calls.append("unclaim")
        self.claim = None


async def found(table: FakeTable, verdict: ownership.Verdict | None) -> reconcile.Found:
    observed = await table.read()
    return reconcile.Found(table, observed, table.claim, verdict)


async def test_missing_storage_is_created_with_this_resources_claim() -> None:
    table = FakeTable(None)
    change, outputs = await reconcile.sync(await found(table, None), TARGET)
    assert change == reconcile.Change("DynamoDB table t", "Created")
    assert outputs == {"tableName": "t"}
    assert table.calls == ["read", "create"]
    assert table.claim == Claim("uid-mine", "ns/mine", "created")


async def test_owned_storage_in_sync_is_left_alone() -> None:
    table = FakeTable({"ttl": 1}, MINE_CREATED)
    change, _ = await reconcile.sync(await found(table, "ours"), TARGET)
    assert change is None
    assert table.calls == ["read"]


async def test_owned_storage_that_differs_is_updated() -> None:
    table = FakeTable({"ttl": 0}, MINE_CREATED)
    change, _ = await reconcile.sync(await found(table, "ours"), TARGET)
    assert change == reconcile.Change("DynamoDB table t", "Updated", ("ttl 0 (want 1)",))
    assert change.message == "Updated DynamoDB table t: ttl 0 (want 1)"
    assert table.calls == ["read", "update"]


async def test_adopted_storage_is_claimed_as_adopted_then_fixed() -> None:
    table = FakeTable({"ttl": 0})
    change, _ = await reconcile.sync(await found(table, "adopt"), TARGET)
    assert change is not None
    assert (change.action, change.details) == ("Adopted", ("ttl 0 (want 1)",))
    assert table.calls == ["read", "claim adopted", "update"]
    assert table.claim == TARGET.claim("adopted")


def judge(
    claim: Claim | None, *, alive: bool = True, adopt: bool = False, recorded: bool = False
) -> ownership.Verdict:
    return ownership.judge(
        "DynamoDB table t",
        claim,
        uid=TARGET.uid,
        owner_alive=alive,
        adopt_existing=adopt,
        recorded=recorded,
    )


def test_storage_claimed_by_this_resource_is_its_own() -> None:
    assert judge(MINE_CREATED) == "ours"
    assert judge(TARGET.claim("adopted"), adopt=False) == "ours"


def test_unclaimed_storage_is_adopted_only_when_asked_or_already_recorded() -> None:
    with pytest.raises(errors.Terminal) as refused:
        judge(None)
    assert refused.value.reason == "AdoptionRefused"
    assert "set spec.adoptExisting: true" in refused.value.message
    assert judge(None, adopt=True) == "adopt"
    assert judge(None, recorded=True) == "adopt"


def test_storage_another_live_resource_claims_is_refused_naming_it_even_with_adoption() -> None:
    for adopt in (False, True):
        with pytest.raises(errors.Terminal) as refused:
            judge(THEIRS, adopt=adopt, recorded=True)
        assert refused.value.reason == "OwnedByAnother"
        assert "other/theirs (uid uid-theirs)" in refused.value.message


def test_a_claim_whose_resource_is_gone_counts_as_none() -> None:
    assert judge(THEIRS, alive=False, adopt=True) == "adopt"
    with pytest.raises(errors.Terminal) as refused:
        judge(THEIRS, alive=False)
    assert "claimed by other/theirs, which no longer exists" in refused.value.message


def test_only_storage_this_resource_created_is_deletable() -> None:
    assert ownership.deletable(MINE_CREATED, TARGET.uid)
    assert not ownership.deletable(TARGET.claim("adopted"), TARGET.uid)
    assert not ownership.deletable(THEIRS, TARGET.uid)
    assert not ownership.deletable(None, TARGET.uid)


def test_claims_round_trip_through_tags_and_ignore_foreign_tags() -> None:
    tags = {**MINE_CREATED.tags(), "team": "a"}
    assert Claim.from_tags(tags) == MINE_CREATED
    assert Claim.from_tags({"team": "a"}) is None
    assert Claim.from_tags({ownership.UID_TAG: "u"}) is None


def test_storage_the_spec_stops_describing_is_named() -> None:
    before: Outputs = {"tableName": "old", "tableArn": "arn:old", "indexName": "i"}
    after: Outputs = {"tableName": "new", "indexName": "i"}
    assert reconcile.dropped(before, after) == ["tableName old"]
    assert reconcile.dropped(after, after) == []
