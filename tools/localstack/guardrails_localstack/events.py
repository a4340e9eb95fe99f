"""An EventBridge provider in which a disabled rule delivers nothing, as on AWS.

LocalStack 2026.3's EventBridge matches every rule of a bus on PutEvents and runs every
scheduled rule's job, whatever the rule's state: a rule in state ``DISABLED`` still
delivers. On AWS a disabled rule never does, and the audit's "enabled rule" check and
every test that breaks the protection on purpose depend on that. This provider wraps the
two delivery paths (event pattern, schedule) with a state check.

Selected with ``PROVIDER_OVERRIDE_EVENTS=guardrails``.
"""

from __future__ import annotations

from localstack.aws.api.events import RuleState
from localstack.services.events.provider import EventsProvider
from localstack.services.plugins import Service, aws_provider


def delivers(rule) -> bool:
    """Whether AWS would deliver through this rule: only when it is enabled."""
    return rule.state == RuleState.ENABLED


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
    return Service.for_provider(GuardrailsEventsProvider())
