"""EventBridge invokes a Lambda function only when the function's resource policy admits the
rule, as on AWS (LocalStack itself invokes regardless).

The role deploys one invoke permission per region whose ``SourceArn`` is a pattern over the
deployment's rule names: without this check a wrong pattern would pass every drill.
"""

import time

import pytest
from conftest import RESTART_SOURCE, allow, instance_arn, instance_states, state_pattern, unique, wait_for


@pytest.fixture
def wired(aws, make_function, instances):
    """A function that restarts the instance of its event, a rule ``<prefix>.1`` that sends it
    the instance's ``stopped`` event, and no permission yet."""
    events = aws("events")
    (instance,) = instances(1)
    name, arn = make_function(RESTART_SOURCE, policy=allow(("ec2:StartInstances", instance_arn(instance))))
    prefix = unique("HarnessPerm")
    rule = f"{prefix}.1"
    rule_arn = events.put_rule(Name=rule, EventPattern=state_pattern([instance]))["RuleArn"]
    events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": arn}])
    yield {"instance": instance, "function": name, "rule_arn": rule_arn, "prefix": prefix}
    events.remove_targets(Rule=rule, Ids=["fn"])
    events.delete_rule(Name=rule)


def permit(lam, function, source_arn):
    lam.add_permission(
        FunctionName=function,
        StatementId=unique("events"),
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=source_arn,
    )


def stays_stopped(ec2, instance, seconds=6.0):
    ec2.stop_instances(InstanceIds=[instance])
    assert wait_for(lambda: instance_states(ec2, [instance])[instance] == "stopped", timeout=15)
    time.sleep(seconds)  # give a wrong invocation every chance to happen
    assert instance_states(ec2, [instance])[instance] == "stopped"


def test_no_permission_no_invocation(aws, wired):
    stays_stopped(aws("ec2"), wired["instance"])


def test_a_permission_for_another_rule_does_not_admit_this_one(aws, wired):
    ec2, lam = aws("ec2"), aws("lambda")
    other = wired["rule_arn"].rsplit("/", 1)[0] + f"/{wired['prefix']}-1"
    permit(lam, wired["function"], other)
    # A pattern over another deployment's separator does not match either.
    permit(lam, wired["function"], wired["rule_arn"].rsplit("/", 1)[0] + f"/{wired['prefix']}-*")
    stays_stopped(ec2, wired["instance"])


def test_a_source_arn_pattern_over_the_rule_names_admits_the_rule(aws, wired):
    ec2, lam = aws("ec2"), aws("lambda")
    permit(lam, wired["function"], wired["rule_arn"].rsplit("/", 1)[0] + f"/{wired['prefix']}.*")
    ec2.stop_instances(InstanceIds=[wired["instance"]])
    assert wait_for(
        lambda: instance_states(ec2, [wired["instance"]])[wired["instance"]] == "running", timeout=30
    )
