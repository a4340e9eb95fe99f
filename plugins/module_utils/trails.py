# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether CloudTrail records the calls the deployment's attribution and tamper rules watch:
those rules match CloudTrail's management events, so without a trail that logs management
writes in the region they see nothing. Part of stop_protection_verify's audit.

Clients are wrapped with AWSRetry by the module (calls pass ``aws_retry=True``).
"""

try:
    from botocore.exceptions import ClientError
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.guardrails.ec2.plugins.module_utils.naming import TAMPER_KINDS

WATCHING_KINDS = ("attribution", *TAMPER_KINDS)


def records_management_writes(selectors):
    """Whether a trail's event selectors (``GetEventSelectors``) record management write
    events: no selectors at all is CloudTrail's default (every management event)."""
    advanced = selectors.get("AdvancedEventSelectors")
    if advanced:
        for selector in advanced:
            fields = {field["Field"]: field for field in selector.get("FieldSelectors") or []}
            if "Management" not in (fields.get("eventCategory") or {}).get("Equals", []):
                continue
            read_only = fields.get("readOnly")
            if (
                read_only is None
                or "false" in read_only.get("Equals", [])
                or "true" in read_only.get("NotEquals", [])
            ):
                return True
        return False
    basic = selectors.get("EventSelectors")
    if not basic:
        return True
    return any(
        selector.get("IncludeManagementEvents", True)
        and selector.get("ReadWriteType", "All") in ("All", "WriteOnly")
        for selector in basic
    )


def management_trails(cloudtrail, region):
    """Names of the trails that log this region's management write events now (trails of
    the region and multi-region trails, an organization's included)."""
    found = []
    for trail in cloudtrail.describe_trails(aws_retry=True, includeShadowTrails=True).get("trailList") or []:
        if trail.get("HomeRegion") != region and not trail.get("IsMultiRegionTrail"):
            continue
        arn = trail.get("TrailARN") or trail["Name"]
        if not cloudtrail.get_trail_status(aws_retry=True, Name=arn).get("IsLogging"):
            continue
        if records_management_writes(cloudtrail.get_event_selectors(aws_retry=True, TrailName=arn)):
            found.append(trail["Name"])
    return found


def check_trails(clients, deployment, region, warnings, report):
    """The deployment's attribution and tamper rules see nothing without a trail that
    records management events: say whether one does (``report["management_trails"]``)."""
    if not deployment.get("watching_rules") or "cloudtrail" not in clients:
        return
    try:
        trails = management_trails(clients["cloudtrail"], region)
    except ClientError as exc:
        warnings.append(
            f"Could not check for a CloudTrail trail ({exc.response['Error']['Code']}: cloudtrail:DescribeTrails, "
            "cloudtrail:GetTrailStatus, cloudtrail:GetEventSelectors); the attribution and tamper rules need one."
        )
        return
    report["management_trails"] = trails
    if not trails:
        warnings.append(
            f"No CloudTrail trail logs management events in {region}: the rules "
            f"{', '.join(deployment['watching_rules'])} will see no calls (create a trail that records "
            "management events, read and write, or at least write)."
        )
