"""module_utils/trails.py: whether a CloudTrail trail feeds the attribution and tamper rules."""

from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.module_utils import (
    trails,
)


@pytest.mark.parametrize(
    ("selectors", "records"),
    [
        ({}, True),  # no selectors: CloudTrail's default, every management event
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}]}, True),
        ({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}, True),
        ({"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}]}, False),
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False}]}, False),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}
                ]
            },
            True,
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {
                        "FieldSelectors": [
                            {"Field": "eventCategory", "Equals": ["Management"]},
                            {"Field": "readOnly", "Equals": ["true"]},
                        ]
                    }
                ]
            },
            False,
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}]}
                ]
            },
            False,
        ),
    ],
)
def test_a_trail_counts_when_it_records_management_writes(selectors, records):
    assert trails.records_management_writes(selectors) is records


def test_the_audit_says_whether_a_trail_feeds_the_watching_rules(retrying):
    deployment = {"watching_rules": ["EC2Protect.tamper"]}
    with mock_aws():
        cloudtrail = boto3.client("cloudtrail", region_name="eu-west-1")
        warnings, report = [], {}
        trails.check_trails({"cloudtrail": retrying(cloudtrail)}, deployment, "eu-west-1", warnings, report)
        assert report == {"management_trails": []}
        assert warnings[0].startswith(
            "No CloudTrail trail logs management events in eu-west-1: the rules EC2Protect.tamper"
        )
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket="trail", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        cloudtrail.create_trail(Name="org", S3BucketName="trail", IsMultiRegionTrail=True)
        trails.check_trails({"cloudtrail": retrying(cloudtrail)}, deployment, "eu-west-1", warnings, report)
        assert report == {"management_trails": []}  # created, but not logging yet
        cloudtrail.start_logging(Name="org")
        warnings.clear()
        trails.check_trails({"cloudtrail": retrying(cloudtrail)}, deployment, "eu-west-1", warnings, report)
        assert (report, warnings) == ({"management_trails": ["org"]}, [])
    # No rule that watches CloudTrail: nothing to check, nothing said.
    trails.check_trails({"cloudtrail": None}, {"watching_rules": []}, "eu-west-1", warnings, report)


def test_a_trail_check_that_fails_says_so_and_the_audit_goes_on():
    cloudtrail = mock.Mock()
    cloudtrail.describe_trails.side_effect = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeTrails"
    )
    warnings, report = [], {}
    trails.check_trails(
        {"cloudtrail": cloudtrail}, {"watching_rules": ["EC2Protect.tamper"]}, "eu-west-1", warnings, report
    )
    assert report == {}
    assert warnings[0].startswith("Could not check for a CloudTrail trail (AccessDeniedException")
