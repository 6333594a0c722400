"""Rate limits inside the built-in balancer: decided before a server is chosen.

The agent's own pieces, unchanged: :class:`~..ratelimit.Limit` values decided by
a :class:`~..ratelimit.Limiter` over a memory, state-dir file or Redis store
(:func:`~..ratelimit_control.make_backend`), answered with the same 429 and
headers, counted in ``trimtab_ratelimit_requests_total{route, limit, result}``
on the balancer's ``/_trimtab/metrics``. A refused request is never read nor
forwarded: no server sees it.

Routes: with route templates (``routes``, e.g. from ``--routes FILE``) a request's
route is the template its path matches (``<unmatched>`` when none does); without
them every request's route is ``*``, so only ``"route": "*"`` limits apply.

Start-up limits (``python -m trimtab.agent balance``): ``--limits FILE`` (a JSON
object name → fields, as a PATCH's ``limits``) and/or ``--limit
NAME:FIELD=VALUE,...`` (e.g. ``per-ip:route=*,key=ip,rate=5,burst=10,mode=enforce``),
validated by the same rules as the control API (:func:`limits_from_cli`). They
live in memory: a restart starts again from the command line, and changes made
through the control API since are in the journal, not re-applied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from ..control import parse_json
from ..ratelimit import (
    ANY_ROUTE,
    Backend,
    Limit,
    Limiter,
    RateLimitCollector,
    RateLimitMetrics,
    Scope,
    Verdict,
)
from ..ratelimit_config import diff_limits, limits_of, merge_limits, validate_limits
from ..ratelimit_control import make_backend
from ..routes import RouteResolver
from .limits import Counts

__all__ = ["BuiltinLimits", "limits_from_cli", "parse_limit_flag"]

MAX_LIMITS_FILE = 1024 * 1024


class BuiltinLimits:
    """The built-in balancer's limits: the request-path check and the control API back-end."""

    target = "balancer"

    def __init__(self, limits: Mapping[str, Any] | None = None, routes: Sequence[str] = (),
                 store: str | Backend | None = None,
                 state_dir: str | os.PathLike[str] | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        """``limits``: name → fields, validated as a patch would be (``ValueError`` if bad)."""
        self._routes = list(dict.fromkeys(routes))
        self._resolver = RouteResolver(patterns=self._routes) if self._routes else None
        self.metrics = RateLimitMetrics()
        self.limiter = Limiter(make_backend(store, str(state_dir) if state_dir else None,
                                            "balancer"), self.metrics)
        section = dict(limits or {})
        errors = validate_limits(section, {}, self._routes)
        if errors:
            raise ValueError("; ".join(f"{f}: {m}" for f, m in errors))
        self._doc: dict[str, dict[str, Any]] = {}
        merge_limits(self._doc, diff_limits({}, section)[1])
        self._limits: tuple[Limit, ...] = limits_of(self._doc)
        if registry is not None:
            registry.register(RateLimitCollector(self.metrics))

    def route_of(self, scope: Scope) -> str:
        """The route a limit names for this request (see the module docstring)."""
        return self._resolver.peek(scope) if self._resolver is not None else ANY_ROUTE

    async def check(self, scope: Scope) -> Verdict | None:
        """Decide the request; None when no limit applies (the common, cheap case)."""
        if not self._limits:
            return None
        return await self.limiter.check(self._limits, self.route_of(scope), scope)

    def routes(self) -> list[str]:
        """The configured route templates."""
        return list(self._routes)

    def problems(self, section: dict[str, Any], current: dict[str, dict[str, Any]]
                 ) -> list[tuple[str, str]]:
        """Nothing beyond the shared rules: the built-in balancer runs the agent's limiter."""
        return []

    async def current(self) -> dict[str, dict[str, Any]]:
        """A copy of the live limits."""
        return {name: dict(fields) for name, fields in self._doc.items()}

    async def replace(self, limits: dict[str, dict[str, Any]]) -> None:
        """Swap in the new set; the next request is decided by it (one assignment, no await)."""
        parsed = limits_of(limits)  # already validated; raises only on a bug
        self._doc = {name: dict(fields) for name, fields in limits.items()}
        self._limits = parsed

    async def counts(self) -> Counts:
        """The counters ``/_trimtab/metrics`` exports."""
        return self.metrics.snapshot()[0]

    async def reconcile(self) -> list[dict[str, Any]]:
        """Nothing to reconcile: the balancer's memory is the truth."""
        return []

    async def aclose(self) -> None:
        """Close the store's connections (Redis) or file (state dir)."""
        close = getattr(self.limiter.backend, "close", None)
        if close is not None:
            result = close()
            if result is not None:
                await result

    def extra(self) -> dict[str, Any]:
        """The store in use and its failures (requests let through)."""
        return {"store": self.limiter.backend.name,
                "store_errors": sum(self.metrics.snapshot()[1].values())}


def parse_limit_flag(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME:route=/r,key=ip,rate=5,burst=10,mode=enforce`` → (name, fields).

    Only the syntax is checked here (``ValueError`` naming the flag); the values
    are checked by :func:`limits_from_cli` with the control API's own rules.
    """
    name, sep, rest = spec.partition(":")
    if not sep or not name or not rest:
        raise ValueError(f"--limit {spec!r}: write NAME:route=R,key=K,rate=N,burst=N[,mode=M]")
    fields: dict[str, Any] = {}
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--limit {spec!r}: {part!r} is not FIELD=VALUE")
        if key in fields:
            raise ValueError(f"--limit {spec!r}: {key} given twice")
        fields[key] = _cli_value(key, value.strip())
    return name, fields


def _cli_value(key: str, raw: str) -> Any:
    """Numbers as numbers (so the shared validator judges them), anything else as text."""
    if key == "burst" and raw.isdigit():
        return int(raw)
    if key == "rate":
        try:
            return parse_json(raw)  # strict: "nan" and "inf" stay text and are refused
        except ValueError:
            return raw
    return raw


def limits_from_cli(flags: Sequence[str], path: str | None) -> dict[str, Any]:
    """Start-up limits from ``--limits FILE`` and ``--limit`` flags (flags win by name)."""
    section: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_LIMITS_FILE + 1)
        except OSError as exc:
            raise ValueError(f"--limits {path}: {exc.strerror or exc}") from None
        if len(raw) > MAX_LIMITS_FILE:
            raise ValueError(f"--limits {path}: over 1 MiB, not a limits file")
        try:
            doc = parse_json(raw)
        except ValueError as exc:
            raise ValueError(f"--limits {path}: not JSON ({exc})") from None
        if isinstance(doc, dict) and set(doc) == {"limits"}:
            doc = doc["limits"]  # a PATCH body's shape works too
        if not isinstance(doc, dict):
            raise ValueError(f"--limits {path}: must be a JSON object of name -> fields")
        section.update(doc)
    for spec in flags:
        name, fields = parse_limit_flag(spec)
        section[name] = fields
    return section
