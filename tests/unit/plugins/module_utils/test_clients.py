"""module_utils/clients.py: a module's clients from one boto3 session, with amazon.aws's settings."""

from unittest import mock

import boto3
from moto import mock_aws

from ansible_collections.guardrails.ec2.plugins.modules import stop_protection_deployment_info as m


def test_one_session_serves_every_client_with_the_modules_settings(run_module):
    """The region's clients come from one boto3 session (each model loaded once), with the
    module's region and endpoint, the user agent of amazon.aws and its retry wrapper."""
    opened, made = [], []
    real_session = boto3.session.Session

    def session(*args, **kwargs):
        opened.append(kwargs)
        found = real_session(*args, **kwargs)
        real_client = found.client

        def client(service, **settings):
            made.append(
                (service, settings["region_name"], settings["endpoint_url"], settings["config"].user_agent)
            )
            return real_client(service, **settings)

        found.client = client
        return found

    with mock_aws(), mock.patch.object(boto3.session, "Session", side_effect=session):
        topic = boto3.client("sns", region_name="eu-west-1").create_topic(Name="ops")["TopicArn"]
        opened.clear()
        result = run_module(m, {"name": "EC2Protect", "region": "eu-west-1", "targets": [topic]})
    assert result["changed"] is False and result["missing_targets"] == []
    assert len(opened) == 1, opened
    assert sorted(entry[0] for entry in made) == sorted(
        ["lambda", "logs", "cloudwatch", "events", "iam", "sts", "ec2", "sns", "sqs"]
    )
    assert {(region, endpoint) for _service, region, endpoint, _agent in made} == {("eu-west-1", None)}
    assert all(entry[3].startswith("APN/1.0 Ansible/") for entry in made)
