# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""From inventory to what is protected where: the instances and their regions and accounts,
the regions AWS knows, and one deployment per account and region. Pure: no AWS calls (the
regions come from botocore's data file, read without importing it)."""

import importlib.util
import json
import os
import re

from ansible_collections.guardrails.ec2.plugins.module_utils.validate import (
    ARN,
    ProtectionError,
    validate_instance_id,
    validate_region,
)

# botocore's list of partitions and their regions, under its package directory.
PARTITIONS_DATA = ("data", "partitions.json")


def known_regions():
    """Regions botocore knows in every partition, or None when it cannot tell.

    Read from botocore's ``data/partitions.json`` (7 KB, the endpoint rules' list of regions)
    without importing botocore: the import and ``endpoints.json`` cost about 0.2 s, and every
    planning task runs the filter in a fresh worker process. Older botocore without that file:
    its session's list for EC2."""
    spec = importlib.util.find_spec("botocore")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(location, *PARTITIONS_DATA)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                partitions = json.load(handle).get("partitions") or []
            # "aws-global" and the like name global endpoints, not regions.
            regions = {
                region
                for partition in partitions
                for region in partition.get("regions") or {}
                if not region.endswith("-global")
            }
            return regions or None
    if spec is None:
        return None
    import botocore.session  # pylint: disable=import-outside-toplevel

    session = botocore.session.get_session()
    regions = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return regions or None


def extra_regions(regions, region, tag_mode, require_instances):
    """Regions to deploy to besides those of the instances: ``regions``, and the default
    ``region`` in tag mode or when instances are not required."""
    extra = set(regions or [])
    if region and (tag_mode or not require_instances):
        extra.add(region)
    return sorted(extra)


ACCOUNT_ID = re.compile(r"^\d{12}$")


def validate_account_id(account, source):
    account = str(account) if isinstance(account, int) else account
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
        raise ProtectionError(f"{source} {account!r} is not an AWS account id (12 digits)")
    return account


def validate_assume_roles(roles, variable="stop_protection_assume_roles"):
    """``{account id: role ARN}``: the role to assume to deploy in each account."""
    if not roles:
        return {}
    if not isinstance(roles, dict):
        raise ProtectionError(f"{variable} must map account ids to role ARNs, got {roles!r}")
    checked = {}
    for account, arn in roles.items():
        account = validate_account_id(account, f"{variable} key")
        match = ARN.fullmatch(arn) if isinstance(arn, str) else None
        if not match or match.group("service") != "iam" or not match.group("resource").startswith("role/"):
            raise ProtectionError(f"{variable}[{account!r}] {arn!r} is not an IAM role ARN")
        if match.group("account") != account:
            raise ProtectionError(
                f"{variable}[{account!r}] {arn!r} is a role of account {match.group('account')}, not {account}"
            )
        checked[account] = arn
    return checked


# The inventory host that deploys with the play's own credentials; one more host per
# account of stop_protection_assume_roles.
OWN_ACCOUNT_HOST = "localhost"


def instance_accounts(hosts, explicit_ids):
    """``{instance_id: account id}`` for the instances whose account the inventory names:
    ``account_id`` (or the aws_ec2 plugin's ``owner_id``) of a host, ``account_id`` of an
    explicit ``{instance_id, region, account_id}`` entry."""
    found = {}
    if explicit_ids:
        for position, entry in enumerate(explicit_ids):
            if isinstance(entry, dict) and entry.get("account_id") not in (None, ""):
                source = f"account_id of stop_protection_instance_ids[{position}]"
                found[entry.get("instance_id")] = validate_account_id(entry["account_id"], source)
        return found
    for hostname, hostvars in hosts:
        account = hostvars.get("account_id") or hostvars.get("owner_id")
        if account not in (None, ""):
            found[hostvars.get("instance_id")] = validate_account_id(account, f"account of host {hostname}")
    return found


def plan_deployments(instances, accounts, assume_roles, tag_mode=False, regions=()):
    """One deployment per account and region: ``[{"host", "account_id", "assume_role_arn",
    "region", "regions", "instance_ids"}]``, so that every pair deploys in parallel.

    ``instances`` are ``(instance_id, region, source)`` from ``collect_instances``;
    ``accounts`` from ``instance_accounts``. Instances of an account named in
    ``assume_roles`` go to that account's deployments (its role is assumed); all others to
    those with the play's own credentials. ``regions`` (the extra regions, and the default
    one where it counts) are deployed or cleaned in every account that tag mode covers (the
    own one, and in tag mode each listed account). Hosts are named ``own-<region>`` and
    ``<account>-<region>``. With nothing selected at all, one deployment ``localhost``
    keeps the run's own settings, so that the role reports what is missing.
    """
    assume_roles = validate_assume_roles(assume_roles)
    pairs = {}
    covering = [None, *assume_roles] if tag_mode else [None]
    for account in covering:
        for region in regions:
            pairs.setdefault((account, region), [])
    for instance_id, region, _source in instances:
        account = accounts.get(instance_id)
        key = account if account in assume_roles else None
        pairs.setdefault((key, region), []).append({"instance_id": instance_id, "region": region})
    if not pairs:
        return [
            {
                "host": OWN_ACCOUNT_HOST,
                "account_id": "",
                "assume_role_arn": "",
                "region": "",
                "regions": None,
                "instance_ids": [],
            }
        ]
    return [
        {
            "host": f"{account or 'own'}-{region}",
            "account_id": account or "",
            "assume_role_arn": assume_roles.get(account, ""),
            "region": region,
            "regions": [region],
            "instance_ids": pairs[(account, region)],
        }
        for account, region in sorted(pairs, key=lambda key: (key[0] is not None, key[0] or "", key[1]))
    ]


def collect_instances(hosts, explicit_ids, default_region, known_regions=None):
    """``[(instance_id, region, source)]`` from inventory hosts or an explicit list.

    ``hosts`` are ``(inventory_hostname, hostvars)`` pairs; each names its instance in
    ``instance_id`` and its region in ``placement.region``, else ``region``, else the default.
    ``explicit_ids`` (when given) wins over the hosts: strings, or dicts with
    ``instance_id`` and optional ``region``.
    """
    found = []
    if isinstance(explicit_ids, str):
        # -e stop_protection_instance_ids=i-1,i-2 arrives as a string: read it as Ansible's
        # list type reads one (comma-separated), never character by character.
        explicit_ids = [part.strip() for part in explicit_ids.split(",") if part.strip()]
    if explicit_ids:
        for position, entry in enumerate(explicit_ids):
            source = f"stop_protection_instance_ids[{position}]"
            if isinstance(entry, dict):
                instance_id, region = entry.get("instance_id"), entry.get("region") or default_region
            else:
                instance_id, region = entry, default_region
            found.append((validate_instance_id(instance_id, source), region, source))
    else:
        for hostname, hostvars in hosts:
            source = f"host {hostname}"
            instance_id = hostvars.get("instance_id")
            if instance_id is None:
                raise ProtectionError(f"{source} has no instance_id hostvar")
            placement = hostvars.get("placement") or {}
            region = placement.get("region") if isinstance(placement, dict) else None
            region = region or hostvars.get("region") or default_region
            found.append((validate_instance_id(instance_id, source), region, source))
    for instance_id, region, source in found:
        if not region:
            raise ProtectionError(
                f"{source} ({instance_id}) names no region and stop_protection_region is not set"
            )
        validate_region(region, known_regions, source=f"region of {source}")
    seen = {}
    duplicates = []
    for instance_id, _region, source in found:
        if instance_id in seen:
            duplicates.append(f"{instance_id} ({seen[instance_id]} and {source})")
        else:
            seen[instance_id] = source
    if duplicates:
        raise ProtectionError("instance ids listed more than once: " + "; ".join(duplicates))
    return found
