"""The IAM documents in ``iam/`` are valid policies naming real actions, scoped to resources.

Actions are checked against botocore's service models (the operation of that name exists;
both AgentCore planes share the ``bedrock-agentcore`` prefix), S3's against the operation →
action table of ``rig.awscalls.actions`` (S3 names most actions differently from its
operations). Whether they allow what the code calls is ``test_zz_iam_coverage.py``'s job.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import botocore.session
import pytest

from rig.awscalls import actions, policies

DOCUMENTS = sorted(policies.IAM_DIR.glob("*.json"))
README = policies.IAM_DIR / "README.md"

UNSCOPED = frozenset(
    {"bedrock-agentcore:CreateMemory", "bedrock-agentcore:ListMemories"}
    | {f"bedrock:{name}" for name in actions.SESSION_UNSCOPED}
)
"""Actions IAM accepts only with ``"Resource": "*"``: AgentCore defines no resource type for
them (ListMemories lists the account's memories; CreateMemory's memory has no id yet). The
operator's CreateMemory statement requires the owner tag in the request instead. Bedrock
sessions likewise for CreateSession and ListSessions."""


@cache
def _operations(service: str) -> frozenset[str]:
    return frozenset(botocore.session.get_session().get_service_model(service).operation_names)


def _statements(path: Path) -> list[dict[str, object]]:
    raw = json.loads(path.read_text())
    statements: list[dict[str, object]] = raw["Statement"]
    return statements


def _listed(value: object) -> list[str]:
    return [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]


def test_each_role_has_its_document_and_each_document_a_role() -> None:
    assert sorted(p.name for p in DOCUMENTS) == sorted(policies.ROLE_DOCUMENTS.values())


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_a_document_is_a_policy_the_evaluator_reads(path: Path) -> None:
    raw = json.loads(path.read_text())
    assert raw["Version"] == "2012-10-17"
    document = policies.parse(path.name, raw)
    sids = [statement.sid for statement in document.statements]
    assert all(sids), "every statement has a Sid"
    assert len(set(sids)) == len(sids), "no two statements share a Sid"
    assert all(statement.allow for statement in document.statements)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_action_exists_for_its_service(path: Path) -> None:
    for statement in _statements(path):
        for action in _listed(statement["Action"]):
            assert not set("*?") & set(action), f"{action}: no wildcard actions"
            prefix, _, name = action.partition(":")
            if prefix == "s3":
                assert action in actions.S3_KNOWN_ACTIONS, f"{action} is not in the S3 table"
                continue
            services = [s for s, p in actions.SERVICE_PREFIXES.items() if p == prefix]
            assert services, f"{action}: no botocore service has the prefix {prefix}"
            assert any(name in _operations(s) for s in services), f"{action}: no such operation"


@pytest.mark.parametrize("service", sorted(actions.SERVICE_PREFIXES))
def test_the_action_prefixes_are_the_services_signing_names(service: str) -> None:
    metadata = botocore.session.get_session().get_service_model(service).metadata
    prefix = metadata.get("signingName") or metadata["endpointPrefix"]
    assert actions.SERVICE_PREFIXES[service] == prefix


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_resources_are_named_except_where_the_service_allows_none(path: Path) -> None:
    for statement in _statements(path):
        resources = _listed(statement["Resource"])
        if "*" in resources:
            assert resources == ["*"]
            assert set(_listed(statement["Action"])) <= UNSCOPED, statement["Sid"]
        else:
            assert all(r.startswith("arn:${Partition}:") for r in resources), statement["Sid"]


def test_every_placeholder_is_explained_in_the_readme() -> None:
    explained = set(actions.PLACEHOLDER.findall(README.read_text()))
    for path in DOCUMENTS:
        used = set(actions.PLACEHOLDER.findall(path.read_text()))
        assert used <= explained, f"{path.name}: explain {sorted(used - explained)}"
