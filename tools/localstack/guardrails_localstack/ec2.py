"""An EC2 provider that behaves like EC2 where stop protection depends on it.

LocalStack's EC2 is moto underneath: state changes are instant and nothing reaches
EventBridge. This provider wraps Run/Start/Stop/TerminateInstances, lets moto do the
work, and then publishes "EC2 Instance State-change Notification" events to the default
bus of the same account and region, the way AWS does (pending -> running,
stopping -> stopped, shutting-down -> terminated), only for instances whose state really
changed. Stops carry AWS's state reasons (``Client.UserInitiatedShutdown``,
``Client.UserInitiatedHibernate``; ``/_guardrails/shutdown`` stops as an OS ``shutdown``
or a Spot interruption would).

Two switches let tests recreate what AWS does on a bad day; both are off until a test
arms them:

``/_guardrails/faults``      an EC2 operation fails for chosen instances with a chosen
                             AWS error code (``FaultRegistry``).
``/_guardrails/behaviours``  EC2 and EventBridge behaviours (``BehaviourRegistry``): a
                             ``stopping`` state that lasts, a start that falls back to
                             ``stopped``, an instance that powers itself off after every
                             boot, and state-change events dropped, duplicated or
                             delivered out of order.
``/_guardrails/throttle``    EC2's request and resource token buckets (``throttle.py``).

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

from guardrails_localstack import throttle

LOG = logging.getLogger(__name__)

DETAIL_TYPE = "EC2 Instance State-change Notification"
# EventBridge delivers each event on its own thread; without a gap the final state can
# overtake the intermediate one (0.1 s was seen to be too little on a loaded 2-core machine).
INTERMEDIATE_STATE_GAP_SECONDS = 0.3
# How long an instance whose start falls back stays "pending" before it is "stopped".
FALLBACK_PENDING_SECONDS = 0.5
# How long a held (reordered) event waits for the event it should follow.
REORDER_HOLD_SECONDS = 5.0
# Error codes AWS answers with HTTP 5xx; everything else is a client error.
SERVER_ERROR_CODES = {"InsufficientInstanceCapacity": 500, "InternalError": 500, "Unavailable": 503}
FAULTABLE_OPERATIONS = {"RunInstances", "StartInstances", "StopInstances", "TerminateInstances"}
STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
# The state reasons AWS gives, by code.
REASONS = {
    "Client.UserInitiatedShutdown": "Client.UserInitiatedShutdown: User initiated shutdown",
    "Client.UserInitiatedHibernate": "Client.UserInitiatedHibernate: User initiated hibernate",
    "Client.InstanceInitiatedShutdown": "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
    "Server.SpotInstanceShutdown": "Server.SpotInstanceShutdown: The instance was stopped because the "
    "number of Spot requests with a maximum price equal to or higher than the Spot price exceeded "
    "available capacity or because of an increase in the Spot price.",
    "Client.InternalError": "Client.InternalError: Client error on launch",
    "Server.InternalError": "Server.InternalError: Internal error on launch",
    "Server.InsufficientInstanceCapacity": "Server.InsufficientInstanceCapacity: Insufficient capacity "
    "to satisfy launch request",
}
SHUTDOWN_REASONS = {"Client.InstanceInitiatedShutdown", "Server.SpotInstanceShutdown"}
FALLBACK_REASONS = {"Client.InternalError", "Server.InternalError", "Server.InsufficientInstanceCapacity"}


class Switch:
    """Entries that tests arm through one endpoint; subclasses validate and match them.

    An entry with a ``count`` applies that many times, then clears itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict] = []

    def validate(self, item: dict) -> dict:
        raise NotImplementedError

    def replace(self, items: list[dict]) -> list[dict]:
        checked = [self.validate(item) for item in items]
        with self._lock:
            self._items = checked
        return self.list()

    def add(self, item: dict) -> list[dict]:
        checked = self.validate(item)
        with self._lock:
            self._items.append(checked)
        return self.list()

    def list(self) -> list[dict]:
        with self._lock:
            return [dict(item) for item in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items = []

    def _take(self, applies) -> dict | None:
        """The first entry for which ``applies(entry)``, counting it against its budget."""
        with self._lock:
            for item in self._items:
                if not applies(item):
                    continue
                if item["count"] is not None:
                    item["count"] -= 1
                    if item["count"] <= 0:
                        self._items.remove(item)
                return dict(item)
        return None


def _ids(value) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(i, str) for i in value):
        raise ValueError(f"instance_ids must be a non-empty list of strings, got {value!r}")
    return list(value)


