"""Names derived from the base name (module_utils/naming.py)."""

import fnmatch

import pytest

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    naming,
    validate,
)


def test_every_name_derives_from_the_base_name():
    assert naming.resource_names("EC2Protect") == {
        "function": "EC2Protect",
        "log_group": "/aws/lambda/EC2Protect",
        "rule_prefix": "EC2Protect.",
        "attribution_rule": "EC2Protect.attribution",
        "sweep_rule": "EC2Protect.sweep",
        "invoke_statement": "guardrails-ec2-rules",
        "attention": "EC2Protect-attention",
        "heartbeat": "EC2Protect-heartbeat",
        "api_stop_marker": "guardrails.ec2/EC2Protect/disable-api-stop",
    }


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("EC2Protect.1", 1), ("EC2Protect.12", 12), ("EC2Protect.0", None), ("EC2Protect-2.1", None),
     ("EC2Protect.attribution", None), ("EC2ProtectX.1", None), ("Other.1", None), ("EC2Protect-1", None)],
)  # fmt: skip
def test_rule_index_recognises_only_our_shard_rules(candidate, expected):
    assert naming.rule_index("EC2Protect", candidate) == expected


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("EC2Protect.1", ("state_change", 1, False)), ("EC2Protect.sweep", ("sweep", None, False)),
     ("EC2Protect.attribution", ("attribution", None, False)),
     # names of releases before 1.1.0, replaced by the next protect run
     ("EC2Protect-3", ("state_change", 3, True)), ("EC2Protect-sweep", ("sweep", None, True)),
     ("EC2Protect-attribution", ("attribution", None, True)),
     # another deployment's, new and old names
     ("EC2Protect-2.1", None), ("EC2Protect-2-1", None), ("EC2Protect-2.sweep", None),
     ("EC2ProtectX.1", None), ("EC2Protect.x", None), ("EC2Protect.sweep.1", None)],
)  # fmt: skip
def test_rule_kind_knows_new_and_legacy_names_of_one_deployment(candidate, expected):
    assert naming.rule_kind("EC2Protect", candidate) == expected


@pytest.mark.parametrize(
    "other", ["EC2Protect-2", "EC2Protect_x", "EC2ProtectX", "EC2Protect-attribution", "E"]
)
def test_the_invoke_pattern_admits_no_rule_of_another_deployment(other):
    """The one invoke statement's SourceArn pattern admits every rule this deployment writes,
    and none that a deployment with any other valid base name writes."""
    pattern = naming.rule_source_pattern("aws", "eu-west-1", "123456789012", "EC2Protect")
    ours = ["EC2Protect.1", "EC2Protect.300", "EC2Protect.attribution", "EC2Protect.sweep"]
    assert all(
        fnmatch.fnmatchcase(naming.rule_arn("aws", "eu-west-1", "123456789012", rule), pattern)
        for rule in ours
    )
    theirs = [naming.rule_name(other, 1), f"{other}.attribution", f"{other}.sweep"]
    assert validate.BASE_NAME.match(other)
    assert not any(
        fnmatch.fnmatchcase(naming.rule_arn("aws", "eu-west-1", "123456789012", rule), pattern)
        for rule in theirs
    )


def test_function_arn_is_unqualified():
    assert naming.function_arn("aws", "eu-west-1", "123456789012", "EC2Protect") == (
        "arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect"
    )


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("EC2Protect", 1), ("EC2Protect.2", 2), ("EC2Protect.10", 10), ("EC2Protect.1", None),
     ("EC2Protect.02", None), ("EC2ProtectRole", None), ("EC2Protect.x", None), ("Other.2", None),
     ("EC2Protect-2", None)],
)  # fmt: skip
def test_policy_index_recognises_only_our_policies(candidate, expected):
    assert naming.policy_index("EC2Protect", candidate) == expected


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("eu-west-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
    ],
)
def test_the_partition_of_a_region_is_known_before_any_call(region, partition):
    assert naming.partition_of(region) == partition


def test_the_partition_table_agrees_with_botocore():
    """naming.partition_of for every region botocore knows: the same partition."""
    import botocore.session

    session = botocore.session.get_session()
    checked = 0
    for partition in session.get_available_partitions():
        for region in session.get_available_regions("ec2", partition_name=partition):
            assert naming.partition_of(region) == partition, region
            checked += 1
    assert checked > 20


def test_only_the_owner_tag_marks_a_resource_as_ours():
    assert naming.owner_tagged({"ManagedBy": "guardrails.ec2", "Team": "x"})
    assert not naming.owner_tagged({"ManagedBy": "someone-else"})
    assert not naming.owner_tagged(None)
