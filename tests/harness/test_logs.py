"""CloudWatch Logs behaviours the role relies on, as AWS has them.

protect and unprotect judge by the ManagedBy tag whose a log group is; LocalStack kept a
deleted group's tags for the next group of the same name.
"""

from conftest import unique


def test_a_deleted_log_group_takes_its_tags_with_it(aws):
    logs = aws("logs")
    group = f"/aws/lambda/{unique('ghost')}"
    logs.create_log_group(logGroupName=group, tags={"ManagedBy": "guardrails.ec2"})
    logs.delete_log_group(logGroupName=group)
    logs.create_log_group(logGroupName=group, tags={"Team": "payments"})
    try:
        arn = next(
            found["arn"] for found in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        ).removesuffix(":*")
        assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"Team": "payments"}
        assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"Team": "payments"}
    finally:
        logs.delete_log_group(logGroupName=group)