def _positive(value, name: str, kind=(int, float)):
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _count(value):
    return None if value is None else _positive(value, "count", int)


class FaultRegistry(Switch):
    """Faults armed by tests: an operation fails for chosen instance ids with a chosen code.

    A fault is ``{"operation": "StartInstances", "instance_ids": ["i-..."] or ["*"],
    "error_code": "InsufficientInstanceCapacity", "count": N}``; ``count`` (optional) is
    how many calls fail before the fault clears itself. AWS fails the whole call when one
    of its instances cannot be handled, and so does this.
    """

    def validate(self, fault: dict) -> dict:
        if fault.get("operation") not in FAULTABLE_OPERATIONS:
            raise ValueError(
                f"operation must be one of {sorted(FAULTABLE_OPERATIONS)}, got {fault.get('operation')!r}"
            )
        if not isinstance(fault.get("error_code"), str) or not fault["error_code"]:
            raise ValueError(f"error_code must be a non-empty string, got {fault.get('error_code')!r}")
        return {
            "operation": fault["operation"],
            "instance_ids": _ids(fault.get("instance_ids")),
            "error_code": fault["error_code"],
            "count": _count(fault.get("count")),
            "message": fault.get("message"),
        }

    def take(self, operation: str, instance_ids: list[str]) -> dict | None:
        """The fault that applies to this call, counting it against the fault's budget."""
        return self._take(
            lambda fault: (
                fault["operation"] == operation
                and ("*" in fault["instance_ids"] or bool(set(fault["instance_ids"]) & set(instance_ids)))
            )
        )


FAULTS = FaultRegistry()


class BehaviourRegistry(Switch):
    """EC2 and EventBridge behaviours armed by tests, each for chosen instances (or ``*``).

    ``{"kind": "stopping-dwell", "instance_ids": [...], "seconds": 2}``
        StopInstances leaves the instance ``stopping`` for that long (AWS takes seconds to
        minutes); StartInstances meanwhile answers ``IncorrectInstanceState``.
    ``{"kind": "start-falls-back", "instance_ids": [...], "reason_code": "Client.InternalError", "count": N}``
        StartInstances succeeds, the instance goes ``pending`` and then back to ``stopped``
        with that state reason (as for an EBS volume whose KMS key the caller may not use).
    ``{"kind": "stops-after-boot", "instance_ids": [...], "seconds": 1}``
        Every time the instance reaches ``running`` it shuts itself down that many seconds
        later (``Client.InstanceInitiatedShutdown``), until the behaviour is cleared.
    ``{"kind": "drop-events" | "duplicate-events" | "reorder-events", "instance_ids": [...],
       "states": ["stopped"], "count": N}``
        The next N matching state-change events are lost, delivered twice, or (reorder)
        each held back and delivered after the next event of the same instance.

    ``count`` (optional, where listed) is how many times the behaviour applies before it
    clears itself; ``states`` (optional) limits event behaviours to those states.
    """

    EVENT_KINDS = {"drop-events", "duplicate-events", "reorder-events"}
    KINDS = {"stopping-dwell", "start-falls-back", "stops-after-boot"} | EVENT_KINDS

    def validate(self, item: dict) -> dict:
        kind = item.get("kind")
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {sorted(self.KINDS)}, got {kind!r}")
        checked = {
            "kind": kind,
            "instance_ids": _ids(item.get("instance_ids")),
            "count": _count(item.get("count")),
        }
        if kind in ("stopping-dwell", "stops-after-boot"):
            checked["seconds"] = _positive(item.get("seconds"), "seconds")
        if kind == "start-falls-back":
            code = item.get("reason_code", "Client.InternalError")
            if code not in FALLBACK_REASONS:
                raise ValueError(f"reason_code must be one of {sorted(FALLBACK_REASONS)}, got {code!r}")
            checked["reason_code"] = code
        if kind in self.EVENT_KINDS:
            states = item.get("states", list(STATE_CODES))
            if not isinstance(states, list) or not set(states) <= set(STATE_CODES) or not states:
                raise ValueError(f"states must be a non-empty list of {sorted(STATE_CODES)}, got {states!r}")
            checked["states"] = states
        return checked

    def take(self, kind: str, instance_id: str, state: str | None = None) -> dict | None:
        """The behaviour of this kind that applies, counting it against its budget."""
        return self._take(
            lambda item: (
                item["kind"] == kind
                and ("*" in item["instance_ids"] or instance_id in item["instance_ids"])
                and (state is None or state in item.get("states", [state]))
            )
        )


