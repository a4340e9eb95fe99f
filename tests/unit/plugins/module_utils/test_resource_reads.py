"""module_utils/resource_reads.py: a deployment's own resources, in the shapes drift compares."""

import json
from unittest import mock

from fakes import Paged, lambda_with, not_found
from verify_helpers import ROLE_ARN

from ansible_collections.guardrails.ec2.plugins.module_utils import resource_reads


def test_describe_maps_the_reply():
    client = lambda_with(
        {
            "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:f:$LATEST",
            "MaximumRetryAttempts": 1,
            "MaximumEventAgeInSeconds": 600,
            "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:eu-west-1:123456789012:q"}},
        }
    )
    assert resource_reads.read_invoke_config(client, "f") == {
        "function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:f:$LATEST",
        "maximum_retry_attempts": 1,
        "maximum_event_age_in_seconds": 600,
        "on_failure_destination_arn": "arn:aws:sqs:eu-west-1:123456789012:q",
        "reserved_concurrency": -1,
    }
    assert resource_reads.read_invoke_config(lambda_with(None), "f") is None


def test_the_function_state_is_snake_case_by_amazon_aws_lambdas_parameter_names():
    config = {
        "Role": "arn:aws:iam::123456789012:role/r",
        "Handler": "h.handler",
        "Description": "d",
        "Timeout": 30,
        "MemorySize": 128,
        "Runtime": "python3.13",
        "Environment": {"Variables": {"A": "1"}},
        "VpcConfig": {"VpcId": ""},
        "CodeSha256": "abc=",
        "State": "Active",
    }
    assert resource_reads.function_state(config, {"ManagedBy": "guardrails.ec2"}) == {
        "role": "arn:aws:iam::123456789012:role/r",
        "handler": "h.handler",
        "description": "d",
        "timeout": 30,
        "memory_size": 128,
        "runtime": "python3.13",
        "environment_variables": {"A": "1"},
        "vpc_id": None,
        "tags": {"ManagedBy": "guardrails.ec2"},
        "code_sha256": "abc=",
    }
    assert resource_reads.function_state(None, {}) is None


def test_the_function_policy_gives_one_statement_and_sizes_and_the_whole_document_when_asked():
    statements = [{"Sid": "a", "Effect": "Allow"}, {"Sid": "guardrails-ec2-rules", "Effect": "Allow"}]
    text = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    lam = mock.MagicMock()
    lam.get_policy.return_value = {"Policy": text}
    found = resource_reads.read_function_policy(lam, "f", "guardrails-ec2-rules")
    assert found == {
        "statement": statements[1],
        "size": len(text),
        "statements": [
            {"sid": entry["Sid"], "size": len(json.dumps(entry, separators=(",", ":")))}
            for entry in statements
        ],
    }
    assert resource_reads.read_function_policy(lam, "f", document=True)["document"]["Statement"] == statements
    lam.get_policy.side_effect = not_found()
    assert resource_reads.read_function_policy(lam, "f", document=True) == {
        "statement": None,
        "size": 0,
        "statements": [],
        "document": {"Statement": []},
    }


class PagedIam(Paged):
    SERVICE = "iam"

    """IAM stand-in: two pages of attached policies, one inline policy returned as text."""

    def __init__(self):
        self.calls = []

    def list_attached_role_policies(self, aws_retry=False, RoleName=None, Marker=None):
        self.calls.append(("list_attached_role_policies", RoleName, Marker))
        if Marker is None:
            return {"AttachedPolicies": [{"PolicyArn": "arn:p1"}], "IsTruncated": True, "Marker": "m"}
        return {"AttachedPolicies": [{"PolicyArn": "arn:p2"}], "IsTruncated": False}

    def get_policy(self, aws_retry, PolicyArn):
        return {"Policy": {"DefaultVersionId": "v3"}}

    def get_policy_version(self, aws_retry, PolicyArn, VersionId):
        assert VersionId == "v3"
        return {"PolicyVersion": {"Document": {"Statement": [{"Sid": PolicyArn}]}}}

    def list_role_policies(self, aws_retry=False, RoleName=None, Marker=None):
        return {"PolicyNames": ["inline"], "IsTruncated": False}

    def get_role_policy(self, aws_retry, RoleName, PolicyName):
        return {"PolicyDocument": "%7B%22Statement%22%3A%5B%7B%22Sid%22%3A%22inline%22%7D%5D%7D"}


def test_role_policy_documents_reads_every_page_and_inline_policies():
    iam = PagedIam()
    documents = resource_reads.role_policy_documents(iam, ROLE_ARN)
    assert [d["Statement"][0]["Sid"] for d in documents] == ["arn:p1", "arn:p2", "inline"]
    assert iam.calls == [
        ("list_attached_role_policies", "EC2ProtectRole", None),
        ("list_attached_role_policies", "EC2ProtectRole", "m"),
    ]
