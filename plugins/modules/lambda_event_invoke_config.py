#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: lambda_event_invoke_config
short_description: Manage the asynchronous invocation settings of a Lambda function
version_added: 1.0.0
description:
  - Sets how many times Lambda retries a failed asynchronous invocation, how old an event
    may get before it is dropped, and where events go that failed every retry
    (C(PutFunctionEventInvokeConfig)); or removes those settings.
  - Optionally also the function's reserved concurrency, which decides how many of those
    events run at once (C(PutFunctionConcurrency), C(DeleteFunctionConcurrency)).
  - M(amazon.aws.lambda) does not manage these settings.
author:
  - guardrails.ec2 maintainers (@guardrails-ec2)
options:
  function_name:
    description:
      - Name or ARN of the function.
    type: str
    required: true
  qualifier:
    description:
      - Version or alias the settings apply to. Omit for the unqualified function.
    type: str
  state:
    description:
      - Whether the settings should exist.
    type: str
    choices: [present, absent]
    default: present
  maximum_retry_attempts:
    description:
      - Retries after a failed asynchronous invocation, C(0) to C(2).
    type: int
    default: 2
  maximum_event_age_in_seconds:
    description:
      - Oldest event Lambda still sends to the function, C(60) to C(21600) seconds.
    type: int
    default: 21600
  on_failure_destination_arn:
    description:
      - SQS queue, SNS topic, Lambda function or EventBridge bus that receives events
        that failed every retry. Empty to have none.
    type: str
  reserved_concurrency:
    description:
      - How many instances of the function may run at once, reserved from the account's
        concurrency (C(PutFunctionConcurrency)); C(-1) for none (C(DeleteFunctionConcurrency)).
        Omit to leave it as it is. Only for the unqualified function.
      - C(0) is refused, because it would stop every invocation.
      - When the account's unreserved concurrency may not go that low (Lambda keeps a
        minimum unreserved), the module warns and leaves the function as it is.
    type: int
    version_added: 1.1.0
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Retry twice, drop events older than an hour, send failures to a queue
  guardrails.ec2.lambda_event_invoke_config:
    function_name: EC2Protect
    maximum_retry_attempts: 2
    maximum_event_age_in_seconds: 3600
    on_failure_destination_arn: arn:aws:sqs:eu-west-1:123456789012:restart-failures

- name: One invocation at a time; Lambda holds the other events and retries them itself
  guardrails.ec2.lambda_event_invoke_config:
    function_name: EC2Protect
    reserved_concurrency: 1

- name: Remove the settings
  guardrails.ec2.lambda_event_invoke_config:
    function_name: EC2Protect
    state: absent
"""

RETURN = r"""
event_invoke_config:
  description: The settings after the task; empty when absent.
  returned: always
  type: dict
  contains:
    function_arn:
      description: ARN the settings belong to.
      type: str
      sample: arn:aws:lambda:eu-west-1:123456789012:function:EC2Protect
    maximum_retry_attempts:
      description: Retries after a failed asynchronous invocation.
      type: int
      sample: 2
    maximum_event_age_in_seconds:
      description: Oldest event still sent to the function.
      type: int
      sample: 3600
    on_failure_destination_arn:
      description: Where failed events go, or null.
      type: str
      sample: arn:aws:sqs:eu-west-1:123456789012:restart-failures
    reserved_concurrency:
      description: The function's reserved concurrency, C(-1) for none.
      returned: for the unqualified function
      type: int
      sample: 1
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.guardrails.ec2.plugins.module_utils.drift import invoke_config_drift
from ansible_collections.guardrails.ec2.plugins.module_utils.resource_reads import (
    read_invoke_config,
    read_reserved_concurrency,
)
from ansible_collections.guardrails.ec2.plugins.module_utils.state_shape import UNRESERVED


def desired_config(params):
    return {
        "maximum_retry_attempts": params["maximum_retry_attempts"],
        "maximum_event_age_in_seconds": params["maximum_event_age_in_seconds"],
        "on_failure_destination_arn": params["on_failure_destination_arn"] or None,
        "reserved_concurrency": params["reserved_concurrency"],
    }


def put_concurrency(module, client, function_name, current, wanted):
    """Reserve ``wanted`` (or remove the reservation); the value the function has after.
    Lambda refuses a reservation that would leave the account less unreserved concurrency
    than its minimum: then the function stays as it is, with a warning."""
    if wanted is None or wanted == current:
        return current
    if wanted == UNRESERVED:
        client.delete_function_concurrency(aws_retry=True, FunctionName=function_name)
        return wanted
    try:
        client.put_function_concurrency(
            aws_retry=True, FunctionName=function_name, ReservedConcurrentExecutions=wanted
        )
    except is_boto3_error_code("InvalidParameterValueException") as e:
        message = e.response["Error"].get("Message", "")
        if "UnreservedConcurrentExecution" not in message:
            raise
        module.warn(
            f"Could not reserve a concurrency of {wanted} for {function_name}: {message} "
            "The function stays as it is; raise the account's Lambda concurrency quota to reserve it."
        )
        return current
    return wanted


