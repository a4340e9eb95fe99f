# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a role's identity policies and a function's resource policy allow, evaluated here."""

import re
from fnmatch import fnmatchcase


def _as_list(value):
    return value if isinstance(value, list) else [value]


class RolePermissions:
    """Whether a role's identity policies let it call an action on a resource.

    Evaluates Allow and Deny statements with their Action/NotAction, Resource/NotResource
    (IAM wildcards) and resource-tag conditions (``aws:ResourceTag/<key>``,
    ``ec2:ResourceTag/<key>`` with the String operators). A condition it cannot evaluate
    counts as met for an Allow and as not met for a Deny, so an unknown condition never
    makes an instance look unprotected. Permissions boundaries, SCPs and key policies are
    not evaluated. Statements are prepared once per action, so each check costs a set
    lookup plus the wildcard patterns.
    """

    def __init__(self, role_arn, documents):
        self.role = role_arn.rsplit("/", 1)[-1]
        self._documents = documents
        self._prepared = {}

    def _statements(self, action):
        action = action.lower()
        if action not in self._prepared:
            prepared = []
            for document in self._documents:
                for statement in _as_list((document or {}).get("Statement", [])):
                    if not isinstance(statement, dict) or not self._names_action(statement, action):
                        continue
                    negated = "NotResource" in statement
                    resources = _as_list(statement.get("NotResource" if negated else "Resource", []))
                    exact = {r for r in resources if "*" not in r and "?" not in r}
                    patterns = [r for r in resources if r not in exact]
                    prepared.append(
                        (statement.get("Effect"), negated, exact, patterns, statement.get("Condition") or {})
                    )
            self._prepared[action] = prepared
        return self._prepared[action]

    @staticmethod
    def _names_action(statement, action):
        if "Action" in statement:
            return any(fnmatchcase(action, a.lower()) for a in _as_list(statement["Action"]))
        if "NotAction" in statement:
            return not any(fnmatchcase(action, a.lower()) for a in _as_list(statement["NotAction"]))
        return False

    @staticmethod
    def _condition(condition, tags):
        """True, False, or None when the condition holds something this cannot evaluate."""
        verdict = True
        for operator, entries in condition.items():
            op = operator.lower()
            for key, values in (entries or {}).items():
                lowered = key.lower()
                if not lowered.startswith(("aws:resourcetag/", "ec2:resourcetag/")):
                    verdict = None
                    continue
                tag = tags.get(key.split("/", 1)[1])
                values = [str(value) for value in _as_list(values)]
                if op.endswith("ifexists"):
                    if tag is None:
                        continue  # IAM: ...IfExists on a missing key is met
                    op = op.removesuffix("ifexists")
                # IAM: on a missing key the positive operators fail and the negated ones hold.
                if op == "stringequals":
                    met = tag in values
                elif op == "stringnotequals":
                    met = tag is None or tag not in values
                elif op == "stringlike":
                    met = tag is not None and any(fnmatchcase(tag, value) for value in values)
                elif op == "stringnotlike":
                    met = tag is None or not any(fnmatchcase(tag, value) for value in values)
                elif op == "stringequalsignorecase":
                    met = tag is not None and tag.lower() in [value.lower() for value in values]
                else:
                    verdict = None
                    continue
                if not met:
                    return False
        return verdict

    def check(self, action, resource, tags=None):
        """``allowed``, ``denied`` (an explicit Deny applies) or ``not-allowed``."""
        allowed = False
        for effect, negated, exact, patterns, condition in self._statements(action):
            named = resource in exact or any(fnmatchcase(resource, p) for p in patterns)
            if named == negated:
                continue
            holds = self._condition(condition, tags or {})
            if effect == "Deny" and holds is True:
                return "denied"
            if effect == "Allow" and holds is not False:
                allowed = True
        return "allowed" if allowed else "not-allowed"


def invoke_sources(policy):
    """``AWS:SourceArn`` values of the statements that let EventBridge invoke the function
    (events.amazonaws.com, lambda:InvokeFunction), as ``fnmatch`` patterns: those of
    ``ArnLike``/``StringLike`` as written, those of ``ArnEquals``/``StringEquals`` escaped."""
    sources = set()
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal")
        service = principal.get("Service") if isinstance(principal, dict) else principal
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if statement.get("Effect") != "Allow" or service != "events.amazonaws.com":
            continue
        if not {"lambda:InvokeFunction", "lambda:*"} & set(actions):
            continue
        for operator, condition in (statement.get("Condition") or {}).items():
            arns = condition.get("AWS:SourceArn") or condition.get("aws:SourceArn") or []
            for arn in arns if isinstance(arns, list) else [arns]:
                sources.add(arn if "like" in operator.lower() else _glob_escape(arn))
    return sources


def _glob_escape(text):
    return re.sub(r"([*?\[])", r"[\1]", text)


def invocation_admitted(sources, rule_arn):
    """Whether one of ``invoke_sources`` admits the rule."""
    return any(fnmatchcase(rule_arn, source) for source in sources)
