"""EC2's request throttling, which LocalStack does not model.

AWS throttles EC2 API requests per account and region with token buckets ("Request
throttling for the Amazon EC2 API", https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html):

* request rate limiting: each API has its own bucket; every request takes one token. The
  bucket's size and refill rate depend on the API's category ("Request token bucket sizes
  and refill rates") or, for the uncategorized actions, on the API itself;
* resource rate limiting: RunInstances, StartInstances, StopInstances and
  TerminateInstances also have a resource bucket from which each request takes one token
  per instance ("Resource token bucket sizes and refill rates").

A request that finds either bucket short is refused with ``RequestLimitExceeded`` and
HTTP 503 (botocore's retry rules expect both: ``_retry.json``, ``request_limit_exceeded``),
and takes no tokens. Buckets refill continuously (AWS: "a set number of tokens is added
back every second"), start full, and never hold more than their size.

The numbers below are AWS's defaults. Off unless ``GUARDRAILS_EC2_THROTTLE=1`` or a test
turns it on through ``/_guardrails/throttle`` (``PUT {"enabled": true, "buckets": {...}}``,
sizes per API as ``{"request": [size, refill], "resource": [size, refill]}``). Calls are
counted per API, and per signing access key, either way (``GET``); ``DELETE`` turns
throttling off and resets buckets and counts.
"""

from __future__ import annotations

import os
import re
import threading
import time

# Categories: (bucket size, refill per second).
NON_MUTATING = (100, 20)
UNFILTERED_NON_MUTATING = (50, 10)
MUTATING = (50, 5)
# Describe actions whose unfiltered and unpaginated requests use the smaller bucket.
UNFILTERED_ACTIONS = frozenset(
    {
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeNetworkInterfaces",
        "DescribeSecurityGroups",
        "DescribeSnapshots",
        "DescribeSpotInstanceRequests",
        "DescribeVolumes",
    }
)
# Uncategorized actions with a request bucket of their own, among those the collection,
# its function and its peers call.
REQUEST_BUCKETS = {
    "CreateTags": (100, 10),
    "DeleteTags": (100, 10),
    "RunInstances": (5, 2),
    "StartInstances": (5, 2),
    "TerminateInstances": (100, 5),
}
RESOURCE_BUCKETS = {
    "RunInstances": (1000, 2),
    "StartInstances": (1000, 2),
    "StopInstances": (1000, 20),
    "TerminateInstances": (1000, 20),
}
NON_MUTATING_PREFIXES = ("Describe", "List", "Search", "Get")
PAGINATION_AND_FILTERS = ("Filters", "MaxResults", "NextToken")


def request_bucket(action: str, request: dict) -> tuple[str, tuple[float, float]]:
    """The request bucket this call draws from: its key and AWS's (size, refill)."""
    if action in REQUEST_BUCKETS:
        return action, REQUEST_BUCKETS[action]
    if action.startswith(NON_MUTATING_PREFIXES):
        if action in UNFILTERED_ACTIONS and not any(request.get(key) for key in PAGINATION_AND_FILTERS):
            return f"{action}/unfiltered", UNFILTERED_NON_MUTATING
        return action, NON_MUTATING
    return action, MUTATING


def resource_tokens(action: str, request: dict) -> int:
    if action == "RunInstances":
        return int(request.get("MaxCount") or 1)
    return len(request.get("InstanceIds") or [])


