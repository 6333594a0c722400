"""Rate limits wired into an agent: the store choice, the request-path guard, the read endpoint.

- Store (``ratelimit_store``, default ``$TRIMTAB_RATELIMIT_STORE``): ``memory``
  (per process), ``file`` (every worker of the instance, through the state dir;
  the default when there is one), or a ``redis://`` URL (every instance; fails
  open within ``timeout``, see :mod:`.ratelimit_store`).
- ``GET /_trimtab/limits`` (read) → ``{"limits": {name: {route, key, rate,
  burst, mode, "counts": {route: {allowed, limited, shadow_limited}}}},
  "store": kind, "store_errors": n}`` with the config's ``ETag``:
  change limits with ``PATCH /_trimtab/config`` (``limits.<name>``, see
  :mod:`.ratelimit_config`), revert with ``POST /_trimtab/revert/{id}``. Counts
  are the same counters as ``/metrics`` (every worker's, with a state dir).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from .auth import READ
from .control import ApiError, ControlAPI, Reply, Request
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
from .ratelimit_share import RateLimitShare
from .ratelimit_store import FileBackend, MemoryBackend, RedisBackend

STORE_ENV = "TRIMTAB_RATELIMIT_STORE"


def make_backend(spec: str | Backend | None, state_dir: str | None, instance: str,
                 timeout: float = 0.05) -> Backend:
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
        return RedisBackend(spec, timeout=timeout)
    raise ValueError(f"ratelimit store must be memory, file or a redis:// URL, got {spec!r}")


class RateLimits:
    """One agent's limiter: decides requests, answers 429s, exports and serves counters.

    With ``share`` (a state dir), /metrics sums every worker's counters.
    """

    def __init__(self, backend: Backend, registry: CollectorRegistry | None = None,
                 share_dir: Path | None = None, instance: str = "api") -> None:
        self.metrics = RateLimitMetrics()
        self.limiter = Limiter(backend, self.metrics)
        self.share = RateLimitShare(share_dir, instance, self.metrics) \
            if share_dir is not None else None
        self._api: ControlAPI | None = None
        if registry is not None:
            registry.register(RateLimitCollector(
                self.metrics, self.share.merged if self.share is not None else None))

    @classmethod
    def for_agent(cls, api: ControlAPI, registry: CollectorRegistry, instance: str,
                  state_dir: str | os.PathLike[str] | None,
                  store: str | Backend | None = None, timeout: float = 0.05) -> RateLimits:
        """Everything an agent needs: the store, counters on /metrics, ``GET limits``."""
        state = str(state_dir) if state_dir else None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", instance)
        limits = cls(make_backend(store, state, instance, timeout), registry,
                     Path(state, "ratelimit-metrics") if state else None, safe)
        limits.add_endpoints(api)
        return limits

    async def guard(self, limits: tuple[Limit, ...], route: str, scope: Scope,
                    send: Send) -> tuple[bool, Send]:
        """Decide a request before the app sees it.

        Returns ``(True, send)`` when it was answered 429 here (the app must not
        run), else ``(False, send')`` where ``send'`` adds the enforced limits'
        RateLimit headers to the app's response (``send`` itself when none apply).
        """
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

    def check_sync(self, limits: tuple[Limit, ...], route: str, scope: Scope
                   ) -> Verdict | None:
        """Decide a request without an event loop (WSGI); a refusal has ``refuse`` set.

        The caller answers a refusal with :func:`.ratelimit.answer_429` and adds ``headers``
        of an allowed verdict to the app's response.
        """
        if not limits:
            return None
        verdict = self.limiter.check_sync(limits, route, scope)
        if self.share is not None and verdict is not None:
            self.share.maybe_publish()
        return verdict

    def add_endpoints(self, api: ControlAPI) -> None:
        """Serve ``GET /_trimtab/limits`` on ``api``."""
        self._api = api
        api.add("GET", "limits", READ, self._read)

    async def _read(self, req: Request) -> Reply:
        if req.scope["path"].rstrip("/") != "/_trimtab/limits":
            raise ApiError(404, "not_found", f"no endpoint {req.scope['path']}")
        assert self._api is not None  # set by add_endpoints, the only way here
        doc, etag = self._api.config.document()
        decisions, errors = (self.share.merged() if self.share else self.metrics).snapshot()
        limits = {}
        for name, fields in doc.get("limits", {}).items():
            counts: dict[str, dict[str, int]] = {}
            for (route, limit, result), n in decisions.items():
                if limit == name:
                    counts.setdefault(route, {"allowed": 0, "limited": 0,
                                              "shadow_limited": 0})[result] = n
            limits[name] = {**fields, "counts": counts}
        return Reply(200, {"limits": limits, "store": self.limiter.backend.name,
                           "store_errors": sum(errors.values())},
                     [(b"etag", etag.encode())])


def _with_headers(send: Send, verdict: Verdict) -> Send:
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *verdict.headers]}
        await send(message)

    return wrapped
