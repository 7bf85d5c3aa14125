"""The pieces behind ``test_zz_iam_coverage.py`` can say no: the policy evaluator, the map
from a call to IAM actions, and the recorder's attribution of a call to a role."""

from __future__ import annotations

from typing import Any

import pytest

from agentpersistence.sidecar.backends.dynamodb import schema
from rig.awscalls import actions, policies
from rig.awscalls.actions import Call, Need
from rig.awscalls.hook import sitecustomize as hook

TABLE_ARN = "arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}"
BUCKET_ARN = "arn:${Partition}:s3:::${BucketName}"


def document(*statements: dict[str, Any]) -> policies.Document:
    return policies.parse("test.json", {"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str, **condition: Any) -> dict[str, Any]:
    statement = {"Sid": "S", "Effect": "Allow", "Action": action, "Resource": resource}
    return statement | ({"Condition": condition} if condition else {})


def call(service: str, operation: str, role: str = "operator", **params: Any) -> Call:
    return Call(role, service, operation, "eu-west-1", params)


def need(service: str, operation: str, **params: Any) -> Need:
    [found] = actions.needs(call(service, operation, **params))
    return found


# --- the evaluator ---------------------------------------------------------------------


def test_a_table_action_is_allowed_on_a_statement_naming_a_table() -> None:
    policy = document(allow("dynamodb:DescribeTable", TABLE_ARN))
    assert policy.allows(need("dynamodb", "DescribeTable", TableName="t"))


def test_an_action_the_document_does_not_list_is_denied() -> None:
    policy = document(allow("dynamodb:DescribeTable", TABLE_ARN))
    assert not policy.allows(need("dynamodb", "DeleteTable", TableName="t"))


def test_a_table_action_on_a_statement_naming_only_buckets_is_denied() -> None:
    policy = document(allow("dynamodb:*", BUCKET_ARN))
    assert not policy.allows(need("dynamodb", "DescribeTable", TableName="t"))


def test_action_wildcards_match_case_insensitively() -> None:
    policy = document(allow("DynamoDB:Describe*", TABLE_ARN))
    assert policy.allows(need("dynamodb", "DescribeTable", TableName="t"))


def test_a_prefix_placeholder_scopes_to_names_the_region_and_account_included() -> None:
    policy = document(
        allow("dynamodb:DescribeTable", "arn:aws:dynamodb:eu-west-1:${Account}:table/ap-*")
    )
    assert policy.allows(need("dynamodb", "DescribeTable", TableName="ap-t"))
    assert not policy.allows(need("dynamodb", "DescribeTable", TableName="other"))


def test_objects_are_not_the_bucket() -> None:
    policy = document(allow("s3:GetObject", BUCKET_ARN))
    assert not policy.allows(need("s3", "GetObject", Bucket="b", Key="k"))
    assert document(allow("s3:GetObject", BUCKET_ARN + "/*")).allows(
        need("s3", "GetObject", Bucket="b", Key="k")
    )


def test_a_deny_wins() -> None:
    policy = document(
        allow("dynamodb:*", TABLE_ARN),
        {"Sid": "D", "Effect": "Deny", "Action": "dynamodb:DeleteTable", "Resource": TABLE_ARN},
    )
    assert policy.allows(need("dynamodb", "DescribeTable", TableName="t"))
    assert not policy.allows(need("dynamodb", "DeleteTable", TableName="t"))


def test_a_required_request_tag_must_be_in_the_request() -> None:
    policy = document(
        allow("bedrock-agentcore:CreateMemory", "*", Null={"aws:RequestTag/owner": "false"})
    )
    tagged = need("bedrock-agentcore-control", "CreateMemory", tags={"owner": "u"})
    assert tagged.resource == "*"
    assert policy.allows(tagged)
    assert not policy.allows(need("bedrock-agentcore-control", "CreateMemory"))


def test_tag_keys_outside_the_allowed_pattern_are_denied() -> None:
    condition = {"ForAllValues:StringLike": {"aws:TagKeys": ["agentpersistence.io/*"]}}
    policy = document(allow("bedrock-agentcore:TagResource", "*:memory/*", **condition))
    arn = "arn:aws:bedrock-agentcore:eu-west-1:1:memory/m-1"
    ours = need(
        "bedrock-agentcore-control",
        "TagResource",
        resourceArn=arn,
        tags={"agentpersistence.io/a": "1"},
    )
    foreign = need("bedrock-agentcore-control", "TagResource", resourceArn=arn, tags={"team": "1"})
    assert policy.allows(ours)
    assert not policy.allows(foreign)


def test_conditions_the_evaluator_cannot_decide_are_refused() -> None:
    with pytest.raises(policies.UnsupportedPolicy, match="IpAddress"):
        document(allow("s3:GetObject", "*", IpAddress={"aws:SourceIp": "10.0.0.0/8"}))
    with pytest.raises(policies.UnsupportedPolicy, match="aws:ResourceTag"):
        document(allow("s3:GetObject", "*", StringEquals={"aws:ResourceTag/t": "v"}))


def test_the_operator_may_touch_only_the_claim_item_of_a_table() -> None:
    operator = policies.load("operator.json")
    claim = {schema.PK: {"S": schema.CLAIM_PK}, schema.SK: {"S": schema.CLAIM_SK}}
    assert operator.allows(need("dynamodb", "GetItem", TableName="t", Key=claim))
    checkpoint = {schema.PK: {"S": "thread-1"}, schema.SK: {"S": "x"}}
    assert not operator.allows(need("dynamodb", "GetItem", TableName="t", Key=checkpoint))


def test_the_sidecar_documents_cannot_create_or_delete() -> None:
    sidecar = policies.load("sidecar-dynamodb.json")
    assert not sidecar.allows(need("dynamodb", "CreateTable", TableName="t"))
    [delete_bucket] = actions.needs(call("s3", "DeleteBucket", Bucket="b"))
    assert not sidecar.allows(delete_bucket)


# --- calls → actions -------------------------------------------------------------------


def test_deleting_object_versions_needs_delete_object_version_too() -> None:
    objects = [{"Key": "a", "VersionId": "1"}, {"Key": "b"}]
    found = actions.needs(call("s3", "DeleteObjects", Bucket="b", Delete={"Objects": objects}))
    assert sorted(str(n) for n in found) == [
        "s3:DeleteObject on arn:aws:s3:::${BucketName}/${KeyPrefix}",
        "s3:DeleteObject on arn:aws:s3:::${BucketName}/${KeyPrefix}",
        "s3:DeleteObjectVersion on arn:aws:s3:::${BucketName}/${KeyPrefix}",
    ]


def test_a_tagged_copy_reads_the_source_and_writes_and_tags_the_target() -> None:
    source = {"Bucket": "b", "Key": "src"}
    found = actions.needs(
        call("s3", "CopyObject", Bucket="b", Key="dst", CopySource=source, Tagging="x=1")
    )
    assert sorted((n.action, n.resource) for n in found) == [
        ("s3:GetObject", "arn:aws:s3:::b/src"),
        ("s3:PutObject", "arn:aws:s3:::b/dst"),
        ("s3:PutObjectTagging", "arn:aws:s3:::b/dst"),
    ]


def test_transactions_need_each_items_own_action() -> None:
    items = [{"Put": {"TableName": "t"}}, {"Delete": {"TableName": "t"}}]
    found = actions.needs(call("dynamodb", "TransactWriteItems", TransactItems=items))
    assert [n.action for n in found] == ["dynamodb:PutItem", "dynamodb:DeleteItem"]


def test_a_call_without_a_known_mapping_is_reported() -> None:
    with pytest.raises(actions.Unmapped, match="S3_ACTIONS"):
        actions.needs(call("s3", "PutBucketPolicy", Bucket="b"))
    with pytest.raises(actions.Unmapped, match="service sts"):
        actions.needs(call("sts", "GetCallerIdentity"))


# --- the recorder ----------------------------------------------------------------------

SIDECAR = "/src/agentpersistence/sidecar/backends/dynamodb"
PROVISIONING = (f"{SIDECAR}/provisioning.py", "ensure_table")


@pytest.mark.parametrize(
    ("stack", "role"),
    [
        ([PROVISIONING, ("/o/agentpersistence/operator/x.py", "f")], "operator"),
        ([PROVISIONING, (f"{SIDECAR}/checkpoint.py", "provision")], "provision"),
        ([(f"{SIDECAR}/writing.py", "_batch"), ("/t/tests/test_x.py", "t")], "sidecar-dynamodb"),
        ([("/s/agentpersistence/sidecar/backends/agentcore_memory/events.py", "create")],
         "sidecar-agentcore-memory"),
        ([("/t/tests/rig/emulator.py", "create_active_memory")], "test"),
    ],
)  # fmt: skip
def test_a_call_belongs_to_the_innermost_project_code_that_made_it(
    stack: list[tuple[str, str]], role: str
) -> None:
    assert hook.role_of(stack) == role


def test_the_recorder_keeps_names_and_keys_never_payloads() -> None:
    item = {schema.PK: {"S": "thread"}, "payload": {"B": b"secret"}}
    params = {"TableName": "t", "Item": item, "Body": b"secret", "Tagging": "a=1"}
    assert hook.project(params) == {
        "TableName": "t",
        "Item": {schema.PK: {"S": "thread"}},
        "Tagging": "a=1",
    }
    assert hook.PARTITION_KEY == schema.PK
