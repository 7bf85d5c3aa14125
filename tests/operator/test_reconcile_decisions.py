"""What one pass does with a resource: create, update, adopt or leave it
(:func:`...operator.reconcile.sync`), and what deletion may remove."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentpersistence.operator import reconcile
from agentpersistence.operator.bodies import Outputs


@dataclass
class FakeTable:
    """A resource whose state is a dict; records the verbs called."""

    state: dict[str, int] | None
    wanted: int = 1
    calls: list[str] = field(default_factory=list)
    description: str = "DynamoDB table t"
    claim: tuple[str, str] = ("tableName", "t")

    async def read(self) -> dict[str, int] | None:
        self.calls.append("read")
        return self.state

    def delta(self, observed: dict[str, int]) -> list[str]:
        have = observed["ttl"]
        return [] if have == self.wanted else [f"ttl {have} (want {self.wanted})"]

    async def create(self) -> dict[str, int]:
        self.calls.append("create")
        self.state = {"ttl": self.wanted}
        return self.state

    async def update(self, observed: dict[str, int]) -> dict[str, int]:
        self.calls.append("update")
        self.state = {"ttl": self.wanted}
        return self.state

    async def delete(self) -> None:
        self.calls.append("delete")

    def outputs(self, observed: dict[str, int]) -> Outputs:
        return {"tableName": "t"}


KNOWN: Outputs = {"tableName": "t"}


async def test_a_missing_resource_is_created() -> None:
    table = FakeTable(None)
    change, outputs = await reconcile.sync(table, Outputs())
    assert change == reconcile.Change("DynamoDB table t", "Created")
    assert outputs == KNOWN
    assert table.calls == ["read", "create"]


async def test_a_known_resource_in_sync_is_left_alone() -> None:
    table = FakeTable({"ttl": 1})
    change, outputs = await reconcile.sync(table, KNOWN)
    assert change is None
    assert outputs == KNOWN
    assert table.calls == ["read"]


async def test_a_known_resource_that_differs_is_updated() -> None:
    table = FakeTable({"ttl": 0})
    change, _ = await reconcile.sync(table, KNOWN)
    assert change == reconcile.Change("DynamoDB table t", "Updated", ("ttl 0 (want 1)",))
    assert change.message == "Updated DynamoDB table t: ttl 0 (want 1)"
    assert table.calls == ["read", "update"]


async def test_an_unknown_existing_resource_is_adopted_and_fixed() -> None:
    table = FakeTable({"ttl": 0})
    change, outputs = await reconcile.sync(table, Outputs())
    assert change is not None
    assert (change.action, change.details) == ("Adopted", ("ttl 0 (want 1)",))
    assert outputs == KNOWN
    untouched = FakeTable({"ttl": 1})
    adopted, _ = await reconcile.sync(untouched, Outputs())
    assert adopted == reconcile.Change("DynamoDB table t", "Adopted")
    assert untouched.calls == ["read"]


def test_storage_the_spec_stops_describing_is_named() -> None:
    before: Outputs = {"tableName": "old", "tableArn": "arn:old", "indexName": "i"}
    after: Outputs = {"tableName": "new", "indexName": "i"}
    assert reconcile.dropped(before, after) == ["tableName old"]
    assert reconcile.dropped(after, after) == []
