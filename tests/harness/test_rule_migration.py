"""Protect replaces the rules and invoke statements of releases before 1.1.0.

Those named their rules ``<name>-<n>``/``<name>-sweep`` and gave each its own invoke
statement (named like the rule); now the rules are ``<name>.<n>``/``<name>.sweep`` and one
statement per region admits them all by a ``SourceArn`` pattern. The harness refuses an
invocation that the function's policy does not admit, so the drill at the end proves the
new statement, not just its presence.
"""

import json

from conftest import instance_states, unique, wait_for
from playbook_runs import changed_count, protect_vars, run_playbook

STATEMENT = "guardrails-ec2-rules"


def rule_names(events, name):
    return sorted(
        rule["Name"]
        for rule in events.list_rules(NamePrefix=name)["Rules"]
        if rule["Name"].startswith((f"{name}.", f"{name}-"))
    )


def statements(lam, name):
    return {
        statement["Sid"]: statement
        for statement in json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]
    }


def admit_rule(lam, function, rule, rule_arn):
    """One invoke statement for one rule, named like it, as releases before 1.1.0 wrote them."""
    lam.add_permission(
        FunctionName=function,
        StatementId=rule,
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=rule_arn,
    )


def make_legacy(events, lam, name):
    """Turn a deployment into what a release before 1.1.0 left: same rules under the old
    names, one exact-ARN invoke statement each, no region-wide statement."""
    for rule in rule_names(events, name):
        described = events.describe_rule(Name=rule)
        targets = events.list_targets_by_rule(Rule=rule)["Targets"]
        old = rule.replace(f"{name}.", f"{name}-", 1)
        spec = {
            key: described[key]
            for key in ("EventPattern", "ScheduleExpression", "Description")
            if key in described
        }
        old_arn = events.put_rule(Name=old, **spec)["RuleArn"]
        events.put_targets(Rule=old, Targets=targets)
        admit_rule(lam, name, old, old_arn)
        events.remove_targets(Rule=rule, Ids=[target["Id"] for target in targets])
        events.delete_rule(Name=rule)
    lam.remove_permission(FunctionName=name, StatementId=STATEMENT)


def test_protect_replaces_the_rules_and_statements_of_earlier_releases(aws, endpoint, instances):
    ec2, events, lam = aws("ec2"), aws("events"), aws("lambda")
    name = unique("Migrate")
    ids = instances(2)
    settings = protect_vars(name, ids, stop_protection_sweep_minutes=60, stop_protection_keep_logs=False)
    try:
        assert run_playbook("protect.yml", endpoint, settings).returncode == 0
        assert rule_names(events, name) == [f"{name}.1", f"{name}.sweep"]
        assert list(statements(lam, name)) == [STATEMENT]

        make_legacy(events, lam, name)
        assert rule_names(events, name) == [f"{name}-1", f"{name}-sweep"]
        assert set(statements(lam, name)) == {f"{name}-1", f"{name}-sweep"}

        result = run_playbook("protect.yml", endpoint, settings)
        assert result.returncode == 0, result.stdout[-3000:]
        assert rule_names(events, name) == [f"{name}.1", f"{name}.sweep"]
        assert list(statements(lam, name)) == [STATEMENT]
        pattern = json.loads(events.describe_rule(Name=f"{name}.1")["EventPattern"])
        assert sorted(pattern["detail"]["instance-id"]) == sorted(ids)
        assert changed_count(run_playbook("protect.yml", endpoint, settings)) == 0

        # the new statement admits the new rule: a stop is undone
        ec2.stop_instances(InstanceIds=[ids[0]])
        assert wait_for(lambda: instance_states(ec2, [ids[0]])[ids[0]] == "running", timeout=60, interval=0.5)
    finally:
        run_playbook("unprotect.yml", endpoint, settings)
    assert rule_names(events, name) == []


def test_a_large_earlier_deployment_near_the_policy_quota_migrates(aws, endpoint, instances):
    """A release before 1.1.0 with about 70 rules left a resource policy near Lambda's
    20 KB (one statement per rule). The harness refuses an AddPermission beyond it, as
    AWS does: adding the new statement first would fail on every run. protect removes the
    old sweep's statement first, then everything migrates."""
    events, lam = aws("events"), aws("lambda")
    # A long name makes each old statement long, so that fewer fill the policy (each old
    # rule costs two module runs to remove).
    name = unique("Big" + "P" * 36)
    ids = instances(1)
    settings = protect_vars(name, ids, stop_protection_sweep_minutes=60, stop_protection_keep_logs=False)
    try:
        assert run_playbook("protect.yml", endpoint, settings).returncode == 0
        make_legacy(events, lam, name)
        function_arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        first = events.describe_rule(Name=f"{name}-1")
        pattern, description = json.loads(first["EventPattern"]), first["Description"]
        # More old shard rules (as a larger 1.0 deployment had), until the harness refuses
        # one more statement, as AWS does past 20 KB.
        index, refused = 2, None
        while refused is None:
            rule = f"{name}-{index}"
            arn = events.put_rule(Name=rule, EventPattern=json.dumps(pattern), Description=description)[
                "RuleArn"
            ]
            try:
                admit_rule(lam, name, rule, arn)
            except lam.exceptions.PolicyLengthExceededException as exc:
                refused = exc
                events.delete_rule(Name=rule)
            else:
                events.put_targets(Rule=rule, Targets=[{"Id": name, "Arn": function_arn}])
                index += 1
        assert index > 40, f"refused after {index - 1} statements: {refused}"
        policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
        assert 20 * 1024 - 300 < len(json.dumps(policy, separators=(",", ":"))) <= 20 * 1024

        result = run_playbook("protect.yml", endpoint, settings)
        assert result.returncode == 0, result.stdout[-3000:]
        assert rule_names(events, name) == [f"{name}.1", f"{name}.sweep"]
        assert list(statements(lam, name)) == [STATEMENT]
        assert changed_count(run_playbook("protect.yml", endpoint, settings)) == 0
    finally:
        run_playbook("unprotect.yml", endpoint, settings)
    assert rule_names(events, name) == []
