"""docs/deployer-policy.json names only actions that exist: IAM accepts a misspelt action
and it allows nothing, silently (the harness test then fails only for the calls it makes)."""

import fnmatch
import json
from pathlib import Path

import botocore.session

POLICY = Path(__file__).resolve().parents[2] / "docs" / "deployer-policy.json"
# Actions IAM knows under another name than the API operation, or that no operation has.
IAM_NAMES = {"lambda:InvokeFunction": "lambda:Invoke"}
PERMISSION_ONLY = {"iam:PassRole"}


def test_every_action_of_the_deployer_policy_is_an_api_operation():
    session = botocore.session.get_session()
    operations = {}
    for statement in json.loads(POLICY.read_text())["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            if action in PERMISSION_ONLY:
                continue
            # The IAM prefixes used here are the botocore service names.
            service, name = IAM_NAMES.get(action, action).split(":")
            if service not in operations:
                operations[service] = set(session.get_service_model(service).operation_names)
            assert fnmatch.filter(operations[service], name), action
