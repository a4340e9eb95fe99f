"""An EventBridge provider that delivers as AWS does: a disabled rule delivers nothing, and a
rule invokes a Lambda function only when the function's resource policy lets it.

LocalStack 2026.3's EventBridge matches every rule of a bus on PutEvents and runs every
scheduled rule's job, whatever the rule's state: a rule in state ``DISABLED`` still
delivers. On AWS a disabled rule never does, and the audit's "enabled rule" check and
every test that breaks the protection on purpose depend on that. This provider wraps the
two delivery paths (event pattern, schedule) with a state check.

LocalStack also invokes a rule's Lambda target whatever the function's resource policy
says. On AWS the invocation fails unless a statement allows ``lambda:InvokeFunction`` to
``events.amazonaws.com`` with conditions the rule meets (``AWS:SourceArn``,
``AWS:SourceAccount``); the collection's one invoke permission per region, a ``SourceArn``
pattern over its rule names, is only proved when that is checked. The Lambda target
sender here reads the function's policy before each invocation and refuses as AWS does.

Selected with ``PROVIDER_OVERRIDE_EVENTS=guardrails``.
"""

from __future__ import annotations

import fnmatch
import json
import logging

from localstack.aws.api.events import RuleState
from localstack.services.events.provider import EventsProvider
from localstack.services.events.target import LambdaTargetSender, TargetSenderFactory
from localstack.services.plugins import Service, aws_provider

LOG = logging.getLogger(__name__)
EVENTS_PRINCIPAL = "events.amazonaws.com"


def delivers(rule) -> bool:
    """Whether AWS would deliver through this rule: only when it is enabled."""
    return rule.state == RuleState.ENABLED


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


# Operators a function policy written by AddPermission uses (with IfExists also accepted).
_OPERATORS = {
    "arnlike": _like,
    "stringlike": _like,
    "arnequals": lambda want, have: want == have,
    "stringequals": lambda want, have: want == have,
}
_CONTEXT_KEYS = ("aws:sourcearn", "aws:sourceaccount")


def _conditions_met(conditions: dict, context: dict) -> bool:
    for operator, keys in (conditions or {}).items():
        name = operator.lower()
        if_exists = name.endswith("ifexists")
        compare = _OPERATORS.get(name.removesuffix("ifexists"))
        if compare is None:
            return False  # an operator this check cannot evaluate never admits the call
        for key, wanted in keys.items():
            have = context.get(key.lower())
            if have is None:
                if if_exists:
                    continue
                return False
            if not any(compare(want, have) for want in _as_list(wanted)):
                return False
    return True


def invocation_allowed(policy: dict, function_arn: str, rule_arn: str, account_id: str) -> bool:
    """Whether a function policy lets EventBridge rule ``rule_arn`` invoke ``function_arn``.

    An Allow statement must name the events service (or ``*``) as principal, allow
    ``lambda:InvokeFunction``, cover the function (unqualified or any version) and meet
    every condition on ``AWS:SourceArn``/``AWS:SourceAccount``. Function policies hold no
    Deny statements that AddPermission can write.
    """
    context = {"aws:sourcearn": rule_arn, "aws:sourceaccount": account_id}
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        services = _as_list(principal.get("Service")) if isinstance(principal, dict) else _as_list(principal)
        if EVENTS_PRINCIPAL not in services and "*" not in services:
            continue
        actions = [action.lower() for action in _as_list(statement.get("Action"))]
        if not any(_like(action, "lambda:invokefunction") for action in actions):
            continue
        resources = _as_list(statement.get("Resource"))
        if not any(
            _like(resource, function_arn) or _like(resource, f"{function_arn}:*") for resource in resources
        ):
            continue
        conditions = statement.get("Condition") or {}
        if any(key.lower() not in _CONTEXT_KEYS for keys in conditions.values() for key in keys):
            continue
        if _conditions_met(conditions, context):
            return True
    return False


class PolicyCheckedLambdaTargetSender(LambdaTargetSender):
    """Invokes the function only when its resource policy admits the rule, as on AWS."""

    def send_event(self, event, trace_header):
        function_arn = self.target["Arn"]
        try:
            policy = json.loads(self.client.get_policy(FunctionName=function_arn)["Policy"])
        except self.client.exceptions.ResourceNotFoundException:
            policy = {"Statement": []}
        unqualified = ":".join(function_arn.split(":")[:7])
        if not invocation_allowed(policy, unqualified, self.rule_arn, self.account_id):
            message = (
                f"AccessDeniedException: the resource policy of {function_arn} does not allow "
                f"rule {self.rule_arn} to invoke it"
            )
            LOG.warning(message)
            raise PermissionError(message)
        super().send_event(event, trace_header)


class GuardrailsEventsProvider(EventsProvider):
    def _process_rules(self, rule, region, account_id, event_formatted, trace_header) -> None:
        if delivers(rule):
            super()._process_rules(rule, region, account_id, event_formatted, trace_header)

    def _get_scheduled_rule_job_function(self, account_id, region, rule):
        job = super()._get_scheduled_rule_job_function(account_id, region, rule)

        def scheduled(*args, **kwargs):
            if delivers(rule):
                job(*args, **kwargs)

        return scheduled


@aws_provider(api="events", name="guardrails")
def events_guardrails():
    TargetSenderFactory.register_target_sender("lambda", PolicyCheckedLambdaTargetSender)
    return Service.for_provider(GuardrailsEventsProvider())
