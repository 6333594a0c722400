"""Rate limits: the GCRA decision, client keys, modes, the 429 answer and its counters.

A limit (:class:`Limit`) applies to one route template (or ``"*"``, every route)
and splits traffic by a client key:

- ``ip``: the peer address the server saw (``scope["client"]``). Forwarded-for
  headers are not trusted: behind a proxy, key on a header the proxy sets.
- ``header:<name>``: the first value of that request header (e.g. an API key).
- ``jwt:<claim>``: a claim of the bearer token in ``Authorization``. The claim
  is read **without verifying the signature**: it only picks a bucket, it never
  grants anything, and the application still authenticates the request. A
  client forging a claim can only move itself into another client's bucket,
  which is why a key that matters for abuse should be one the app verified.
- ``global``: one bucket for the whole route.

A request without the key (no header, no token, no claim) shares the bucket
``-`` with every other keyless request, so omitting the key cannot dodge a
limit. Key values never leave this module in clear: stores see a SHA-256 digest
and nothing logs them (an API key is a secret).

The algorithm is GCRA (a token bucket expressed as one timestamp per key, the
"theoretical arrival time"): ``burst`` requests may arrive at once, then one per
``1/rate`` seconds, so over ``t`` seconds from a full bucket at most
``burst + rate * t`` requests pass. A refused request consumes nothing.

Modes per limit: ``off`` (not evaluated), ``shadow`` (decided and counted as
would-be-limited, never refused, no headers added) and ``enforce`` (refused
with 429). Several limits may match a request: every one is decided, and the
strictest enforcing refusal (the longest wait) answers. The answer carries
``Retry-After`` and the ``RateLimit-Policy``/``RateLimit`` fields of
draft-ietf-httpapi-ratelimit-headers-10 (structured-field lists such as
``"per-key";q=10;w=2`` and ``"per-key";r=0;t=1``), where ``q`` is the burst,
``w`` the seconds a drained bucket takes to refill, ``r`` what is left now and
``t`` the seconds until the bucket is full again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

OFF, SHADOW, ENFORCE = "off", "shadow", "enforce"
MODES = (OFF, SHADOW, ENFORCE)
ANY_ROUTE = "*"
NO_KEY = "-"  # the bucket shared by requests that lack the key
ALLOWED, LIMITED, SHADOW_LIMITED = "allowed", "limited", "shadow_limited"

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Limit:
    """One configured limit: ``rate`` requests per second with ``burst`` at once."""

    name: str
    route: str
    key: str
    rate: float
    burst: int
    mode: str = SHADOW

    def applies_to(self, route: str) -> bool:
        """True when this limit is on and covers ``route``."""
        return self.mode != OFF and (self.route == ANY_ROUTE or self.route == route)

    def window(self) -> int:
        """Whole seconds a drained bucket takes to refill (the policy's ``w``), at least 1."""
        return max(1, math.ceil(self.burst / self.rate))


@dataclass(frozen=True)
class Decision:
    """One limit's answer for one request.

    ``retry_after``: seconds until a refused request would pass (0 when allowed);
    ``reset``: seconds until the bucket is full again; ``remaining``: requests
    that could pass right now after this one.
    """

    allowed: bool
    retry_after: float
    reset: float
    remaining: int


def _whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up to a whole second for a header, ignoring float noise: the times
    are differences of clock readings, so a 1,000 s refill can come out 1000.0000000000018,
    which ``ceil`` alone made 1001."""
    return math.ceil(seconds - 1e-6)


def gcra(tat: float | None, now: float, rate: float, burst: int
         ) -> tuple[Decision, float | None]:
    """Decide one request against the stored theoretical arrival time ``tat``.

    Returns the decision and the new ``tat`` to store (None: store nothing, the
    request was refused and consumes nothing).

    Under one limit a stored ``tat`` is never more than ``burst`` intervals ahead.
    One stored under an earlier, stricter limit can be far more (1 request/10 s with
    burst 3: 30 s), and after the operator raises the limit the client would wait
    out the old limit. So a ``tat`` beyond the current limit's empty bucket is
    capped there, and the cap is stored even on a refusal: a raised limit judges a
    drained client from its very next request, refilling at the new rate.
    """
    interval = 1.0 / rate
    tolerance = (burst - 1) * interval
    full = now + burst * interval  # an empty bucket under this limit
    capped = tat is not None and tat > full
    base = now if tat is None or tat < now else min(tat, full)
    # Clock readings are large floats: (now + 1000) - now can be 1000.0000000000018, and a
    # burst spent at one instant then refused its last request. Compare past that noise
    # (a few ulps of the magnitudes involved: 0.07 ns at a monotonic clock of 16,000 s, 7 µs
    # at a unix one), but never past half an interval: at 200,000/s the interval is 5 µs,
    # and an allowance of 7 µs let every request through. (A stored time is at most a whole
    # interval past the tolerance, so half an interval still refuses it.)
    noise = min(4e-15 * (abs(now) + tolerance + 1.0), interval * 0.5)
    if base - now > tolerance + noise:
        wait = base - now - tolerance
        return Decision(False, wait, base - now, 0), (base if capped else None)
    new = base + interval
    remaining = int((burst * interval - (new - now)) / interval + 1e-9)
    return Decision(True, 0.0, new - now, max(0, remaining)), new


class Backend(Protocol):
    """Where the per-key state lives (see :mod:`.ratelimit_store`)."""

    name: str

    async def decide(self, key: str, rate: float, burst: int) -> Decision | None:
        """The decision for ``key``; None when the store failed (the caller fails open)."""

    def decide_sync(self, key: str, rate: float, burst: int) -> Decision | None:
        """:meth:`decide` without an event loop."""


def client_key(spec: str, scope: Scope) -> str:
    """The raw key value a limit's ``spec`` selects for this request (``-`` when absent)."""
    if spec == "global":
        return ""
    if spec == "ip":
        client = scope.get("client")
        return str(client[0]) if client else NO_KEY
    kind, _, arg = spec.partition(":")
    if kind == "header":
        value = _header(scope, arg.lower().encode("latin-1"))
        return value.decode("latin-1") if value else NO_KEY
    if kind == "jwt":
        return _jwt_claim(_header(scope, b"authorization"), arg)
    return NO_KEY


def storage_key(limit: Limit, value: str) -> str:
    """What stores see: the limit's name and a digest of the key value (never the value)."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{limit.name}:{digest}"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


def _jwt_claim(authorization: bytes | None, claim: str) -> str:
    """A claim of a bearer JWT, unverified (keying only); ``-`` when anything is off."""
    if not authorization or len(authorization) > 16384:
        return NO_KEY
    scheme, _, token = authorization.partition(b" ")
    parts = token.strip().split(b".")
    if scheme.lower() != b"bearer" or len(parts) != 3:
        return NO_KEY
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return NO_KEY
    value = payload.get(claim) if isinstance(payload, dict) else None
    if value is None or isinstance(value, dict | list):
        return NO_KEY
    return str(value)[:256]


@dataclass
class RateLimitMetrics:
    """Counters per (route, limit, result) and store failures; cheap on the request path."""

    decisions: dict[tuple[str, str, str], int] = field(default_factory=dict)
    store_errors: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, route: str, limit: str, result: str) -> None:
        """Count one decision (``allowed``, ``limited`` or ``shadow_limited``)."""
        key = (route, limit, result)
        with self._lock:
            self.decisions[key] = self.decisions.get(key, 0) + 1

    def store_error(self, store: str) -> None:
        """Count a store call that failed or timed out (the request was let through)."""
        with self._lock:
            self.store_errors[store] = self.store_errors.get(store, 0) + 1

    def snapshot(self) -> tuple[dict[tuple[str, str, str], int], dict[str, int]]:
        """Copies of both counter tables."""
        with self._lock:
            return dict(self.decisions), dict(self.store_errors)


class RateLimitCollector(Collector):
    """Exports :class:`RateLimitMetrics`: fresh families per scrape."""

    def __init__(self, metrics: RateLimitMetrics,
                 source: Callable[[], RateLimitMetrics] | None = None) -> None:
        self._m = metrics
        self._source = source  # e.g. every worker's counters summed; default: ``metrics``

    def collect(self) -> Iterator[CounterMetricFamily]:
        m = self._source() if self._source is not None else self._m
        decisions, errors = m.snapshot()
        fam = CounterMetricFamily(
            "trimtab_ratelimit_requests",
            "Rate limit decisions by route and limit: allowed, limited (answered 429) and "
            "shadow_limited (a shadow-mode limit would have refused; it was served).",
            labels=["route", "limit", "result"])
        for (route, limit, result), n in sorted(decisions.items()):
            fam.add_metric([route, limit, result], n)
        yield fam
        err = CounterMetricFamily(
            "trimtab_ratelimit_store_errors",
            "Rate limit decisions made without the store (it failed, timed out, or is in its "
            "cool-down after a failure); the request was let through.",
            labels=["store"])
        for store, n in sorted(errors.items()):
            err.add_metric([store], n)
        yield err


@dataclass(frozen=True)
class Verdict:
    """The outcome of every limit on one request."""

    refuse: bool
    headers: list[tuple[bytes, bytes]]
    retry_after: int = 0
    limit: str = ""


class Limiter:
    """Decides requests against the limits the config currently holds."""

    def __init__(self, backend: Backend, metrics: RateLimitMetrics | None = None) -> None:
        self.backend = backend
        self.metrics = metrics or RateLimitMetrics()
        # Told of every refusal and would-be refusal (the top limited keys); None: nobody.
        self.on_refused: Callable[[Limit, Scope], None] | None = None

    async def check(self, limits: Sequence[Limit], route: str, scope: Scope) -> Verdict | None:
        """Decide every limit on ``route``; None when none applies (the common, cheap case)."""
        applicable = [lim for lim in limits if lim.applies_to(route)]
        if not applicable:
            return None
        decide = self.backend.decide
        return self._judge(route, [
            (lim, await decide(storage_key(lim, client_key(lim.key, scope)), lim.rate, lim.burst))
            for lim in applicable], scope)

    def check_sync(self, limits: Sequence[Limit], route: str, scope: Scope,
                   allowed_headers: bool = True) -> Verdict | None:
        """:meth:`check` for a caller without an event loop (WSGI, a sync gate).

        ``allowed_headers=False``: a caller that only answers refusals skips building the
        RateLimit headers of an allowed request.
        """
        applicable = [lim for lim in limits if lim.applies_to(route)]
        if not applicable:
            return None
        decide = self.backend.decide_sync
        return self._judge(route, [
            (lim, decide(storage_key(lim, client_key(lim.key, scope)), lim.rate, lim.burst))
            for lim in applicable], scope, allowed_headers)

    def _judge(self, route: str, decisions: list[tuple[Limit, Decision | None]], scope: Scope,
               allowed_headers: bool = True) -> Verdict:
        """Count every decision and pick the answer: the strictest enforced refusal wins."""
        enforced: list[tuple[Limit, Decision]] = []
        refused: tuple[Limit, Decision] | None = None
        for lim, decision in decisions:
            if decision is None:  # store down or slow: fail open, never an outage
                self.metrics.store_error(self.backend.name)
                decision = Decision(True, 0.0, 0.0, lim.burst)
            if decision.allowed:
                self.metrics.count(route, lim.name, ALLOWED)
            elif lim.mode == SHADOW:
                self.metrics.count(route, lim.name, SHADOW_LIMITED)
            else:
                self.metrics.count(route, lim.name, LIMITED)
                if refused is None or decision.retry_after > refused[1].retry_after:
                    refused = (lim, decision)
            if not decision.allowed and self.on_refused is not None:
                self.on_refused(lim, scope)
            if lim.mode == ENFORCE:
                enforced.append((lim, decision))
        if refused is None and not allowed_headers:
            return Verdict(False, [])
        return _verdict(enforced, refused)


# RateLimit-Policy values by the enforced limits they list (the same on every request until
# the limits change: built once, not per allowed request); cleared when it grows past 256.
_POLICIES: dict[tuple[Limit, ...], bytes] = {}


def _policy(limits: tuple[Limit, ...]) -> bytes:
    value = _POLICIES.get(limits)
    if value is None:
        if len(_POLICIES) >= 256:
            _POLICIES.clear()
        value = _POLICIES[limits] = ", ".join(
            f"{_sf_string(lim.name)};q={lim.burst};w={lim.window()}" for lim in limits).encode()
    return value


def _verdict(enforced: list[tuple[Limit, Decision]],
             refused: tuple[Limit, Decision] | None) -> Verdict:
    if not enforced:
        return Verdict(False, [])  # shadow only: the answer must look exactly as without it
    policy = _policy(tuple(lim for lim, _ in enforced))
    if refused is not None:
        lim, dec = refused
    elif len(enforced) == 1:
        lim, dec = enforced[0]
    else:
        lim, dec = min(enforced, key=lambda ld: (ld[1].remaining, -ld[1].reset))
    reset = _whole_seconds(dec.reset)
    current = f'"{lim.name}";r={dec.remaining};t={reset}' \
        if '"' not in lim.name and "\\" not in lim.name else \
        f"{_sf_string(lim.name)};r={dec.remaining};t={reset}"
    headers = [(b"ratelimit-policy", policy), (b"ratelimit", current.encode())]
    if refused is None:
        return Verdict(False, headers)
    wait = max(1, _whole_seconds(refused[1].retry_after))
    return Verdict(True, [*headers, (b"retry-after", str(wait).encode())], wait, lim.name)


def _sf_string(text: str) -> str:
    """A structured-field sf-string (names are validated to plain ASCII already)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def answer_429(verdict: Verdict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The refusal as (status, headers, body): a JSON body naming the limit, the limit headers."""
    body = json.dumps({"error": "rate_limited", "limit": verdict.limit,
                       "retry_after": verdict.retry_after}).encode()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
               (b"content-length", str(len(body)).encode()), *verdict.headers]
    return 429, headers, body


async def send_429(send: Send, verdict: Verdict) -> None:
    """Answer a refused request over ASGI (see :func:`answer_429`)."""
    status, headers, body = answer_429(verdict)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