def put_config(client, function_name, qualifier, desired):
    kwargs = {
        "FunctionName": function_name,
        "MaximumRetryAttempts": desired["maximum_retry_attempts"],
        "MaximumEventAgeInSeconds": desired["maximum_event_age_in_seconds"],
        # An empty destination config removes a destination set earlier.
        "DestinationConfig": {"OnFailure": {"Destination": desired["on_failure_destination_arn"]}}
        if desired["on_failure_destination_arn"]
        else {"OnFailure": {}, "OnSuccess": {}},
    }
    if qualifier:
        kwargs["Qualifier"] = qualifier
    client.put_function_event_invoke_config(aws_retry=True, **kwargs)


def delete_config(client, function_name, qualifier):
    kwargs = {"FunctionName": function_name}
    if qualifier:
        kwargs["Qualifier"] = qualifier
    try:
        client.delete_function_event_invoke_config(aws_retry=True, **kwargs)
    except is_boto3_error_code("ResourceNotFoundException"):
        pass


def validate(module):
    params = module.params
    if not 0 <= params["maximum_retry_attempts"] <= 2:
        module.fail_json(
            msg=f"maximum_retry_attempts must be 0, 1 or 2, got {params['maximum_retry_attempts']}"
        )
    if not 60 <= params["maximum_event_age_in_seconds"] <= 21600:
        module.fail_json(
            msg=f"maximum_event_age_in_seconds must be between 60 and 21600, got {params['maximum_event_age_in_seconds']}"
        )
    reserved = params["reserved_concurrency"]
    if reserved is not None and (reserved < UNRESERVED or reserved == 0):
        module.fail_json(
            msg=f"reserved_concurrency must be -1 (none) or at least 1, got {reserved}"
            + (" (0 would stop every invocation)" if reserved == 0 else "")
        )
    if reserved is not None and params["qualifier"]:
        module.fail_json(
            msg="reserved_concurrency belongs to the function, not to a version or alias: omit qualifier"
        )


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            function_name=dict(type="str", required=True),
            qualifier=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            maximum_retry_attempts=dict(type="int", default=2),
            maximum_event_age_in_seconds=dict(type="int", default=21600),
            on_failure_destination_arn=dict(type="str"),
            reserved_concurrency=dict(type="int"),
        ),
        supports_check_mode=True,
    )
    validate(module)
    client = module.client("lambda", retry_decorator=AWSRetry.jittered_backoff())
    name, qualifier = module.params["function_name"], module.params["qualifier"]
    try:
        current = read_invoke_config(client, name, qualifier)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Couldn't read the asynchronous invocation settings of {name}")

    if module.params["state"] == "absent":
        if current is None:
            module.exit_json(changed=False, event_invoke_config={})
        if not module.check_mode:
            try:
                delete_config(client, name, qualifier)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                module.fail_json_aws(e, msg=f"Couldn't remove the asynchronous invocation settings of {name}")
        module.exit_json(changed=True, event_invoke_config={}, diff={"before": current, "after": {}})

    desired = desired_config(module.params)
    wanted = desired.pop("reserved_concurrency")
    try:
        have = current.get("reserved_concurrency") if current else None
        if have is None and wanted is not None:
            have = read_reserved_concurrency(client, name)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Couldn't read the reserved concurrency of {name}")
    settings_drift = bool(invoke_config_drift(current, desired))
    concurrency_drift = wanted is not None and wanted != have
    if not settings_drift and not concurrency_drift:
        module.exit_json(changed=False, event_invoke_config=current)
    after = dict(current or {}, **desired)
    if wanted is not None:
        after["reserved_concurrency"] = wanted
    if not module.check_mode:
        try:
            if settings_drift:
                put_config(client, name, qualifier, desired)
            got = put_concurrency(module, client, name, have, wanted) if concurrency_drift else have
            if not settings_drift and got == have:
                module.exit_json(changed=False, event_invoke_config=current)
            after = read_invoke_config(client, name, qualifier) or after
        except is_boto3_error_code("ResourceNotFoundException") as e:
            module.fail_json_aws(e, msg=f"Function {name} does not exist")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
            module.fail_json_aws(e, msg=f"Couldn't set the asynchronous invocation settings of {name}")
    module.exit_json(changed=True, event_invoke_config=after, diff={"before": current or {}, "after": after})


if __name__ == "__main__":
    main()
