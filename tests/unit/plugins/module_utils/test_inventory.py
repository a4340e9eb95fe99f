"""From inventory to what is protected where: instances, regions, accounts, deployments
(module_utils/inventory.py)."""

import pytest
from plan_helpers import OTHER_ROLE

from ansible_collections.guardrails.ec2.plugins.module_utils import inventory, validate


@pytest.mark.parametrize(
    ("hosts", "explicit", "message"),
    [
        ([("web", {"instance_id": "i-123"})], [], "host web 'i-123'"),
        ([("web", {})], [], "host web has no instance_id"),
        ([], ["i-0123456789abcdef0", "i-0123456789abcdef0"], "listed more than once: i-0123456789abcdef0"),
        (
            [],
            [{"instance_id": "i-0123456789abcdef0", "region": "eu-west-1"}, "i-0123456789ABCDEF0"],
            "ABCDEF",
        ),
        ([("web", {"instance_id": "i-0123456789abcdef0", "region": "europe"})], [], "'europe'"),
        ([], ["i-0123456789abcdef0\n"], "'i-0123456789abcdef0\\\\n'"),
        ([("web", {"instance_id": "i-0123456789abcdef0", "region": "eu-west-1\n"})], [], "'eu-west-1\\\\n'"),
        ([("web", {"instance_id": "i-0123456789abcdef0"})], [], None),
        ([], [42], "stop_protection_instance_ids\\[0\\] 42"),
    ],
)
def test_collect_instances_rejects_bad_entries(hosts, explicit, message):
    if message is None:
        assert inventory.collect_instances(hosts, explicit, "us-east-1") == [
            ("i-0123456789abcdef0", "us-east-1", "host web")
        ]
        return
    with pytest.raises(validate.ProtectionError, match=message):
        inventory.collect_instances(hosts, explicit, "us-east-1")


def test_region_is_taken_from_placement_then_region_then_default():
    hosts = [
        (
            "a",
            {
                "instance_id": "i-0000000000000000a",
                "placement": {"region": "eu-west-1"},
                "region": "us-west-2",
            },
        ),
        ("b", {"instance_id": "i-0000000000000000b", "region": "us-west-2"}),
        ("c", {"instance_id": "i-0000000000000000c"}),
    ]
    found = inventory.collect_instances(hosts, [], "us-east-1")
    assert [entry[1] for entry in found] == ["eu-west-1", "us-west-2", "us-east-1"]


def test_instance_ids_given_as_one_string_are_read_as_a_comma_separated_list():
    """-e stop_protection_instance_ids=i-...,i-... is a string, not a list of characters."""
    found = inventory.collect_instances([], "i-0000000000000000a, i-0000000000000000b", "eu-west-1")
    assert [(instance_id, region) for instance_id, region, _source in found] == [
        ("i-0000000000000000a", "eu-west-1"),
        ("i-0000000000000000b", "eu-west-1"),
    ]


def test_missing_region_is_an_error():
    with pytest.raises(validate.ProtectionError, match="names no region"):
        inventory.collect_instances([("a", {"instance_id": "i-0000000000000000a"})], [], "")


def test_one_deployment_per_account_and_region_with_the_role_to_assume():
    instances = [
        ("i-0000000000000000a", "eu-west-1", "host a"),
        ("i-0000000000000000b", "us-east-1", "host b"),
        ("i-0000000000000000c", "eu-west-1", "host c"),
        ("i-0000000000000000d", "us-east-1", "host d"),
        ("i-0000000000000000e", "eu-west-1", "host e"),
    ]
    accounts = {
        "i-0000000000000000b": "222222222222",
        "i-0000000000000000c": "333333333333",
        "i-0000000000000000e": "222222222222",
    }
    deployments = inventory.plan_deployments(instances, accounts, {"222222222222": OTHER_ROLE})
    assert [(d["host"], d["assume_role_arn"], d["region"], d["regions"]) for d in deployments] == [
        ("own-eu-west-1", "", "eu-west-1", ["eu-west-1"]),
        ("own-us-east-1", "", "us-east-1", ["us-east-1"]),
        ("222222222222-eu-west-1", OTHER_ROLE, "eu-west-1", ["eu-west-1"]),
        ("222222222222-us-east-1", OTHER_ROLE, "us-east-1", ["us-east-1"]),
    ]
    by_host = {d["host"]: [entry["instance_id"] for entry in d["instance_ids"]] for d in deployments}
    # an account without a role to assume is deployed with the play's credentials
    assert by_host["own-eu-west-1"] == ["i-0000000000000000a", "i-0000000000000000c"]
    assert by_host["222222222222-eu-west-1"] == ["i-0000000000000000e"]


def test_tag_mode_deploys_every_region_in_every_listed_account_and_nothing_keeps_one_host():
    deployments = inventory.plan_deployments(
        [], {}, {"222222222222": OTHER_ROLE}, tag_mode=True, regions=["eu-west-1"]
    )
    assert [d["host"] for d in deployments] == ["own-eu-west-1", "222222222222-eu-west-1"]
    assert inventory.plan_deployments([], {}, {}) == [
        {
            "host": "localhost",
            "account_id": "",
            "assume_role_arn": "",
            "region": "",
            "regions": None,
            "instance_ids": [],
        }
    ]


def test_instance_accounts_come_from_account_id_or_owner_id():
    hosts = [
        ("web", {"instance_id": "i-0000000000000000a", "account_id": "222222222222"}),
        ("db", {"instance_id": "i-0000000000000000b", "owner_id": "333333333333"}),
        ("plain", {"instance_id": "i-0000000000000000c"}),
    ]
    assert inventory.instance_accounts(hosts, []) == {
        "i-0000000000000000a": "222222222222",
        "i-0000000000000000b": "333333333333",
    }
    explicit = [{"instance_id": "i-0000000000000000a", "account_id": 222222222222}, "i-0000000000000000b"]
    assert inventory.instance_accounts(hosts, explicit) == {"i-0000000000000000a": "222222222222"}


def test_a_bad_account_of_a_host_is_named():
    with pytest.raises(validate.ProtectionError, match="account of host web 'prod' is not an AWS account id"):
        inventory.instance_accounts(
            [("web", {"instance_id": "i-0000000000000000a", "account_id": "prod"})], []
        )


def test_known_regions_come_from_botocores_partitions_without_importing_it(monkeypatch):
    """The regions a plan accepts: every region botocore's session lists for EC2, in every
    partition, read from its partitions.json; no "aws-global" pseudo-region. Without that
    file (an older botocore), the session's list."""
    import botocore.session

    session = botocore.session.get_session()
    ec2 = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    }
    known = inventory.known_regions()
    assert ec2 <= known and "eu-west-1" in known
    assert not [region for region in known if region.endswith("-global")]
    monkeypatch.setattr(inventory, "PARTITIONS_DATA", ("data", "no-such-file.json"))
    assert inventory.known_regions() == ec2


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"2222": OTHER_ROLE}, "stop_protection_assume_roles key '2222' is not an AWS account id"),
        ({"222222222222": "arn:aws:iam::222222222222:user/x"}, "is not an IAM role ARN"),
        ({"333333333333": OTHER_ROLE}, "is a role of account 222222222222, not 333333333333"),
        (["222222222222"], "must map account ids to role ARNs"),
    ],
)
def test_bad_assume_roles_are_named(roles, message):
    with pytest.raises(validate.ProtectionError, match=message):
        inventory.validate_assume_roles(roles)
