"""CloudTrail's trail API, answered by moto (LocalStack community has no CloudTrail).

Enough for the audit to ask whether a trail records management events (DescribeTrails,
GetTrailStatus, GetEventSelectors) and for tests to create one. Nothing is recorded by
these trails: the events the tamper rules see are published by ``cloudtrail.py``.
"""

from localstack.services.plugins import Service, aws_provider


class CloudTrailProvider:
    """Every operation goes to moto (``moto_dispatch_table``)."""

    service = "cloudtrail"


def moto_dispatch_table(provider):
    """Every operation of the service model, answered by moto (LocalStack has no generated
    API for CloudTrail to build a fallback table from)."""
    from localstack.aws.spec import load_service
    from localstack.services.moto import call_moto

    def forward(context, _request):
        return call_moto(context)

    return {operation: forward for operation in load_service(provider.service).operation_names}


@aws_provider(api="cloudtrail", name="guardrails")
def cloudtrail_guardrails():
    return Service.for_provider(CloudTrailProvider(), dispatch_table_factory=moto_dispatch_table)
