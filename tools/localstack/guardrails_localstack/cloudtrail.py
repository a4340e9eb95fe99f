"""CloudTrail management events on EventBridge, for the calls that disarm a deployment.

LocalStack community records no CloudTrail events. On AWS, with a trail that records
management events, every such call reaches the default event bus of its region as an
"AWS API Call via CloudTrail" event (IAM's, a global service's, in us-east-1), whether it
succeeded or was refused, with who made it (``userIdentity``), from where and with what
parameters. This response handler publishes that event, for the calls in ``WATCHED``,
after LocalStack answered them:

- ``userIdentity``: the IAM user or role session that signed the request, found the way
  IAM enforcement finds it (``iam.principal_for``); the root test keys are ``Root``;
- ``requestParameters``: the parsed request with lower-camel keys, as CloudTrail writes
  them; EC2's tag calls as ``resourcesSet``/``tagSet`` items;
- ``eventName``: Lambda's carry the API version CloudTrail appends
  (``UpdateFunctionCode20150331v2``);
- ``errorCode``: the error of a refused or failed call.

Not modelled: the delivery delay (seconds to minutes on AWS; here immediate), calls made
by AWS services on a principal's behalf, and every call outside ``WATCHED`` (StopInstances
included: the attribution tests publish theirs). ``GUARDRAILS_CLOUDTRAIL_EVENTS=0`` turns
it off.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime

from localstack.aws.api import RequestContext
from localstack.aws.chain import HandlerChain
from localstack.http import Response

LOG = logging.getLogger(__name__)

WATCHED = {
    "events": {"DeleteRule", "DisableRule", "PutRule", "PutTargets", "RemoveTargets"},
    "lambda": {
        "AddPermission",
        "DeleteFunction",
        "DeleteFunctionConcurrency",
        "DeleteFunctionEventInvokeConfig",
        "PutFunctionConcurrency",
        "PutFunctionEventInvokeConfig",
        "RemovePermission",
        "UpdateFunctionCode",
        "UpdateFunctionConfiguration",
        "UpdateFunctionEventInvokeConfig",
    },
    "iam": {
        "AttachRolePolicy",
        "CreatePolicyVersion",
        "DeletePolicy",
        "DeletePolicyVersion",
        "DeleteRole",
        "DeleteRolePermissionsBoundary",
        "DeleteRolePolicy",
        "DetachRolePolicy",
        "PutRolePermissionsBoundary",
        "PutRolePolicy",
        "SetDefaultPolicyVersion",
        "UpdateAssumeRolePolicy",
        "UpdateRole",
    },
    "logs": {"DeleteLogGroup", "DeleteMetricFilter", "PutMetricFilter"},
    "cloudwatch": {"DeleteAlarms", "DisableAlarmActions", "PutMetricAlarm"},
    "sns": {"DeleteTopic", "SetTopicAttributes", "Unsubscribe"},
    "ec2": {"CreateTags", "DeleteTags", "ModifyInstanceAttribute"},
}
EVENT_SOURCES = {"cloudwatch": "monitoring.amazonaws.com"}
# The API version Lambda's CloudTrail event names carry.
LAMBDA_VERSIONS = {
    "AddPermission": "20150331v2",
    "DeleteFunction": "20150331",
    "DeleteFunctionConcurrency": "20171031",
    "PutFunctionConcurrency": "20171031",
    "RemovePermission": "20150331v2",
    "UpdateFunctionCode": "20150331v2",
    "UpdateFunctionConfiguration": "20150331v2",
}
GLOBAL_SERVICES_REGION = "us-east-1"


def enabled() -> bool:
    return os.environ.get("GUARDRAILS_CLOUDTRAIL_EVENTS", "1").lower() not in ("0", "false", "no")


def lower_camel(value):
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: lower_camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [lower_camel(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return None  # code and zip files: CloudTrail leaves them out
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def request_parameters(service: str, operation: str, request: dict) -> dict:
    if service == "ec2" and operation in ("CreateTags", "DeleteTags"):
        return {
            "resourcesSet": {"items": [{"resourceId": r} for r in request.get("Resources") or []]},
            "tagSet": {
                "items": [{"key": t.get("Key"), "value": t.get("Value")} for t in request.get("Tags") or []]
            },
        }
    return lower_camel({key: value for key, value in request.items() if key not in ("ZipFile",)})


def user_identity(context: RequestContext) -> dict:
    from localstack.utils.aws.request_context import extract_access_key_id_from_auth_header

    from guardrails_localstack.iam import principal_for

    account = context.account_id
    principal = principal_for(extract_access_key_id_from_auth_header(context.request.headers), account)
    if principal is None:
        return {"type": "Root", "arn": f"arn:aws:iam::{account}:root", "accountId": account}
    if principal.kind == "AssumedRole":
        return {
            "type": "AssumedRole",
            "arn": principal.arn,
            "accountId": principal.account_id,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": principal.principal_arn}},
        }
    return {"type": "IAMUser", "arn": principal.arn, "accountId": principal.account_id}


def api_call_event(context: RequestContext, response: Response) -> tuple[str, dict] | None:
    """``(region, PutEvents entry)`` for a watched call, else None."""
    if context.is_internal_call or context.service is None or context.operation is None:
        return None
    service, operation = context.service.service_name, context.operation.name
    if operation not in WATCHED.get(service, ()):
        return None
    region = GLOBAL_SERVICES_REGION if service == "iam" else context.region
    detail = {
        "eventVersion": "1.09",
        "userIdentity": user_identity(context),
        "eventTime": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": EVENT_SOURCES.get(service, f"{service}.amazonaws.com"),
        "eventName": operation + (LAMBDA_VERSIONS.get(operation, "") if service == "lambda" else ""),
        "awsRegion": context.region,
        "sourceIPAddress": context.request.remote_addr,
        "requestParameters": request_parameters(service, operation, dict(context.service_request or {})),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": context.account_id,
    }
    if response.status_code >= 400:
        exception = context.service_exception
        detail["errorCode"] = getattr(exception, "code", None) or f"HTTP{response.status_code}"
        detail["errorMessage"] = getattr(exception, "message", None) or ""
    entry = {
        "Source": f"aws.{service}",
        "DetailType": "AWS API Call via CloudTrail",
        "Detail": json.dumps(detail, default=str),
    }
    return region, entry


def publish(account: str, region: str, entry: dict) -> None:
    from localstack.aws.connect import connect_to

    try:
        connect_to(aws_access_key_id=account, region_name=region).events.put_events(Entries=[entry])
    except Exception:
        LOG.exception("Could not publish a CloudTrail event")


def record_api_call(chain: HandlerChain, context: RequestContext, response: Response) -> None:
    """Response handler: publish the CloudTrail event of a watched call (on a thread of its
    own: the caller's answer never waits for it)."""
    try:
        found = api_call_event(context, response)
    except Exception:
        LOG.exception("Could not build a CloudTrail event")
        return
    if found:
        region, entry = found
        threading.Thread(target=publish, args=(context.account_id, region, entry), daemon=True).start()


def install() -> None:
    from localstack.aws.handlers import run_custom_response_handlers

    if enabled() and record_api_call not in run_custom_response_handlers.handlers:
        run_custom_response_handlers.append(record_api_call)
        LOG.info("CloudTrail management events are published for the calls that disarm a deployment")
