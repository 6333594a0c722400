"""Rate limits through the balancer's control API, for either back-end.

Served by :class:`~.control.ControlApp` when it is given a :class:`LimitsApi`:

- ``GET /_trimtab/balancer/limits`` (read) → ``{"version", "target", "routes",
  "limits": {name: {route, key, rate, burst, mode, "counts": {route: {allowed,
  limited, shadow_limited}}}}, ...}`` with an ``ETag`` (a hash of the limits); when the
  counts cannot be read (HAProxy: no such counts table), empty counts and
  ``"counts_error"`` saying why.
- ``PATCH /_trimtab/balancer/limits`` (write, ``If-Match`` of that ETag):
  ``{"limits": {name: {fields} | null}, "reason": "..."}``. The fields and their
  rules are the agent's own (:mod:`..ratelimit_config`, validated by the same
  function); a back-end may refuse more (HAProxy: see :mod:`.limits_haproxy`).
  Validated whole, applied whole; one journal entry ``limits.<name>`` per
  changed limit, and one refused entry for a refused patch.
- ``POST /_trimtab/balancer/revert/{id}`` of a ``limits.<name>`` entry: the
  entry's old value as a new change (409 when that limit changed since, unless
  forced with a reason), exactly as for a server's weight.

The limits have their own ETag, so a weight change does not make a limits
patch stale, nor the reverse.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import TYPE_CHECKING, Any, Protocol

from ..auth import Principal
from ..journal import ACCEPTED, REFUSED, JournalEntry
from ..ratelimit_config import diff_limits, limits_values_at, merge_limits, validate_limits
from .control import HTTPError
from .policies import BackendError

if TYPE_CHECKING:
    from .control import ControlApp

__all__ = ["LimitsApi", "LimitsBackend", "limits_etag"]

LIMITS_PREFIX = "limits."
Counts = dict[tuple[str, str, str], int]  # (route, limit, result) -> n, as RateLimitMetrics
_Reply = tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]


class LimitsBackend(Protocol):
    """Where a balancer's limits live and are enforced."""

    target: str  # the journal target: the same as the balancer back-end's

    def routes(self) -> list[str]:
        """Route names a limit may name besides ``*``."""

    def problems(self, section: dict[str, Any], current: dict[str, dict[str, Any]]
                 ) -> list[tuple[str, str]]:
        """What this back-end cannot do of an already valid patch, as (field, message)."""

    async def current(self) -> dict[str, dict[str, Any]]:
        """The live limits as document fields (route, key, rate, burst, mode)."""

    async def replace(self, limits: dict[str, dict[str, Any]]) -> None:
        """Make ``limits`` the live set, whole; :class:`BackendError` if nothing changed."""

    async def counts(self) -> Counts:
        """Decisions per (route, limit, result) so far."""

    async def reconcile(self) -> list[dict[str, Any]]:
        """Journal-ready events of desired values re-applied (an HAProxy reload)."""

    def extra(self) -> dict[str, Any]:
        """Back-end specific fields for the GET document."""


def limits_etag(limits: dict[str, dict[str, Any]]) -> str:
    """Version of a limits document."""
    doc = json.dumps(limits, sort_keys=True)
    return '"l' + hashlib.sha256(doc.encode()).hexdigest()[:16] + '"'


