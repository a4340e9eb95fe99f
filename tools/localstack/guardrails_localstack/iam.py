"""IAM enforced for IAM users and role sessions, as AWS does; root test keys stay unrestricted.

LocalStack community stores policies but never evaluates them, so a function role without
``ec2:StartInstances`` restarts instances all the same. This request handler runs after
LocalStack has parsed a request and before the service handles it. When the request is
signed with an IAM user's access key or a role session's temporary key (as the Lambda
executor hands every function), it collects that principal's identity policies (inline,
managed, and for users their groups') and refuses the request with AWS's error codes when
no statement allows it or one denies it. Requests with the root test keys and LocalStack's
own internal calls (EventBridge invoking Lambda, Lambda writing logs) pass untouched.

Evaluation: moto's ``IAMPolicyStatement`` (installed with LocalStack) judges Action,
NotAction and Resource of each statement. moto leaves out NotResource and evaluates
conditions only loosely (a missing key counts as a match, and an unmet condition turns an
Allow into a Deny), so those two parts are evaluated here, with AWS's rules for missing
keys, ``...IfExists``, ``Null`` and the ``ForAnyValue:``/``ForAllValues:`` qualifiers.
Whatever cannot be evaluated (an operator or condition key not listed below, an AWS
managed policy, whose document LocalStack does not hold) fails safe as AWS would: an Allow
that depends on it does not allow, a Deny that depends on it denies.

Turned on by ``GUARDRAILS_ENFORCE_IAM=1`` (the launcher's default).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import urllib.parse
from dataclasses import dataclass, field

from localstack.aws.api import CommonServiceException, RequestContext
from localstack.aws.chain import HandlerChain
from localstack.http import Response
from localstack.utils.aws.request_context import extract_access_key_id_from_auth_header
from moto.iam.access_control import IAMPolicyStatement, PermissionResult

LOG = logging.getLogger(__name__)

# Calls AWS answers for any authenticated caller, whatever its policies say.
ALWAYS_ALLOWED = {"sts:getcalleridentity"}
# IAM action names that differ from the API operation's name.
ACTION_NAMES = {("lambda", "Invoke"): "InvokeFunction", ("lambda", "InvokeAsync"): "InvokeFunction"}
# Condition operators evaluated here (each also with the IfExists suffix).
STRING_OPERATORS = {
    "stringequals": (lambda want, have: have == want, False),
    "stringnotequals": (lambda want, have: have == want, True),
    "stringequalsignorecase": (lambda want, have: have.lower() == want.lower(), False),
    "stringnotequalsignorecase": (lambda want, have: have.lower() == want.lower(), True),
    "stringlike": (lambda want, have: fnmatch.fnmatchcase(have, want), False),
    "stringnotlike": (lambda want, have: fnmatch.fnmatchcase(have, want), True),
    "arnequals": (lambda want, have: have == want, False),
    "arnnotequals": (lambda want, have: have == want, True),
    "arnlike": (lambda want, have: fnmatch.fnmatchcase(have, want), False),
    "arnnotlike": (lambda want, have: fnmatch.fnmatchcase(have, want), True),
    "bool": (lambda want, have: have.lower() == want.lower(), False),
}
# Condition keys the request context can hold; others cannot be evaluated (fail safe).
KNOWN_KEY_PREFIXES = ("aws:resourcetag/", "ec2:resourcetag/", "aws:requesttag/")
KNOWN_KEYS = {
    "aws:tagkeys",
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principaltype",
    "aws:requestedregion",
    "ec2:region",
    "kms:grantisforawsresource",
    "iam:passedtoservice",
}
# Calls that hand a role to a service: AWS also checks iam:PassRole on it for the caller.
PASSES_ROLE = {
    ("lambda", "CreateFunction"): "lambda.amazonaws.com",
    ("lambda", "UpdateFunctionConfiguration"): "lambda.amazonaws.com",
}


def enabled() -> bool:
    return os.environ.get("GUARDRAILS_ENFORCE_IAM", "0").lower() in ("1", "true", "yes")


# --- principals -------------------------------------------------------------------------


@dataclass
class Principal:
    arn: str  # who signed: the user, or the role session
    account_id: str
    kind: str  # "AssumedRole" or "User"
    principal_arn: str  # aws:PrincipalArn: the user, or the role (not the session)
    documents: list[dict] = field(default_factory=list)
    unevaluable: list[str] = field(default_factory=list)  # policies whose text is not held


def _iam_store(account_id: str):
    from localstack.services.iam.models import iam_stores

    return iam_stores[account_id]["us-east-1"]


def _load(document) -> dict:
    if isinstance(document, dict):
        return document
    text = urllib.parse.unquote(document) if document.lstrip().startswith("%") else document
    return json.loads(text)


def _managed_documents(store, arns: list[str], principal: Principal) -> None:
    for arn in arns:
        entity = store.MANAGED_POLICIES.get(arn)
        if entity is None:
            principal.unevaluable.append(arn)
            continue
        default = entity.versions.get(entity.policy.get("DefaultVersionId"))
        if default is None:
            principal.unevaluable.append(arn)
            continue
        principal.documents.append(_load(default["Document"]))


def principal_for(access_key_id: str | None, account_id: str) -> Principal | None:
    """The IAM user or role session that owns this access key; None for the root test keys."""
    if not access_key_id:
        return None
    from localstack.services.sts.models import sts_stores

    session = sts_stores[account_id]["us-east-1"].credentials.get(access_key_id)
    if session is not None:
        if ":assumed-role/" not in session.arn:
            return None  # federation tokens and the like: not evaluated here
        role_name = session.arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
        store = _iam_store(session.account_id)
        role = store.ROLES.get(role_name)
        role_arn = role.role["Arn"] if role else f"arn:aws:iam::{session.account_id}:role/{role_name}"
        principal = Principal(session.arn, session.account_id, "AssumedRole", role_arn)
        if role is None:
            return principal  # the role was deleted: its sessions may do nothing
        principal.documents.extend(_load(doc) for doc in role.inline_policies.values())
        _managed_documents(store, list(role.attached_policy_arns), principal)
        return principal
    store = _iam_store(account_id)
    user_name = store.ACCESS_KEY_INDEX.get(access_key_id)
    if user_name is None or user_name not in store.USERS:
        return None
    user = store.USERS[user_name]
    principal = Principal(user.user["Arn"], account_id, "User", user.user["Arn"])
    principal.documents.extend(_load(doc) for doc in user.inline_policies.values())
    _managed_documents(store, list(user.attached_policy_arns), principal)
    for group in store.GROUPS.values():
        if user_name in group.member_user_names:
            principal.documents.extend(_load(doc) for doc in group.inline_policies.values())
            _managed_documents(store, list(group.attached_policy_arns), principal)
    return principal


# --- evaluation -------------------------------------------------------------------------


class Unevaluable(Exception):
    """A condition this evaluator does not know; the caller fails safe."""


def _values(value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(item).lower() if isinstance(item, bool) else str(item) for item in items]


def _known(key: str) -> bool:
    return key in KNOWN_KEYS or key.startswith(KNOWN_KEY_PREFIXES)


def condition_holds(operator: str, key: str, wanted, context: dict[str, list[str]]) -> bool:
    """One ``operator: {key: wanted}`` entry against the request context (keys lowercase)."""
    key = key.lower()
    if not _known(key):
        raise Unevaluable(f"condition key {key}")
    qualifier, _, op = operator.rpartition(":")
    op = op.lower()
    if_exists = op.endswith("ifexists")
    if if_exists:
        op = op.removesuffix("ifexists")
    present = key in context
    have = context.get(key, [])
    wants = _values(wanted)
    if op == "null":
        return any((want.lower() == "true") == (not present) for want in wants)
    if op not in STRING_OPERATORS:
        raise Unevaluable(f"condition operator {operator}")
    test, negated = STRING_OPERATORS[op]

    def one(value: str) -> bool:
        hit = any(test(want, value) for want in wants)
        return not hit if negated else hit

    qualifier = qualifier.lower()
    if qualifier == "forallvalues":
        return all(one(value) for value in have)
    if qualifier == "foranyvalue":
        return any(one(value) for value in have)
    if qualifier:
        raise Unevaluable(f"condition qualifier {qualifier}")
    if not present:
        return if_exists or negated
    if negated:
        return all(one(value) for value in have)
    return any(one(value) for value in have)


def conditions_hold(conditions: dict, context: dict[str, list[str]]) -> bool:
    return all(
        condition_holds(operator, key, wanted, context)
        for operator, entries in conditions.items()
        for key, wanted in entries.items()
    )


def _as_list(value) -> list[str]:
    return value if isinstance(value, list) else [value]


def statement_result(statement: dict, action: str, resource: str, context: dict) -> PermissionResult:
    """PERMITTED, DENIED or NEUTRAL for one statement, failing safe on what is unknown."""
    deny = statement.get("Effect") == "Deny"
    # moto matches Action/NotAction and Resource; it is case-sensitive where IAM actions
    # are not, so both sides are lowercased. NotResource is judged here.
    plain = {"Effect": statement.get("Effect")}
    for element in ("Action", "NotAction"):
        if element in statement:
            plain[element] = [item.lower() for item in _as_list(statement[element])]
    if "NotResource" in statement:
        if any(fnmatch.fnmatchcase(resource, pattern) for pattern in _as_list(statement["NotResource"])):
            return PermissionResult.NEUTRAL
        plain["Resource"] = "*"
    else:
        plain["Resource"] = statement.get("Resource", [])
    if not plain["Resource"]:
        return PermissionResult.NEUTRAL  # an identity policy statement needs a resource
    result = IAMPolicyStatement(plain).is_action_permitted(action.lower(), resource)
    if result == PermissionResult.NEUTRAL:
        return result
    try:
        holds = conditions_hold(statement.get("Condition") or {}, context)
    except Unevaluable as exc:
        LOG.info("IAM enforcement cannot evaluate %s; failing safe (%s)", exc, statement.get("Effect"))
        holds = deny
    if not holds:
        return PermissionResult.NEUTRAL
    return PermissionResult.DENIED if deny else PermissionResult.PERMITTED


def evaluate(documents: list[dict], action: str, resource: str, context: dict) -> PermissionResult:
    """AWS's identity-policy logic: an explicit Deny wins, else an Allow, else implicit deny."""
    allowed = False
    for document in documents:
        statements = document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            result = statement_result(statement, action, resource, context)
            if result == PermissionResult.DENIED:
                return result
            allowed = allowed or result == PermissionResult.PERMITTED
    return PermissionResult.PERMITTED if allowed else PermissionResult.NEUTRAL


