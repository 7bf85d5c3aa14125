"""Routing by (signing service, method, requestUri template) across the AgentCore services and
Bedrock Agent Runtime: every served operation reachable, literals before labels, clashes
refused at start-up, ``/tags/{resourceArn}`` told apart by the signing service."""

from __future__ import annotations

import re

import pytest
from botocore.model import OperationModel, ServiceModel

from agentpersistence.emulator.model import (
    AGENT_RUNTIME,
    CONTROL_PLANE,
    DATA_PLANE,
    RouteClash,
    RouteTable,
    load_services,
    operation_routes,
    signed_routes,
)
from agentpersistence.emulator.operations import HANDLERS

MEMORY_ID = "mem_a-AbCdEf1234"


@pytest.fixture(scope="module")
def models() -> dict[str, ServiceModel]:
    return load_services([DATA_PLANE, CONTROL_PLANE, AGENT_RUNTIME])


@pytest.fixture(scope="module")
def by_signer(models: dict[str, ServiceModel]) -> dict[str, RouteTable[OperationModel]]:
    return signed_routes(models[s].operation_model(n) for s, n in HANDLERS)


@pytest.fixture(scope="module")
def served(by_signer: dict[str, RouteTable[OperationModel]]) -> RouteTable[OperationModel]:
    """The AgentCore routes (both planes sign as ``bedrock-agentcore``)."""
    return by_signer[DATA_PLANE]


def sample_path(uri: str) -> str:
    return re.sub(r"\{[^}]+\}", "Sample-1234567890", uri)


def test_every_served_operation_is_reached_by_its_own_template(
    models: dict[str, ServiceModel], by_signer: dict[str, RouteTable[OperationModel]]
) -> None:
    assert sorted(by_signer) == ["bedrock", "bedrock-agentcore"]
    assert sum(len(table) for table in by_signer.values()) == len(HANDLERS)
    for service, name in HANDLERS:
        model = models[service]
        http = model.operation_model(name).http
        table = by_signer[model.signing_name]
        found = table.match(http["method"], sample_path(http["requestUri"]), {})
        assert found is not None, name
        assert (found.target.service_model.service_name, found.target.name) == (service, name)


def test_both_agentcore_services_operations_do_not_clash(
    models: dict[str, ServiceModel],
) -> None:
    """All 200+ operations of the two AgentCore models (one signer) could share one port."""
    agentcore = [models[DATA_PLANE], models[CONTROL_PLANE]]
    table = operation_routes(
        model.operation_model(name) for model in agentcore for name in model.operation_names
    )
    assert len(table) == sum(len(m.operation_names) for m in agentcore)


def test_tag_routes_are_shared_and_told_apart_by_the_signing_service(
    models: dict[str, ServiceModel], by_signer: dict[str, RouteTable[OperationModel]]
) -> None:
    """Both services tag at ``/tags/{resourceArn}``: in one table they clash; keyed by the
    signing service each request finds its own service's operation."""
    tagging = ("TagResource", "UntagResource", "ListTagsForResource")
    with pytest.raises(RouteClash, match=r"/tags/\{resourceArn\}"):
        operation_routes(
            models[service].operation_model(name)
            for service in (CONTROL_PLANE, AGENT_RUNTIME)
            for name in tagging
        )
    path = "/tags/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Asession%2Fx"
    for signer, service in (("bedrock-agentcore", CONTROL_PLANE), ("bedrock", AGENT_RUNTIME)):
        found = by_signer[signer].match("GET", path, {})
        assert found is not None
        assert found.target.service_model.service_name == service
        assert found.target.name == "ListTagsForResource"


def test_every_operation_of_the_three_models_routes_by_signer(
    models: dict[str, ServiceModel],
) -> None:
    """All the operations of the three models could share one port, keyed by signer."""
    tables = signed_routes(
        model.operation_model(name) for model in models.values() for name in model.operation_names
    )
    assert sum(len(table) for table in tables.values()) == sum(
        len(m.operation_names) for m in models.values()
    )


def test_a_literal_segment_wins_over_a_label() -> None:
    table: RouteTable[str] = RouteTable()
    table.add("GET", "/things/{id}", "label")
    table.add("GET", "/things/special", "literal")
    table.add("GET", "/a/{x}/c", "late literal")
    table.add("GET", "/a/b/{y}", "early literal")
    assert table.clashes() == []
    special = table.match("GET", "/things/special", {})
    other = table.match("GET", "/things/other", {})
    assert special is not None
    assert special.target == "literal"
    assert other is not None
    assert (other.target, other.labels) == ("label", {"id": "other"})
    both = table.match("GET", "/a/b/c", {})
    assert both is not None
    assert both.target == "early literal"
    assert table.match("POST", "/things/other", {}) is None
    assert table.match("GET", "/things/", {}) is None  # a label is never empty


def test_templates_that_fit_the_same_requests_clash() -> None:
    table: RouteTable[str] = RouteTable()
    table.add("GET", "/things/{id}", "one")
    table.add("GET", "/things/{name}", "two")
    table.add("PUT", "/things/{name}", "three")
    assert table.clashes() == [("GET /things/{id}", "GET /things/{name}")]
    with pytest.raises(RouteClash, match=r"GET /things/\{id\} and GET /things/\{name\}"):
        table.checked()


def test_greedy_labels_and_literal_query_keys() -> None:
    table: RouteTable[str] = RouteTable()
    table.add("GET", "/files/{path+}", "file")
    table.add("GET", "/things/{id}?tagging", "tags")
    found = table.match("GET", "/files/a/b%2Fc/d", {})
    assert found is not None
    assert found.labels == {"path": "a/b/c/d"}
    assert table.match("GET", "/things/x", {}) is None
    tags = table.match("GET", "/things/x", {"tagging": [""]})
    assert tags is not None
    assert tags.target == "tags"


def test_labels_are_percent_decoded_after_splitting(served: RouteTable[OperationModel]) -> None:
    """An actor id may hold ``/`` and a memory id may be an ARN: botocore sends them
    percent-encoded inside one segment."""
    arn = f"arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Amemory%2F{MEMORY_ID}"
    found = served.match("POST", f"/memories/{arn}/actor/tenant%3Auser%2F1/sessions", {})
    assert found is not None
    assert found.target.name == "ListSessions"
    assert found.labels == {
        "memoryId": f"arn:aws:bedrock-agentcore:us-east-1:123456789012:memory/{MEMORY_ID}",
        "actorId": "tenant:user/1",
    }


def test_a_trailing_slash_is_part_of_the_template(served: RouteTable[OperationModel]) -> None:
    listed = served.match("POST", "/memories/", {})
    assert listed is not None
    assert listed.target.name == "ListMemories"
    assert served.match("POST", "/memories", {}) is None
    created = served.match("POST", "/memories/create", {})
    assert created is not None
    assert created.target.name == "CreateMemory"
