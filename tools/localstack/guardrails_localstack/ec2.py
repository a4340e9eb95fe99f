"""An EC2 provider that publishes instance state-change events, plus a fault switch.

LocalStack's EC2 is moto underneath: state changes are instant and nothing reaches
EventBridge. This provider wraps Run/Start/Stop/TerminateInstances, lets moto do the
work, and then publishes "EC2 Instance State-change Notification" events to the default
bus of the same account and region, the way AWS does (pending -> running,
stopping -> stopped, shutting-down -> terminated), only for instances whose state really
changed.

The fault switch lets tests make an EC2 operation fail on purpose for chosen instance ids
with a chosen AWS error code. It is off until a test arms it through
``/_guardrails/faults`` (see ``FaultRegistry``). ``/_guardrails/shutdown`` stops
instances as if ``shutdown`` had been run inside the OS
(``Client.InstanceInitiatedShutdown``).

Selected with ``PROVIDER_OVERRIDE_EC2=guardrails``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

from localstack.aws.api import CommonServiceException, RequestContext, handler
from localstack.aws.connect import connect_to
from localstack.http import Request
from localstack.services.ec2.models import get_ec2_backend
from localstack.services.ec2.provider import Ec2Provider
from localstack.services.edge import ROUTER
from localstack.services.moto import call_moto
from localstack.services.plugins import Service, aws_provider
from moto.ec2.models.instances import StateReason

LOG = logging.getLogger(__name__)

DETAIL_TYPE = "EC2 Instance State-change Notification"
# EventBridge delivers each event on its own thread; without a gap the final state can
# overtake the intermediate one.
INTERMEDIATE_STATE_GAP_SECONDS = 0.1
# Error codes AWS answers with HTTP 5xx; everything else is a client error.
SERVER_ERROR_CODES = {"InsufficientInstanceCapacity": 500, "InternalError": 500, "Unavailable": 503}
FAULTABLE_OPERATIONS = {"RunInstances", "StartInstances", "StopInstances", "TerminateInstances"}


class FaultRegistry:
    """Faults armed by tests: an operation fails for chosen instance ids with a chosen code.

    A fault is ``{"operation": "StartInstances", "instance_ids": ["i-..."] or ["*"],
    "error_code": "InsufficientInstanceCapacity", "count": N}``; ``count`` (optional) is
    how many calls fail before the fault clears itself. AWS fails the whole call when one
    of its instances cannot be handled, and so does this.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict] = []

    @staticmethod
    def validate(fault: dict) -> dict:
        if fault.get("operation") not in FAULTABLE_OPERATIONS:
            raise ValueError(
                f"operation must be one of {sorted(FAULTABLE_OPERATIONS)}, got {fault.get('operation')!r}"
            )
        ids = fault.get("instance_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"instance_ids must be a non-empty list of strings, got {ids!r}")
        if not isinstance(fault.get("error_code"), str) or not fault["error_code"]:
            raise ValueError(f"error_code must be a non-empty string, got {fault.get('error_code')!r}")
        count = fault.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer, got {count!r}")
        return {
            "operation": fault["operation"],
            "instance_ids": list(ids),
            "error_code": fault["error_code"],
            "count": count,
            "message": fault.get("message"),
        }

    def replace(self, faults: list[dict]) -> list[dict]:
        checked = [self.validate(fault) for fault in faults]
        with self._lock:
            self._faults = checked
            return list(self._faults)

    def add(self, fault: dict) -> list[dict]:
        checked = self.validate(fault)
        with self._lock:
            self._faults.append(checked)
            return list(self._faults)

    def list(self) -> list[dict]:
        with self._lock:
            return [dict(fault) for fault in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults = []

    def take(self, operation: str, instance_ids: list[str]) -> dict | None:
        """The fault that applies to this call, counting it against the fault's budget."""
        with self._lock:
            for fault in self._faults:
                if fault["operation"] != operation:
                    continue
                if "*" not in fault["instance_ids"] and not set(fault["instance_ids"]) & set(instance_ids):
                    continue
                if fault["count"] is not None:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self._faults.remove(fault)
                return fault
        return None


FAULTS = FaultRegistry()


def state_change_event(account: str, region: str, instance_id: str, state: str) -> dict:
    """The PutEvents entry for one state change, shaped like the event AWS emits."""
    return {
        "Source": "aws.ec2",
        "DetailType": DETAIL_TYPE,
        "Resources": [f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"],
        "Detail": json.dumps({"instance-id": instance_id, "state": state}),
        "Time": datetime.now(tz=UTC),
    }


# For each operation: the event states it produces, and the states an instance may already
# be in for the call to change nothing. moto reports "pending" as the current state of any
# instance passed to StartInstances, so "changed" is judged by the previous state.
_TRANSITIONS = {
    "RunInstances": (("pending", "running"), ()),
    "StartInstances": (("pending", "running"), ("pending", "running")),
    "StopInstances": (("stopping", "stopped"), ("stopping", "stopped")),
    "TerminateInstances": (("shutting-down", "terminated"), ("shutting-down", "terminated")),
}


def transitions(operation: str, changes: list[tuple[str, str | None]]) -> list[list[tuple[str, str]]]:
    """Event waves for the ``(instance_id, previous_state)`` pairs of one call.

    Returns a list of waves; each wave is a list of ``(instance_id, state)`` published
    together, the intermediate state first. Instances the call did not change produce
    nothing.
    """
    states, unchanged_from = _TRANSITIONS[operation]
    changed = [iid for iid, previous in changes if previous not in unchanged_from]
    return [[(iid, state) for iid in changed] for state in states] if changed else []


def publish_waves(account: str, region: str, waves: list[list[tuple[str, str]]]) -> None:
    if not waves:
        return

    def run():
        events = connect_to(aws_access_key_id=account, region_name=region).events
        for index, wave in enumerate(waves):
            if index:
                time.sleep(INTERMEDIATE_STATE_GAP_SECONDS)
            entries = [state_change_event(account, region, iid, state) for iid, state in wave]
            for start in range(0, len(entries), 10):  # PutEvents takes at most 10 entries
                try:
                    events.put_events(Entries=entries[start : start + 10])
                except Exception:
                    LOG.exception("Could not publish EC2 state-change events")

    threading.Thread(target=run, name=f"ec2-state-events-{uuid.uuid4().hex[:6]}", daemon=True).start()


class GuardrailsEc2Provider(Ec2Provider):
    def on_after_init(self):
        super().on_after_init()
        ROUTER.add("/_guardrails/faults", self.faults_endpoint)
        ROUTER.add("/_guardrails/shutdown", self.shutdown_endpoint, methods=["POST"])

    # --- fault switch -----------------------------------------------------------------

    def faults_endpoint(self, request: Request):
        if request.method == "GET":
            return {"faults": FAULTS.list()}
        if request.method == "DELETE":
            FAULTS.clear()
            return {"faults": []}
        try:
            body = json.loads(request.get_data() or b"{}")
            if request.method == "PUT":
                faults = FAULTS.replace(body.get("faults", []))
            elif request.method == "POST":
                faults = FAULTS.add(body)
            else:
                return _json_response({"error": f"method {request.method} not allowed"}, 405)
        except (ValueError, AttributeError) as exc:
            return _json_response({"error": str(exc)}, 400)
        return {"faults": faults}

    @staticmethod
    def _check_fault(operation: str, instance_ids: list[str]) -> None:
        fault = FAULTS.take(operation, instance_ids)
        if fault is None:
            return
        code = fault["error_code"]
        message = fault["message"] or (
            f"Injected fault for {operation} on {', '.join(instance_ids)} ({code})"
        )
        raise CommonServiceException(
            code=code, message=message, status_code=SERVER_ERROR_CODES.get(code, 400)
        )

    # --- OS-initiated shutdown --------------------------------------------------------

    def shutdown_endpoint(self, request: Request):
        """Stop instances as a ``shutdown`` inside the OS would: reason InstanceInitiatedShutdown."""
        body = json.loads(request.get_data() or b"{}")
        account, region = body.get("account_id", "000000000000"), body.get("region", "us-east-1")
        backend = get_ec2_backend(account, region)
        changes = []
        for instance_id in body.get("instance_ids", []):
            instance = backend.get_instance(instance_id)
            previous = instance.state
            if previous == "running":
                instance.stop()
                instance._reason = "Client.InstanceInitiatedShutdown"
                instance.state_reason = StateReason(
                    "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                    "Client.InstanceInitiatedShutdown",
                )
            changes.append((instance_id, previous))
        publish_waves(account, region, transitions("StopInstances", changes))
        return {"stopped": [iid for iid, previous in changes if previous == "running"]}

    # --- operations that change state -------------------------------------------------

    @handler("RunInstances", expand=False)
    def run_instances(self, context: RequestContext, request):
        self._check_fault("RunInstances", [])
        response = call_moto(context)
        changes = [(i["InstanceId"], None) for i in response.get("Instances", [])]
        publish_waves(context.account_id, context.region, transitions("RunInstances", changes))
        return response

    def _state_call(self, context: RequestContext, request, operation: str, key: str):
        self._check_fault(operation, list(request.get("InstanceIds", [])))
        response = call_moto(context)
        changes = [(item["InstanceId"], item["PreviousState"]["Name"]) for item in response.get(key, [])]
        publish_waves(context.account_id, context.region, transitions(operation, changes))
        return response

    @handler("StartInstances", expand=False)
    def start_instances(self, context: RequestContext, request):
        return self._state_call(context, request, "StartInstances", "StartingInstances")

    @handler("StopInstances", expand=False)
    def stop_instances(self, context: RequestContext, request):
        return self._state_call(context, request, "StopInstances", "StoppingInstances")

    @handler("TerminateInstances", expand=False)
    def terminate_instances(self, context: RequestContext, request):
        return self._state_call(context, request, "TerminateInstances", "TerminatingInstances")


def _json_response(body: dict, status: int):
    from localstack.http import Response

    return Response(json.dumps(body), status=status, mimetype="application/json")


@aws_provider(api="ec2", name="guardrails")
def ec2_guardrails():
    from localstack.services.moto import MotoFallbackDispatcher

    provider = GuardrailsEc2Provider()
    return Service.for_provider(provider, dispatch_table_factory=MotoFallbackDispatcher)