# --- requests -------------------------------------------------------------------------


def iam_action(context: RequestContext) -> str:
    service = context.service.service_name
    operation = context.operation.name
    return f"{service}:{ACTION_NAMES.get((service, operation), operation)}"


def _instance_tags(account_id: str, region: str, instance_id: str) -> dict[str, str]:
    from localstack.services.ec2.models import get_ec2_backend

    return dict(get_ec2_backend(account_id, region).tags.get(instance_id, {}))


def _tag_context(tags: dict[str, str], prefix: str) -> dict[str, list[str]]:
    return {f"{prefix}{key.lower()}": [value] for key, value in tags.items()}


def _request_tags(request: dict) -> dict[str, str]:
    """Tags a request sets: a list of ``{Key, Value}`` (EC2, IAM) or a map (Lambda, Logs)."""
    given = request.get("Tags") or request.get("tags") or []
    if isinstance(given, dict):
        tags = {str(key): str(value) for key, value in given.items()}
    else:
        tags = {tag["Key"]: tag.get("Value", "") for tag in given}
    for spec in request.get("TagSpecifications") or []:
        tags.update({tag["Key"]: tag.get("Value", "") for tag in spec.get("Tags") or []})
    return tags


def lambda_function_arn(function: str, qualifier: str | None, region: str, account: str) -> str:
    """The ARN Lambda authorises a call on: qualified when the call names a version or alias.

    Lambda accepts a name, a partial ARN (``<account>:function:<name>``) or an ARN, each
    optionally with ``:<version or alias>``, or the qualifier as its own ``Qualifier``
    parameter. A call that carries a qualifier is authorised against the qualified ARN
    (``function:NAME:7``), which a policy's unqualified ARN does not cover (AWS Lambda
    developer guide, "Fine-tuning the Resources and Conditions sections of policies").
    """
    if function.startswith("arn:"):
        parts = function.split(":")
        base, given = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else None)
    else:
        parts = function.split(":")
        if len(parts) >= 3 and parts[1] == "function":  # partial ARN
            account, parts = parts[0], parts[2:]
        base, given = (
            f"arn:aws:lambda:{region}:{account}:function:{parts[0]}",
            (parts[1] if len(parts) > 1 else None),
        )
    qualifier = qualifier or given
    return f"{base}:{qualifier}" if qualifier else base