class LimitsApi:
    """GET, PATCH and revert of limits; the caller (:class:`ControlApp`) authenticates."""

    def __init__(self, backend: LimitsBackend) -> None:
        self.backend = backend

    async def document(self) -> tuple[dict[str, Any], str]:
        """The GET body and its ETag."""
        current = await self.backend.current()
        try:
            counts, counts_error = await self.backend.counts(), None
        except BackendError as err:  # the limits still read; the counts say why they do not
            counts, counts_error = {}, str(err)
        tag = limits_etag(current)
        limits = {}
        for name, fields in sorted(current.items()):
            per_route: dict[str, dict[str, int]] = {}
            for (route, limit, result), n in counts.items():
                if limit == name:
                    per_route.setdefault(route, {"allowed": 0, "limited": 0,
                                                 "shadow_limited": 0})[result] = n
            limits[name] = {**fields, "counts": per_route}
        doc = {"version": tag, "target": self.backend.target,
               "routes": ["*", *self.backend.routes()], "limits": limits,
               **self.backend.extra()}
        if counts_error is not None:
            doc["counts_error"] = counts_error
        return doc, tag

    async def get(self, app: ControlApp, scope: dict[str, Any], receive: Any,
                  who: Principal) -> _Reply:
        """``GET /_trimtab/balancer/limits``."""
        doc, tag = await self.document()
        return 200, doc, [(b"etag", tag.encode())]

    async def patch(self, app: ControlApp, scope: dict[str, Any], receive: Any,
                    who: Principal) -> _Reply:
        """``PATCH /_trimtab/balancer/limits`` (If-Match required)."""
        body = await app._body(receive, who)
        reason, _ = app._reason_force(body, who)
        extra = sorted(set(body) - {"limits", "reason", "force"})
        if extra:
            app._refuse(who, "limits", None, body.get("limits"), reason, 422, extra[0],
                        "unknown field (allowed: limits, reason)")
        section = body.get("limits")
        async with app._lock:
            current = await self._current_or_journal(app, who, section, reason)
            match = dict(scope["headers"]).get(b"if-match", b"").decode("latin-1").strip()
            tag = limits_etag(current)
            if not match:
                app._refuse(who, "limits", None, section, reason, 428, "If-Match",
                            f"required; current version is {tag}")
            if match not in (tag, "*"):
                app._refuse(who, "limits", match, tag, reason, 412, "If-Match",
                            f"stale version {match}; current is {tag}")
            return await self._change(app, section, current, who, reason, None)

    async def revert(self, app: ControlApp, entry: JournalEntry, who: Principal, reason: str,
                     force: bool) -> _Reply:
        """The entry's old value of ``limits.<name>`` as a new change."""
        name = entry.what.removeprefix(LIMITS_PREFIX)
        async with app._lock:
            current = await self._current_or_journal(app, who, {name: entry.old}, reason)
            now = limits_values_at(current, {name: entry.new})[name]
            if now != entry.new and not force:
                app._refuse(who, entry.what, now, entry.old, reason, 409, entry.what,
                            f"changed since entry {entry.id} ({entry.new!r} -> {now!r}); "
                            "send force with a reason")
            return await self._change(app, {name: entry.old}, current, who, reason, entry.id)

    async def _current_or_journal(self, app: ControlApp, who: Principal, new: Any,
                                  reason: str) -> dict[str, dict[str, Any]]:
        try:
            return await self.backend.current()
        except BackendError as err:
            app.journal.record(who=who.name, target=self.backend.target, what="limits",
                               old=None, new=new, reason=reason, result=REFUSED,
                               detail=f"nothing applied: back-end unreachable: {err}")
            raise

    async def _change(self, app: ControlApp, section: Any, current: dict[str, dict[str, Any]],
                      who: Principal, reason: str, reverts: int | None) -> _Reply:
        if not isinstance(section, dict) or not section:
            app._refuse(who, "limits", None, section, reason, 422, "limits",
                        "must be a non-empty object {name: {fields} | null}")
        errors = validate_limits(section, current, self.backend.routes()) or \
            self.backend.problems(section, current)
        if errors:
            detail = "; ".join(f"{f}: {m}" for f, m in errors)
            app.journal.record(who=who.name, target=self.backend.target, what="limits",
                               old=None, new=section, reason=reason, result=REFUSED,
                               detail=detail, reverts=reverts)
            raise HTTPError(422, errors[0][0], detail, errors)
        old, new = diff_limits(current, section)
        after = copy.deepcopy(current)
        merge_limits(after, new)
        if new:
            try:
                await self.backend.replace(after)
            except BackendError as err:
                for name in new:
                    app.journal.record(who=who.name, target=self.backend.target,
                                       what=LIMITS_PREFIX + name, old=old[name], new=new[name],
                                       reason=reason, result=REFUSED, reverts=reverts,
                                       detail=f"nothing applied: {err}")
                raise
        entries = [app.journal.record(who=who.name, target=self.backend.target,
                                      what=LIMITS_PREFIX + name, old=old[name], new=new[name],
                                      reason=reason, result=ACCEPTED, reverts=reverts)
                   for name in sorted(new)]
        doc, tag = await self.document()
        return 200, {**doc, "applied": [e.to_dict() for e in entries],
                     "unchanged": sorted(set(section) - set(new))}, [(b"etag", tag.encode())]