class Bucket:
    def __init__(self, size: float, refill: float, now: float) -> None:
        self.size, self.refill = float(size), float(refill)
        self.tokens, self.stamp = float(size), now

    def level(self, now: float) -> float:
        self.tokens = min(self.size, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        return self.tokens


def _pair(value, name: str) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be [size, refill per second], both positive, got {value!r}")
    return float(value[0]), float(value[1])


class Throttle:
    def __init__(self, enabled: bool = False, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.enabled = enabled
        self._overrides: dict[str, dict[str, tuple[float, float]]] = {}
        self._buckets: dict[tuple, Bucket] = {}
        self.calls: dict[str, int] = {}
        self.throttled: dict[str, int] = {}
        self.calls_by_key: dict[str, dict[str, int]] = {}

    def configure(self, enabled: bool, buckets: dict | None = None) -> dict:
        overrides = {}
        for action, sizes in (buckets or {}).items():
            if not isinstance(sizes, dict) or not set(sizes) <= {"request", "resource"} or not sizes:
                raise ValueError(
                    f"buckets.{action} must be {{'request': [..], 'resource': [..]}}, got {sizes!r}"
                )
            overrides[action] = {
                kind: _pair(pair, f"buckets.{action}.{kind}") for kind, pair in sizes.items()
            }
        with self._lock:
            self.enabled = bool(enabled)
            self._overrides = overrides
            self._reset()
        return self.describe()

    def reset(self) -> dict:
        with self._lock:
            self.enabled = False
            self._overrides = {}
            self._reset()
        return self.describe()

    def _reset(self) -> None:
        self._buckets, self.calls, self.throttled, self.calls_by_key = {}, {}, {}, {}

    def describe(self) -> dict:
        return {
            "enabled": self.enabled,
            "buckets": {a: {k: list(v) for k, v in s.items()} for a, s in self._overrides.items()},
            "calls": dict(self.calls),
            "throttled": dict(self.throttled),
            "calls_by_access_key": {key: dict(calls) for key, calls in self.calls_by_key.items()},
        }

    def _bucket(self, key: tuple, size: tuple[float, float], now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(*size, now)
        return bucket

    def admit(self, account: str, region: str, action: str, request: dict, access_key: str = "") -> bool:
        """Count the call (also by the caller's access key); False when EC2 would refuse it
        as throttled (no tokens taken)."""
        with self._lock:
            self.calls[action] = self.calls.get(action, 0) + 1
            by_key = self.calls_by_key.setdefault(access_key, {})
            by_key[action] = by_key.get(action, 0) + 1
            if not self.enabled:
                return True
            now = self._clock()
            overrides = self._overrides.get(action, {})
            key, size = request_bucket(action, request)
            wanted = [
                (self._bucket((account, region, "request", key), overrides.get("request", size), now), 1)
            ]
            if action in RESOURCE_BUCKETS:
                size = overrides.get("resource", RESOURCE_BUCKETS[action])
                bucket = self._bucket((account, region, "resource", action), size, now)
                wanted.append((bucket, resource_tokens(action, request)))
            if any(bucket.level(now) < tokens for bucket, tokens in wanted):
                self.throttled[action] = self.throttled.get(action, 0) + 1
                return False
            for bucket, tokens in wanted:
                bucket.tokens -= tokens
            return True


THROTTLE = Throttle(enabled=os.environ.get("GUARDRAILS_EC2_THROTTLE") == "1")


CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


def access_key(context) -> str:
    """The access key id that signed the request, or an empty string."""
    match = CREDENTIAL.search(context.request.headers.get("Authorization", "") if context.request else "")
    return match.group(1) if match else ""


def throttled_dispatch(table: dict) -> dict:
    """Wrap an EC2 dispatch table so that each call passes the throttle first."""
    from localstack.aws.api import CommonServiceException

    def wrap(action, handler):
        def call(context, request):
            if not THROTTLE.admit(
                context.account_id, context.region, action, request or {}, access_key(context)
            ):
                raise CommonServiceException(
                    code="RequestLimitExceeded", message="Request limit exceeded.", status_code=503
                )
            return handler(context, request)

        return call

    return {action: wrap(action, handler) for action, handler in table.items()}


def endpoint(request):
    """``/_guardrails/throttle``: GET describes, PUT configures, DELETE turns off and resets."""
    import json

    from localstack.http import Response

    if request.method == "GET":
        return THROTTLE.describe()
    if request.method == "DELETE":
        return THROTTLE.reset()
    if request.method != "PUT":
        return Response(json.dumps({"error": f"method {request.method} not allowed"}), status=405)
    try:
        body = json.loads(request.get_data() or b"{}")
        return THROTTLE.configure(body.get("enabled", True), body.get("buckets"))
    except (ValueError, AttributeError) as exc:
        return Response(json.dumps({"error": str(exc)}), status=400, mimetype="application/json")
