# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The restart function's environment variables, from the plan alone. Pure: no AWS calls."""

from ansible_collections.guardrails.ec2.plugins.module_utils.plan import restarts_together
from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    DEFAULT_RESTART_POLICY,
    MODE_TAG,
)


def function_environment(plan):
    """The function's environment variables, from the plan's validated ``settings``,
    ``restart_policy`` and mode."""
    settings = plan["settings"]
    env = {"PROTECTION_MODE": plan["mode"], "BYPASS_TAG_KEY": settings["bypass_tag_key"]}
    if plan["mode"] == MODE_TAG:
        env.update(PROTECTION_TAG_KEY=settings["tag_key"], PROTECTION_TAG_VALUE=settings["tag_value"])
    if settings["notification_topic_arn"]:
        env["NOTIFICATION_TOPIC_ARN"] = settings["notification_topic_arn"]
    budget = plan.get("restart_policy") or DEFAULT_RESTART_POLICY
    together = restarts_together(plan)
    if settings["attribution"] or budget["sweep_minutes"] or (plan["mode"] != MODE_TAG and together):
        # Attribution, the sweep and a batch of restarts read the protected ids from the
        # rules; the sweep also repairs them.
        env["RULE_NAME_PREFIX"] = plan["names"]["rule_prefix"]
    if together:
        env["RESTART_TOGETHER"] = "true"
    env.update(
        RESTART_LIMIT=str(budget["restart_limit"]),
        RESTART_WINDOW_SECONDS=str(budget["restart_window_seconds"]),
        RESTART_HISTORY_TAG_KEY=budget["history_tag_key"],
        SUSPENDED_TAG_KEY=budget["suspended_tag_key"],
        SKIP_AUTO_SCALING=str(budget["skip_auto_scaling"]).lower(),
        SKIP_SPOT_INTERRUPTIONS=str(budget["skip_spot_interruptions"]).lower(),
        RESTART_HIBERNATED=str(budget["restart_hibernated"]).lower(),
        MAX_RETRY_ATTEMPTS=str(budget["retry_attempts"]),
        SWEEP_MINUTES=str(budget["sweep_minutes"]),
    )
    return env