def resources(context: RequestContext) -> list[tuple[str, dict[str, list[str]]]]:
    """The resource ARNs a request acts on, each with its resource-specific condition keys.

    Operations not listed act on ``*``: a policy that scopes them to ARNs then denies
    them, which is the safe side (the fidelity table in the harness README says so).
    """
    service = context.service.service_name
    operation = context.operation.name
    request = context.service_request or {}
    account, region = context.account_id, context.region
    if service == "ec2":
        ids = list(request.get("InstanceIds") or [])
        if request.get("InstanceId"):  # ModifyInstanceAttribute, DescribeInstanceAttribute, ...
            ids = [request["InstanceId"]]
        if operation in ("CreateTags", "DeleteTags"):
            ids = [rid for rid in request.get("Resources") or [] if rid.startswith("i-")]
        if ids:
            found = []
            for instance_id in ids:
                tags = _instance_tags(account, region, instance_id)
                keys = _tag_context(tags, "ec2:resourcetag/") | _tag_context(tags, "aws:resourcetag/")
                found.append((f"arn:aws:ec2:{region}:{account}:instance/{instance_id}", keys))
            return found
        return [("*", {})]
    name = None
    if service == "sns":
        name = request.get("TopicArn") or request.get("TargetArn")
    elif service == "sqs" and request.get("QueueUrl"):
        name = f"arn:aws:sqs:{region}:{account}:{request['QueueUrl'].rstrip('/').rsplit('/', 1)[-1]}"
    elif service == "sqs" and request.get("QueueName"):  # GetQueueUrl, CreateQueue
        owner = request.get("QueueOwnerAWSAccountId") or account
        name = f"arn:aws:sqs:{region}:{owner}:{request['QueueName']}"
    elif service == "lambda" and request.get("FunctionName"):
        name = lambda_function_arn(request["FunctionName"], request.get("Qualifier"), region, account)
    elif service == "lambda" and request.get("Resource"):  # ListTags, TagResource, UntagResource
        name = request["Resource"]
    elif service == "logs" and request.get("resourceArn"):  # tags by ARN
        name = request["resourceArn"].removesuffix(":*")
    elif service == "logs" and request.get("logGroupName"):
        name = f"arn:aws:logs:{region}:{account}:log-group:{request['logGroupName']}"
        if request.get("logStreamName"):
            name += f":log-stream:{request['logStreamName']}"
    elif service == "events" and (request.get("Name") or request.get("Rule")):
        rule = request.get("Name") or request.get("Rule")
        name = rule if rule.startswith("arn:") else f"arn:aws:events:{region}:{account}:rule/{rule}"
    elif service == "kms" and request.get("KeyId"):
        key = request["KeyId"]
        name = key if key.startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}"
    elif service == "iam":
        if request.get("RoleName"):
            name = f"arn:aws:iam::{account}:role/{request['RoleName']}"
        elif request.get("PolicyArn"):
            name = request["PolicyArn"]
        elif request.get("PolicyName") and operation == "CreatePolicy":
            name = f"arn:aws:iam::{account}:policy{request.get('Path') or '/'}{request['PolicyName']}"
        elif request.get("UserName"):
            name = f"arn:aws:iam::{account}:user/{request['UserName']}"
    elif service == "sts" and request.get("RoleArn"):
        name = request["RoleArn"]
    elif service == "cloudwatch" and request.get("AlarmName"):
        name = f"arn:aws:cloudwatch:{region}:{account}:alarm:{request['AlarmName']}"
    elif service == "cloudwatch" and operation == "DeleteAlarms" and request.get("AlarmNames"):
        return [
            (f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm}", {}) for alarm in request["AlarmNames"]
        ]
    return [(name or "*", {})]


