"""Rate limits wired into an agent: the store choice, the request-path guard, the read endpoint.

- Store (``ratelimit_store``, default ``$TRIMTAB_RATELIMIT_STORE``): ``memory``
  (per process), ``file`` (every worker of the instance, through the state dir;
  the default when there is one), or a ``redis://`` URL (every instance; fails
  open within ``timeout``, see :mod:`.ratelimit_store`). An agent's Redis timeout is
  250 ms: the ASGI side awaits the store, so a slow Redis holds only the request it
  decides, and a tighter bound made decisions of concurrent requests on a busy worker
  time out (their event loop turns count too) and fail open for the whole cool-down.
  ``$TRIMTAB_RATELIMIT_LEASE`` (seconds, 0 to 1, default 0.05; 0: none) is how long a
  token Redis granted to a hot key in a batch may wait here to be spent (see
  :class:`.ratelimit_store.Leases`: no round trip per request on a busy key; early in a
  window by at most what the lease before granted, never more over the long run).
- ``GET /_trimtab/limits`` (read) → ``{"limits": {name: {route, key, rate,
  burst, mode, "counts": {route: {allowed, limited, shadow_limited}}}},
  "store": kind, "store_errors": n}`` with the config's ``ETag``:
  change limits with ``PATCH /_trimtab/config`` (``limits.<name>``, see
  :mod:`.ratelimit_config`), revert with ``POST /_trimtab/revert/{id}``. Counts
  are the same counters as ``/metrics`` (every worker's, with a state dir).
- ``GET /_trimtab/limits/whatif?route=&key=ip&rate=&burst=&minutes=10`` (read) →
  what that limit would have done to the route's recent traffic in this worker
  (``requests``, ``limited``, ``limited_share``, ``keys``, ``limited_keys``,
  ``top_limited``; see :mod:`.ratelimit_whatif`); 400 naming a bad parameter,
  404 when the route or that key kind has no recorded arrivals.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from .auth import READ
from .control import ApiError, ControlAPI, Reply, Request
from .params import BadNumber, parse_finite, parse_uint
from .ratelimit import (
    Backend,
    Limit,
    Limiter,
    RateLimitCollector,
    RateLimitMetrics,
    Scope,
    Send,
    Verdict,
    send_429,
)
from .ratelimit_config import MAX_BURST, MAX_RATE, valid_key
from .ratelimit_share import RateLimitShare, TopKeysShare
from .ratelimit_store import FileBackend, MemoryBackend, RedisBackend
from .ratelimit_topkeys import KeyIds, MergedTop, TopKeys
from .ratelimit_whatif import ArrivalLog

STORE_ENV = "TRIMTAB_RATELIMIT_STORE"
LEASE_ENV = "TRIMTAB_RATELIMIT_LEASE"
DEFAULT_LEASE = 0.05


def make_backend(spec: str | Backend | None, state_dir: str | None, instance: str,
                 timeout: float = 0.25) -> Backend:
    """The store ``spec`` names (see the module docstring); refuses an unknown one."""
    if spec is not None and not isinstance(spec, str):
        return spec
    spec = spec or os.environ.get(STORE_ENV) or ("file" if state_dir else "memory")
    if spec == "memory":
        return MemoryBackend()
    if spec == "file":
        if not state_dir:
            raise ValueError("ratelimit store 'file' needs a state dir")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", instance)
        return FileBackend(Path(state_dir, f"ratelimit-{safe}.bin"))
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisBackend(spec, timeout=timeout, lease=_lease_setting())
    # Never the spec itself: a mistyped URL may carry a password.
    scheme = spec.partition("://")[0] if "://" in spec else None
    got = f"a {scheme}:// URL" if scheme else "none of them (not shown: it may hold a password)"
    raise ValueError(f"ratelimit store must be memory, file or a redis:// URL, got {got}")


def _lease_setting() -> float:
    """``$TRIMTAB_RATELIMIT_LEASE`` in seconds (0 to 1); a bad value stops the agent by name."""
    raw = os.environ.get(LEASE_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_LEASE
    try:
        value = parse_finite(raw.strip(), LEASE_ENV)
    except BadNumber as err:
        raise ValueError(f"{err}, in seconds (0 turns leases off)") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{LEASE_ENV} must be between 0 and 1 second (0 turns leases off), "
                         f"got {value!r}")
    return value


class RateLimits:
    """One agent's limiter: decides requests, answers 429s, exports and serves counters.

    With ``share`` (a state dir), /metrics sums every worker's counters.
    """

    def __init__(self, backend: Backend, registry: CollectorRegistry | None = None,
                 share_dir: Path | None = None, instance: str = "api") -> None:
        self.metrics = RateLimitMetrics()
        self.limiter = Limiter(backend, self.metrics)
        # API keys shown as ids keyed by a secret of the state dir: one id in every worker.
        ids = KeyIds(share_dir.parent if share_dir is not None else None)
        self.top_keys = TopKeys(ids=ids)
        self.limiter.on_refused = self._refused
        self.arrivals = ArrivalLog(ids=ids)
        self.share = RateLimitShare(share_dir, instance, self.metrics) \
            if share_dir is not None else None
        self.top_share = TopKeysShare(share_dir.with_name("ratelimit-topkeys"), instance,
                                      self.top_keys) if share_dir is not None else None
        self._api: ControlAPI | None = None
        if registry is not None:
            registry.register(RateLimitCollector(
                self.metrics, self.share.merged if self.share is not None else None))

    @classmethod
    def for_agent(cls, api: ControlAPI, registry: CollectorRegistry, instance: str,
                  state_dir: str | os.PathLike[str] | None,
                  store: str | Backend | None = None, timeout: float = 0.25) -> RateLimits:
        """Everything an agent needs: the store, counters on /metrics, ``GET limits``."""
        state = str(state_dir) if state_dir else None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", instance)
        limits = cls(make_backend(store, state, instance, timeout), registry,
                     Path(state, "ratelimit-metrics") if state else None, safe)
        limits.add_endpoints(api)
        return limits

    def _refused(self, limit: Limit, scope: Scope) -> None:
        self.top_keys.refused(limit, scope)
        if self.top_share is not None:
            self.top_share.maybe_publish()

    async def guard(self, limits: tuple[Limit, ...], route: str, scope: Scope,
                    send: Send) -> tuple[bool, Send]:
        """Decide a request before the app sees it.

        Returns ``(True, send)`` when it was answered 429 here (the app must not
        run), else ``(False, send')`` where ``send'`` adds the enforced limits'
        RateLimit headers to the app's response (``send`` itself when none apply).
        """
        self.arrivals.observe(route, limits, scope, time.monotonic())
        if not limits:
            return False, send
        verdict = await self.limiter.check(limits, route, scope)
        if self.share is not None and verdict is not None:
            self.share.maybe_publish()
        if verdict is None or not verdict.headers:
            return False, send
        if verdict.refuse:
            await send_429(send, verdict)
            return True, send
        return False, _with_headers(send, verdict)

    def check_sync(self, limits: tuple[Limit, ...], route: str, scope: Scope,
                   allowed_headers: bool = True) -> Verdict | None:
        """Decide a request without an event loop (WSGI); a refusal has ``refuse`` set.

        The caller answers a refusal with :func:`.ratelimit.answer_429` and adds ``headers``
        of an allowed verdict to the app's response.
        """
        self.arrivals.observe(route, limits, scope, time.monotonic())
        if not limits:
            return None
        verdict = self.limiter.check_sync(limits, route, scope, allowed_headers)
        if self.share is not None and verdict is not None:
            self.share.maybe_publish()
        return verdict

    def add_endpoints(self, api: ControlAPI) -> None:
        """Serve ``GET /_trimtab/limits`` on ``api``."""
        self._api = api
        api.add("GET", "limits", READ, self._read)

    async def _read(self, req: Request) -> Reply:
        path = req.scope["path"].rstrip("/")
        if path == "/_trimtab/limits/whatif":
            return self._whatif(req.query)
        if path != "/_trimtab/limits":
            raise ApiError(404, "not_found", f"no endpoint {req.scope['path']}")
        assert self._api is not None  # set by add_endpoints, the only way here
        doc, etag = self._api.config.document()
        decisions, errors = (self.share.merged() if self.share else self.metrics).snapshot()
        limits = {}
        configured = doc.get("limits", {})
        self.top_keys.forget(set(configured))
        # The keys refused most: every worker's, with a state dir (header keys as ids).
        top: TopKeys | MergedTop = self.top_keys
        seconds = self.top_keys.seconds()
        if self.top_share is not None:
            top = self.top_share.merged()
            seconds = round(max(seconds, top.seconds), 3)
        for name, fields in configured.items():
            counts: dict[str, dict[str, int]] = {}
            for (route, limit, result), n in decisions.items():
                if limit == name:
                    counts.setdefault(route, {"allowed": 0, "limited": 0,
                                              "shadow_limited": 0})[result] = n
            limits[name] = {**fields, "counts": counts, "top_keys": top.top(name),
                            "top_keys_seconds": seconds}
        return Reply(200, {"limits": limits, "store": self.limiter.backend.name,
                           "store_errors": sum(errors.values())},
                     [(b"etag", etag.encode())])

    def _whatif(self, query: dict[str, str]) -> Reply:
        route = query.get("route")
        if not route:
            raise ApiError(400, "bad_parameter", "route is required",
                           routes=self.arrivals.routes())
        key = query.get("key", "ip")
        if not valid_key(key):
            raise ApiError(400, "bad_parameter",
                           "key must be ip, global, header:<name> or jwt:<claim>")
        key = key.lower() if key.startswith("header:") else key
        rate = _param(query, "rate", None, 0.0, MAX_RATE, "requests per second")
        burst = int(_param(query, "burst", None, 1, MAX_BURST, "requests", integer=True))
        window = self.arrivals.window / 60
        minutes = _param(query, "minutes", min(10.0, window), 0.0, window, "minutes")
        answer = self.arrivals.predict(route, key, rate, burst, minutes * 60,
                                       time.monotonic())
        if answer is None:
            specs = self.arrivals.specs(route)
            if not specs:
                raise ApiError(404, "unknown_route", f"no traffic recorded for route {route!r}",
                               routes=self.arrivals.routes())
            raise ApiError(404, "key_not_recorded",
                           f"arrivals on {route!r} are not recorded by {key}; add a limit "
                           "with that key (mode off is enough) to start recording",
                           keys=specs)
        return Reply(200, answer)


def _with_headers(send: Send, verdict: Verdict) -> Send:
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *verdict.headers]}
        await send(message)

    return wrapped

def _param(query: dict[str, str], name: str, default: float | None, low: float, high: float,
           unit: str, integer: bool = False) -> float:
    """A number in (low, high] (integers: [low, high]) from the query; 400 naming it."""
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ApiError(400, "bad_parameter", f"{name} is required")
        return default
    try:
        value = float(parse_uint(raw, name)) if integer else parse_finite(raw, name)
    except BadNumber as err:
        raise ApiError(400, "bad_parameter", str(err)) from None
    if not (low <= value <= high if integer else low < value <= high):
        raise ApiError(400, "bad_parameter",
                       f"{name} must be {'from' if integer else 'above'} {low:g} "
                       f"to {high:g} {unit}, got {value:g}")
    return value
