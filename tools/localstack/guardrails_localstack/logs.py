"""CloudWatch Logs as AWS has it: a deleted log group takes its tags with it.

LocalStack keeps log group tags in a store of its own, keyed by ARN, and never removes
them when the group is deleted: a new group of the same name inherits the old group's tags.
On AWS it starts untagged. That matters here: protect and unprotect decide by the
``ManagedBy`` tag whose a log group is.
"""


def install() -> None:
    """Drop a log group's tags when it is deleted."""
    from localstack.services.logs.models import logs_stores
    from localstack.utils.aws import arns
    from moto.logs.models import LogsBackend

    if getattr(LogsBackend.delete_log_group, "forgets_tags", False):
        return
    original = LogsBackend.delete_log_group

    def delete_log_group(self, log_group_name):
        original(self, log_group_name)
        arn = arns.log_group_arn(
            group_name=log_group_name, account_id=self.account_id, region_name=self.region_name
        )
        tags = logs_stores[self.account_id][self.region_name].TAGS
        for key in (arn, arn.removesuffix(":*"), f"{arn.removesuffix(':*')}:*"):
            tags.pop(key, None)

    delete_log_group.forgets_tags = True
    LogsBackend.delete_log_group = delete_log_group
