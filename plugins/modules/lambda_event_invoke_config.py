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
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.guardrails.ec2.plugins.module_utils.sync import (
    invoke_config_drift,
    read_invoke_config,
)


def desired_config(params):
    return {
        "maximum_retry_attempts": params["maximum_retry_attempts"],
        "maximum_event_age_in_seconds": params["maximum_event_age_in_seconds"],
        "on_failure_destination_arn": params["on_failure_destination_arn"] or None,
    }


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


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            function_name=dict(type="str", required=True),
            qualifier=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            maximum_retry_attempts=dict(type="int", default=2),
            maximum_event_age_in_seconds=dict(type="int", default=21600),
            on_failure_destination_arn=dict(type="str"),
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
    if not invoke_config_drift(current, desired):
        module.exit_json(changed=False, event_invoke_config=current)
    after = dict(current or {}, **desired)
    if not module.check_mode:
        try:
            put_config(client, name, qualifier, desired)
            after = read_invoke_config(client, name, qualifier) or after
        except is_boto3_error_code("ResourceNotFoundException") as e:
            module.fail_json_aws(e, msg=f"Function {name} does not exist")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
            module.fail_json_aws(e, msg=f"Couldn't set the asynchronous invocation settings of {name}")
    module.exit_json(changed=True, event_invoke_config=after, diff={"before": current or {}, "after": after})


if __name__ == "__main__":
    main()
