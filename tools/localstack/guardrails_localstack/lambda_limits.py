"""Lambda's quota on a function's resource-based policy, which LocalStack does not enforce.

AWS refuses an ``AddPermission`` whose statement would make the function's (or version's,
or alias's) resource policy larger than 20 KB, with ``PolicyLengthExceededException``
("Lambda quotas": function resource-based policy, 20 KB). LocalStack stores any number of
statements, so a deployment that only works because the emulator is lenient would pass.
This request handler runs before LocalStack's Lambda provider and answers as AWS does.

The size is that of the policy document as ``GetPolicy`` returns it (compact JSON), which
is what the quota is stated against; AWS's own count may differ by a few bytes.
"""

from __future__ import annotations

import json
import logging

from localstack.aws.api import RequestContext
from localstack.aws.api.lambda_ import PolicyLengthExceededException
from localstack.aws.chain import HandlerChain
from localstack.http import Response

LOG = logging.getLogger(__name__)

POLICY_LIMIT_BYTES = 20 * 1024


def _compact(document) -> int:
    return len(json.dumps(document, separators=(",", ":")))


def policy_size_after(context: RequestContext) -> int | None:
    """The size the function's policy would have with the requested statement, or None when
    the request cannot be placed (the provider then answers it as usual)."""
    from localstack.services.lambda_ import api_utils
    from localstack.services.lambda_.invocation.models import lambda_stores

    request = context.service_request or {}
    name, qualifier = api_utils.get_name_and_qualifier(
        request.get("FunctionName"), request.get("Qualifier"), context
    )
    account, region = api_utils.get_account_and_region(request.get("FunctionName"), context)
    function = lambda_stores[account][region].functions.get(name)
    if function is None:
        return None
    existing = function.permissions.get(qualifier or "$LATEST")
    statements = list(existing.policy.Statement) if existing else []
    try:
        statement = api_utils.build_statement(
            partition=context.partition,
            resource_arn=f"arn:{context.partition}:lambda:{region}:{account}:function:{name}",
            statement_id=request["StatementId"],
            action=request["Action"],
            principal=request["Principal"],
            source_arn=request.get("SourceArn"),
            source_account=request.get("SourceAccount"),
            principal_org_id=request.get("PrincipalOrgID"),
            event_source_token=request.get("EventSourceToken"),
            auth_type=request.get("FunctionUrlAuthType"),
        )
    except Exception:  # a bad request is the provider's to answer
        return None
    return _compact({"Version": "2012-10-17", "Id": "default", "Statement": [*statements, statement]})


def enforce_policy_limit(chain: HandlerChain, context: RequestContext, response: Response) -> None:
    """Request handler: refuse an AddPermission that would exceed the 20 KB policy quota."""
    if context.service is None or context.operation is None:
        return
    if context.service.service_name != "lambda" or context.operation.name != "AddPermission":
        return
    size = policy_size_after(context)
    if size is not None and size > POLICY_LIMIT_BYTES:
        raise PolicyLengthExceededException(
            f"The final policy size ({size}) is bigger than the limit ({POLICY_LIMIT_BYTES})."
        )


def install() -> None:
    from localstack.aws.handlers import serve_custom_service_request_handlers

    if enforce_policy_limit not in serve_custom_service_request_handlers.handlers:
        serve_custom_service_request_handlers.append(enforce_policy_limit)
        LOG.info("Lambda's 20 KB resource-policy quota is enforced")