BEHAVIOURS = BehaviourRegistry()


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


class EventOutbox:
    """Publishes state-change events, applying the armed event behaviours on the way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, str, str]] = {}  # instance id -> held (account, region, state)

    def deliver(self, account: str, region: str, wave: list[tuple[str, str]]) -> None:
        out: list[tuple[str, str]] = []
        late: list[tuple[str, str]] = []  # held events, delivered after the ones they now follow
        for instance_id, state in wave:
            if BEHAVIOURS.take("drop-events", instance_id, state):
                LOG.info("Dropping the %s event of %s (behaviour armed)", state, instance_id)
                continue
            with self._lock:
                held = self._held.pop(instance_id, None)
            if held is None and BEHAVIOURS.take("reorder-events", instance_id, state):
                with self._lock:
                    self._held[instance_id] = (account, region, state)
                threading.Timer(REORDER_HOLD_SECONDS, self._flush, (instance_id, state)).start()
                continue
            copies = 2 if BEHAVIOURS.take("duplicate-events", instance_id, state) else 1
            out.extend([(instance_id, state)] * copies)
            if held is not None:
                late.append((instance_id, held[2]))
        self._put(account, region, out)
        if late:
            # Events of one PutEvents call reach targets in any order: a gap keeps them apart.
            time.sleep(INTERMEDIATE_STATE_GAP_SECONDS)
            self._put(account, region, late)

    def _flush(self, instance_id: str, state: str) -> None:
        """A held event whose successor never came is delivered late rather than lost."""
        with self._lock:
            held = self._held.get(instance_id)
            if held is None or held[2] != state:
                return
            del self._held[instance_id]
        self._put(held[0], held[1], [(instance_id, state)])

    @staticmethod
    def _put(account: str, region: str, pairs: list[tuple[str, str]]) -> None:
        if not pairs:
            return
        events = connect_to(aws_access_key_id=account, region_name=region).events
        entries = [state_change_event(account, region, iid, state) for iid, state in pairs]
        for start in range(0, len(entries), 10):  # PutEvents takes at most 10 entries
            try:
                events.put_events(Entries=entries[start : start + 10])
            except Exception:
                LOG.exception("Could not publish EC2 state-change events")


OUTBOX = EventOutbox()


def in_background(steps: list[tuple[float, object]]) -> None:
    """Run ``(delay_seconds, callable)`` steps one after the other on a thread of their own."""
    if not steps:
        return

    def run():
        for delay, step in steps:
            if delay:
                time.sleep(delay)
            try:
                step()
            except Exception:
                LOG.exception("EC2 state step failed")

    threading.Thread(target=run, name=f"ec2-state-{uuid.uuid4().hex[:6]}", daemon=True).start()


def publish_waves(account: str, region: str, waves: list[list[tuple[str, str]]]) -> None:
    in_background(
        [
            (
                INTERMEDIATE_STATE_GAP_SECONDS if index else 0,
                lambda wave=wave: OUTBOX.deliver(account, region, wave),
            )
            for index, wave in enumerate(waves)
        ]
    )


def set_state(instance, state: str, reason_code: str | None = None) -> None:
    instance._state.name = state
    instance._state.code = STATE_CODES[state]
    if reason_code:
        instance._reason = (
            f"{REASONS[reason_code].split(':', 1)[0]} ({datetime.now(tz=UTC):%Y-%m-%d %H:%M:%S} GMT)"
        )
        instance.state_reason = StateReason(REASONS[reason_code], reason_code)


class GuardrailsEc2Provider(Ec2Provider):
    def on_after_init(self):
        super().on_after_init()
        ROUTER.add("/_guardrails/faults", self.faults_endpoint)
        ROUTER.add("/_guardrails/behaviours", self.behaviours_endpoint)
        ROUTER.add("/_guardrails/shutdown", self.shutdown_endpoint, methods=["POST"])
        ROUTER.add("/_guardrails/throttle", throttle.endpoint, methods=["GET", "PUT", "DELETE"])

    # --- switches -----------------------------------------------------------------------

    def faults_endpoint(self, request: Request):
        return _registry_endpoint(request, FAULTS, "faults")

    def behaviours_endpoint(self, request: Request):
        return _registry_endpoint(request, BEHAVIOURS, "behaviours")

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

    # --- stops ----------------------------------------------------------------------------

    def shutdown_endpoint(self, request: Request):
        """Stop running instances from inside: an OS ``shutdown`` or a Spot interruption.

        Body: ``{"instance_ids": [...], "region": ..., "account_id": ...,
        "reason_code": "Client.InstanceInitiatedShutdown" | "Server.SpotInstanceShutdown"}``.
        """
        body = json.loads(request.get_data() or b"{}")
        account, region = body.get("account_id", "000000000000"), body.get("region", "us-east-1")
        reason_code = body.get("reason_code", "Client.InstanceInitiatedShutdown")
        if reason_code not in SHUTDOWN_REASONS:
            return _json_response({"error": f"reason_code must be one of {sorted(SHUTDOWN_REASONS)}"}, 400)
        backend = get_ec2_backend(account, region)
        instances = [backend.get_instance(instance_id) for instance_id in body.get("instance_ids", [])]
        if reason_code == "Server.SpotInstanceShutdown":
            not_spot = [i.id for i in instances if getattr(i, "lifecycle", None) != "spot"]
            if not_spot:
                return _json_response({"error": f"not Spot instances: {', '.join(not_spot)}"}, 400)
        stopped = self._stop_from_inside(account, region, instances, reason_code)
        return {"stopped": stopped}

    def _stop_from_inside(self, account, region, instances, reason_code) -> list[str]:
        stopped = []
        for instance in instances:
            if instance.state == "running":
                instance.stop()
                stopped.append(instance.id)
        self._finish_stops(account, region, stopped, reason_code)
        return stopped

    def _finish_stops(self, account: str, region: str, instance_ids: list[str], reason_code: str) -> dict:
        """After moto stopped these instances: reason, ``stopping`` dwell, and the events.

        Returns the instances that stay ``stopping`` for a while, by id.
        """
        backend = get_ec2_backend(account, region)
        dwell = {}
        for instance_id in instance_ids:
            instance = backend.get_instance(instance_id)
            set_state(instance, "stopped", reason_code)
            behaviour = BEHAVIOURS.take("stopping-dwell", instance_id)
            if behaviour:
                set_state(instance, "stopping")
                dwell[instance_id] = behaviour["seconds"]
        quick = [iid for iid in instance_ids if iid not in dwell]
        steps = [(0, lambda: OUTBOX.deliver(account, region, [(iid, "stopping") for iid in instance_ids]))]
        if quick:
            steps.append(
                (
                    INTERMEDIATE_STATE_GAP_SECONDS,
                    lambda: OUTBOX.deliver(account, region, [(i, "stopped") for i in quick]),
                )
            )
        elapsed = INTERMEDIATE_STATE_GAP_SECONDS if quick else 0
        for instance_id, seconds in sorted(dwell.items(), key=lambda item: item[1]):

            def settle(instance_id=instance_id):
                set_state(backend.get_instance(instance_id), "stopped")
                OUTBOX.deliver(account, region, [(instance_id, "stopped")])

            steps.append((max(0.0, seconds - elapsed), settle))
            elapsed = max(elapsed, seconds)
        in_background(steps)
        return dwell

    # --- starts ---------------------------------------------------------------------------

    def _after_boot(self, account: str, region: str, instance_ids: list[str]) -> None:
        """Arm the self-shutdown of instances that power themselves off after every boot."""
        backend = get_ec2_backend(account, region)
        for instance_id in instance_ids:
            behaviour = BEHAVIOURS.take("stops-after-boot", instance_id)
            if behaviour is None:
                continue

            def power_off(instance_id=instance_id):
                instance = backend.get_instance(instance_id)
                self._stop_from_inside(account, region, [instance], "Client.InstanceInitiatedShutdown")

            in_background([(INTERMEDIATE_STATE_GAP_SECONDS + behaviour["seconds"], power_off)])

    def _finish_starts(self, account: str, region: str, instance_ids: list[str]) -> None:
        backend = get_ec2_backend(account, region)
        booting, falling_back = [], {}
        for instance_id in instance_ids:
            behaviour = BEHAVIOURS.take("start-falls-back", instance_id)
            if behaviour:
                set_state(backend.get_instance(instance_id), "pending")
                falling_back[instance_id] = behaviour["reason_code"]
            else:
                booting.append(instance_id)
        publish_waves(account, region, transitions("StartInstances", [(iid, "stopped") for iid in booting]))
        self._after_boot(account, region, booting)
        if falling_back:

            def fall_back():
                for instance_id, reason_code in falling_back.items():
                    set_state(backend.get_instance(instance_id), "stopped", reason_code)
                OUTBOX.deliver(account, region, [(iid, "stopped") for iid in falling_back])

            in_background(
                [
                    (0, lambda: OUTBOX.deliver(account, region, [(iid, "pending") for iid in falling_back])),
                    (FALLBACK_PENDING_SECONDS, fall_back),
                ]
            )

    # --- operations that change state -----------------------------------------------------

    @handler("RunInstances", expand=False)
    def run_instances(self, context: RequestContext, request):
        self._check_fault("RunInstances", [])
        response = call_moto(context)
        ids = [i["InstanceId"] for i in response.get("Instances", [])]
        publish_waves(
            context.account_id, context.region, transitions("RunInstances", [(i, None) for i in ids])
        )
        self._after_boot(context.account_id, context.region, ids)
        return response

    @handler("StartInstances", expand=False)
    def start_instances(self, context: RequestContext, request):
        ids = list(request.get("InstanceIds", []))
        self._check_fault("StartInstances", ids)
        backend = get_ec2_backend(context.account_id, context.region)
        for instance_id in ids:
            instance = backend.get_instance(instance_id)
            if instance.state == "stopping":
                raise CommonServiceException(
                    code="IncorrectInstanceState",
                    message=f"The instance '{instance_id}' is not in a state from which it can be started.",
                    status_code=400,
                )
        response = call_moto(context)
        changed = [
            item["InstanceId"]
            for item in response.get("StartingInstances", [])
            if item["PreviousState"]["Name"] not in ("pending", "running")
        ]
        self._finish_starts(context.account_id, context.region, changed)
        return response

    @handler("StopInstances", expand=False)
    def stop_instances(self, context: RequestContext, request):
        ids = list(request.get("InstanceIds", []))
        self._check_fault("StopInstances", ids)
        reason_code = "Client.UserInitiatedShutdown"
        if request.get("Hibernate"):
            backend = get_ec2_backend(context.account_id, context.region)
            for instance_id in ids:
                options = backend.get_instance(instance_id).hibernation_options or {}
                if str(options.get("Configured", "")).lower() != "true":
                    raise CommonServiceException(
                        code="UnsupportedHibernationConfiguration",
                        message=f"The instance '{instance_id}' is not configured for hibernation.",
                        status_code=400,
                    )
            reason_code = "Client.UserInitiatedHibernate"
        response = call_moto(context)
        changed = [
            item["InstanceId"]
            for item in response.get("StoppingInstances", [])
            if item["PreviousState"]["Name"] not in ("stopping", "stopped")
        ]
        dwell = self._finish_stops(context.account_id, context.region, changed, reason_code)
        for item in response.get("StoppingInstances", []):
            if item["InstanceId"] in dwell:
                item["CurrentState"] = {"Code": STATE_CODES["stopping"], "Name": "stopping"}
        return response

    @handler("TerminateInstances", expand=False)
    def terminate_instances(self, context: RequestContext, request):
        self._check_fault("TerminateInstances", list(request.get("InstanceIds", [])))
        response = call_moto(context)
        changes = [
            (i["InstanceId"], i["PreviousState"]["Name"]) for i in response.get("TerminatingInstances", [])
        ]
        publish_waves(context.account_id, context.region, transitions("TerminateInstances", changes))
        return response


def _registry_endpoint(request: Request, registry, key: str):
    """GET lists, POST adds one, PUT replaces all (``{key: [...]}``), DELETE clears."""
    if request.method == "GET":
        return {key: registry.list()}
    if request.method == "DELETE":
        registry.clear()
        return {key: []}
    try:
        body = json.loads(request.get_data() or b"{}")
        if request.method == "PUT":
            items = registry.replace(body.get(key, []))
        elif request.method == "POST":
            items = registry.add(body)
        else:
            return _json_response({"error": f"method {request.method} not allowed"}, 405)
    except (ValueError, AttributeError) as exc:
        return _json_response({"error": str(exc)}, 400)
    return {key: items}


def _json_response(body: dict, status: int):
    from localstack.http import Response

    return Response(json.dumps(body), status=status, mimetype="application/json")


@aws_provider(api="ec2", name="guardrails")
def ec2_guardrails():
    from localstack.services.moto import MotoFallbackDispatcher

    provider = GuardrailsEc2Provider()
    return Service.for_provider(
        provider, dispatch_table_factory=lambda p: throttle.throttled_dispatch(MotoFallbackDispatcher(p))
    )