def request_context(context: RequestContext, principal: Principal) -> dict[str, list[str]]:
    request = context.service_request or {}
    tags = _request_tags(request) if isinstance(request, dict) else {}
    keys = {
        "aws:principalarn": [principal.principal_arn],
        "aws:principalaccount": [principal.account_id],
        "aws:principaltype": [principal.kind],
        "aws:requestedregion": [context.region],
        "ec2:region": [context.region],
    }
    if tags:
        keys["aws:tagkeys"] = list(tags)
        keys |= _tag_context(tags, "aws:requesttag/")
    if context.service.service_name == "kms" and context.operation.name == "CreateGrant":
        # A grant asked for directly by the caller, not by an AWS service on its behalf.
        keys["kms:grantisforawsresource"] = ["false"]
    return keys


def error_code(service: str, protocol: str) -> str:
    if service == "ec2":
        return "UnauthorizedOperation"
    if service == "sqs" or protocol in ("query", "rest-xml"):
        return "AccessDenied"
    return "AccessDeniedException"


def authorize(principal: Principal, action: str, targets, keys: dict, service: str, protocol: str) -> None:
    """Raise AWS's access-denied error unless every target resource is allowed."""
    for resource, resource_keys in targets:
        result = evaluate(principal.documents, action, resource, keys | resource_keys)
        if result == PermissionResult.PERMITTED:
            continue
        why = (
            "with an explicit deny in an identity-based policy"
            if result == PermissionResult.DENIED
            else f"because no identity-based policy allows the {action} action"
        )
        raise CommonServiceException(
            code=error_code(service, protocol),
            message=f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} {why}",
            status_code=403,
        )


