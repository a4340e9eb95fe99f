"""Read-only probes that molecule scenarios use where no Ansible module reads what they need.

    aws_probe.py leftovers --name EC2Protect --regions us-east-1,eu-west-1
    aws_probe.py receive --queue-name NAME --region us-east-1 --expect 1 --timeout 60
    aws_probe.py decisions --name EC2Protect --region us-east-1
    aws_probe.py policy --name EC2Protect --region us-east-1

Talks to AWS_ENDPOINT_URL with the usual AWS credentials; prints one JSON document.
"""

import argparse
import importlib.util
import json
import sys
import time
import urllib.parse
from pathlib import Path

import boto3


def _naming():
    """The collection's own names (plugins/module_utils/naming.py, standard library only):
    the probes look for exactly what the role creates."""
    path = Path(__file__).resolve().parents[3] / "plugins" / "module_utils" / "naming.py"
    spec = importlib.util.spec_from_file_location("guardrails_naming", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


naming = _naming()


def leftovers(name, regions):
    """Every resource with the deployment's names that still exists."""
    found = []
    names = naming.resource_names(name)
    iam = boto3.client("iam", region_name=regions[0])
    roles = {r["RoleName"] for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"]}
    policies = [
        p["PolicyName"]
        for page in iam.get_paginator("list_policies").paginate(Scope="Local")
        for p in page["Policies"]
    ]
    for region in regions:
        regional = naming.regional_names(name, region)
        if regional["role"] in roles:
            found.append(f"role {regional['role']}")
        found.extend(
            f"policy {policy}" for policy in policies if naming.policy_index(regional["policy"], policy)
        )
        lam = boto3.client("lambda", region_name=region)
        if any(
            f["FunctionName"] == names["function"]
            for page in lam.get_paginator("list_functions").paginate()
            for f in page["Functions"]
        ):
            found.append(f"function {names['function']} in {region}")
        events = boto3.client("events", region_name=region)
        # "<name>.<n>", and "<name>-<n>" as written before 1.1.0
        found.extend(
            f"rule {r['Name']} in {region}"
            for r in events.list_rules(NamePrefix=name)["Rules"]
            if naming.rule_kind(name, r["Name"]) is not None
        )
        logs = boto3.client("logs", region_name=region)
        groups = logs.describe_log_groups(logGroupNamePrefix=names["log_group"])["logGroups"]
        found.extend(
            f"log group {g['logGroupName']} in {region}"
            for g in groups
            if g["logGroupName"] == names["log_group"]
        )
    return {"leftovers": found}


def receive(queue_name, region, expect, timeout, subject_prefix=None):
    """Wait for `expect` messages on a queue (deleting them); return their bodies. With
    `subject_prefix`, only SNS notifications whose subject starts with it count; the others
    (an alarm's notification on the same topic, say) are returned as `others`."""
    sqs = boto3.client("sqs", region_name=region)
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    bodies, others = [], []
    deadline = time.monotonic() + timeout
    while len(bodies) < expect and time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in reply.get("Messages", []):
            body = json.loads(message["Body"])
            counted = subject_prefix is None or str(body.get("Subject") or "").startswith(subject_prefix)
            (bodies if counted else others).append(body)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return {"messages": bodies, "others": others}


def decisions(name, region):
    """The restart function's JSON decision lines, oldest first; the sweep's heartbeat
    lines (``swept``) are not decisions and are left out."""
    logs = boto3.client("logs", region_name=region)
    group = naming.resource_names(name)["log_group"]
    lines = []
    for page in logs.get_paginator("describe_log_streams").paginate(logGroupName=group):
        for stream in page["logStreams"]:
            events = logs.get_log_events(
                logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
            )
            for event in events["events"]:
                text = event["message"].strip()
                line = json.loads(text) if text.startswith("{") else None
                if line and line.get("action") != "swept":
                    lines.append((event["timestamp"], line))
    return {"decisions": [entry[1] for entry in sorted(lines, key=lambda item: item[0])]}


def policy(name, region):
    """One region's managed policies (name -> document) and those attached to its role
    ``<name>-<region>``."""
    regional = naming.regional_names(name, region)
    base = regional["policy"]
    iam = boto3.client("iam", region_name=region)
    documents = {}
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        for found in page["Policies"]:
            if not naming.policy_index(base, found["PolicyName"]):
                continue
            version = iam.get_policy_version(PolicyArn=found["Arn"], VersionId=found["DefaultVersionId"])
            document = version["PolicyVersion"]["Document"]
            if isinstance(document, str):  # boto3 decodes it on AWS; some emulators return the text
                document = json.loads(urllib.parse.unquote(document))
            documents[found["PolicyName"]] = document
    try:
        attached = [
            p["PolicyName"]
            for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=regional["role"])
            for p in page["AttachedPolicies"]
        ]
    except iam.exceptions.NoSuchEntityException:
        attached = []
    return {"role": regional["role"], "policies": documents, "attached": sorted(attached)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    left = commands.add_parser("leftovers")
    left.add_argument("--name", required=True)
    left.add_argument("--regions", required=True)
    rec = commands.add_parser("receive")
    rec.add_argument("--queue-name", required=True)
    rec.add_argument("--region", required=True)
    rec.add_argument("--expect", type=int, default=1)
    rec.add_argument("--timeout", type=float, default=60)
    rec.add_argument("--subject-prefix")
    dec = commands.add_parser("decisions")
    dec.add_argument("--name", required=True)
    dec.add_argument("--region", required=True)
    pol = commands.add_parser("policy")
    pol.add_argument("--name", required=True)
    pol.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    if args.command == "leftovers":
        result = leftovers(args.name, args.regions.split(","))
    elif args.command == "receive":
        result = receive(args.queue_name, args.region, args.expect, args.timeout, args.subject_prefix)
    elif args.command == "decisions":
        result = decisions(args.name, args.region)
    else:
        result = policy(args.name, args.region)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