def enforce_iam(chain: HandlerChain, context: RequestContext, response: Response) -> None:
    """Request handler: refuse what the signing principal's identity policies do not allow."""
    if context.is_internal_call or context.service is None or context.operation is None:
        return
    principal = principal_for(
        extract_access_key_id_from_auth_header(context.request.headers), context.account_id
    )
    if principal is None:
        return
    action = iam_action(context)
    if action.lower() in ALWAYS_ALLOWED:
        return
    service = context.service.service_name
    keys = request_context(context, principal)
    authorize(principal, action, resources(context), keys, service, context.service.protocol)
    passed_to = PASSES_ROLE.get((service, context.operation.name))
    role = (context.service_request or {}).get("Role") if passed_to else None
    if role:
        authorize(
            principal,
            "iam:PassRole",
            [(role, {"iam:passedtoservice": [passed_to]})],
            keys,
            service,
            context.service.protocol,
        )


def install() -> None:
    """Add the handler to LocalStack's chain (after parsing, before the service runs)."""
    from localstack.aws.handlers import serve_custom_service_request_handlers

    if enabled() and enforce_iam not in serve_custom_service_request_handlers.handlers:
        serve_custom_service_request_handlers.append(enforce_iam)
        LOG.info("IAM enforcement is on for IAM users and role sessions")
