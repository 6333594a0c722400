"""Control client: the cockpit's Qt-free way to change TTLs and weights on a fleet.

Synchronous (httpx), meant for a worker thread, never the GUI thread; every
call has a bounded timeout. Fan-out calls run in a small thread pool, so one
dead instance costs one timeout, not one per instance.

Results never claim what did not happen: each target answers for itself with an
:class:`Outcome` whose ``status`` is :data:`APPLIED`, :data:`UNCHANGED` (already
so; nothing journaled), :data:`REFUSED` (the agent's message and fields),
:data:`GUARD_RAIL` (balancer 409: needs ``force`` and a reason), :data:`CONFLICT`
(412, or a revert whose fields changed since; ``changes`` lists what the other
operator changed when the client knows the document the caller saw),
:data:`UNREACHABLE` (no connection: certainly not applied), :data:`UNKNOWN` (sent,
but the answer was lost, e.g. a read timeout: it may have been applied; a retry
is safe, its If-Match turns a done change into a conflict) or :data:`ERROR`
(an unexpected answer, e.g. 500).

Token scope: agents do not report a token's scopes, and any write probe by a
read token is journaled as a refusal, so :meth:`ControlClient.access` reads
``scopes`` from ``/_trimtab/health`` if an agent sends it, otherwise learns
"read only" from the first 403 a real write gets (``write=None``: not known yet).

    client = ControlClient(token)
    agents = [Agent.from_target(t) for t in targets]   # ScrapeTarget or fleet Target
    reads = client.read_configs(agents)                 # {agent: ConfigRead | ControlError}
    result = client.set_ttl(agents, "/products/{id}", 30, "peak", expected_etags(reads))
    client.rollback(result)                             # undo the applied part

Rate limits are part of the instance config: :meth:`ControlClient.set_limit` and
:meth:`ControlClient.delete_limit` are config patches (same ETags, journal and
:meth:`~ControlClient.rollback`/:meth:`~ControlClient.revert`), and
:meth:`ControlClient.read_limits` adds the agent's decision counts. A balancer's own
limits (``/_trimtab/balancer/limits``, their own ETag and journal) are read and changed with
:meth:`~ControlClient.read_balancer_limits`, :meth:`~ControlClient.set_balancer_limit` and
:meth:`~ControlClient.delete_balancer_limit`, with the same return types.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar

import httpx

from .top_keys import InstanceTopKeys, TopKeys, merge, parse_instance
from .types import (
    APPLIED,
    CONFLICT,
    ERROR,
    GUARD_RAIL,
    INSTANCE,
    REFUSED,
    SKIPPED,
    UNCHANGED,
    UNKNOWN,
    UNREACHABLE,
    Access,
    Agent,
    BalancerState,
    ChangeResult,
    ConfigRead,
    ControlError,
    FieldChange,
    JournalRow,
    LimitsRead,
    LimitWhatIf,
    Outcome,
    Reply,
    Unreachable,
    WhatIf,
    as_balancer,
    balancer_state,
    comparable,
    diff_docs,
    entry_changes,
    flatten_doc,
    instance_only,
    journal_row,
    limit_views,
    to_revert,
)

# Errors that prove the request never reached the agent; any other may have been applied.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_SEEN_MAX = 512
BALANCER_LIMITS = "/_trimtab/balancer/limits"
T = TypeVar("T")


class ControlClient:
    """Talks to agents and balancers with one bearer token (never logged or shown)."""

    def __init__(self, token: str, timeout: float = 3.0, max_workers: int = 8,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(timeout=timeout, transport=transport,
                                    headers={"Authorization": f"Bearer {token}"})
        self.timeout, self.max_workers = timeout, max_workers
        self._lock = threading.Lock()
        # Documents this client handed out, by (base_url, etag): a 412 is diffed against them.
        self._seen: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._denied: dict[str, str] = {}  # base_url → why writes are refused (403 seen)

    def __repr__(self) -> str:
        return f"ControlClient(timeout={self.timeout})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, agent: Agent, method: str, path: str, *, json: Any = None,
              headers: dict[str, str] | None = None, params: dict[str, str] | None = None
              ) -> Reply:
        try:
            resp = self._client.request(method, agent.base_url + path, json=json,
                                        headers=headers, params=params)
        except httpx.HTTPError as err:  # refused, reset, timed out: no answer at all
            sent = not isinstance(err, _NOT_SENT)
            what = "no answer from" if sent else "unreachable:"
            raise Unreachable(f"{what} {agent.name}: {type(err).__name__}: {err}", sent) \
                from None
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = {"message": resp.text[:200]}
        if resp.status_code == 403 and method != "GET":
            with self._lock:
                self._denied[agent.base_url] = Reply(403, body, None).message()
        return Reply(resp.status_code, body, resp.headers.get("etag"))

    def _get(self, agent: Agent, path: str, params: dict[str, str] | None = None) -> Reply:
        """GET that must succeed: raises :class:`ControlError` otherwise."""
        try:
            reply = self._call(agent, "GET", path, params=params)
        except Unreachable as err:
            raise ControlError(0, "unreachable", str(err)) from None
        if reply.status != 200:
            code = reply.body.get("error", "error") if isinstance(reply.body, dict) else "error"
            raise ControlError(reply.status, str(code), reply.message(), reply.error_fields())
        return reply

    def _remember(self, agent: Agent, etag: str | None, doc: dict[str, Any]) -> None:
        if etag is None:
            return
        with self._lock:
            self._seen[(agent.base_url, etag)] = doc
            while len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)

    def _seen_doc(self, agent: Agent, etag: str | None) -> dict[str, Any] | None:
        with self._lock:
            return self._seen.get((agent.base_url, etag or ""))

    def _fan_out(self, agents: Iterable[Agent], fn: Callable[[Agent], T]) -> dict[Agent, T]:
        todo = list(dict.fromkeys(agents))
        if len(todo) <= 1:
            return {a: fn(a) for a in todo}
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(todo))) as pool:
            return dict(zip(todo, pool.map(fn, todo)))

    def _failure(self, agent: Agent, reply: Reply) -> Outcome:
        """A non-2xx answer as an outcome (412 is handled by the caller)."""
        status = REFUSED if 400 <= reply.status < 500 else ERROR
        message = reply.message()
        if reply.status == 409 and "force" in message and reply.error_fields() == ("servers",):
            status = GUARD_RAIL
        elif reply.status == 409 and isinstance(reply.body, dict) and \
                (reply.body.get("error") == "conflict" and "changed since" in message):
            status = CONFLICT
        return Outcome(agent, status, message, reply.error_fields(), reply.status)

    def _conflict(self, agent: Agent, seen_etag: str | None, current: dict[str, Any],
                  etag: str | None, message: str) -> Outcome:
        """412: what changed between the document the caller saw and the current one."""
        seen = self._seen_doc(agent, seen_etag)
        if seen is None:
            return Outcome(agent, CONFLICT, message + " (the version you read is not known to "
                           "this client: re-read before deciding)", (), 412, etag=etag)
        changes = diff_docs(comparable(seen), comparable(current))
        what = "; ".join(f"{c.path}: {c.old!r} → {c.new!r}" for c in changes) or "nothing visible"
        return Outcome(agent, CONFLICT, f"changed meanwhile: {what}", (), 412, etag=etag,
                       changes=changes)

    # -- scope ------------------------------------------------------------------------------

    def access(self, agent: Agent) -> Access:
        """Whether this token may read and write on ``agent`` (no write probe is sent)."""
        try:
            reply = self._get(agent, "/_trimtab/health") if agent.kind == INSTANCE else \
                self._get(agent, "/_trimtab/balancer")
        except ControlError as err:
            return Access(False, False, err.message)
        scopes = reply.body.get("scopes") if isinstance(reply.body, dict) else None
        if isinstance(scopes, list):  # an agent that reports the caller's scopes
            ok = "write" in scopes
            return Access(True, ok, "" if ok else "this token has read scope only")
        with self._lock:
            denied = self._denied.get(agent.base_url)
        if denied is not None:
            return Access(True, False, denied)
        return Access(True, None, "the agent does not report token scopes; "
                      "a refused write will tell")

    def can_write(self, agent: Agent) -> tuple[bool | None, str]:
        """``(write, reason)`` shortcut over :meth:`access` for enabling controls."""
        access = self.access(agent)
        return access.write, access.reason

    # -- instance config --------------------------------------------------------------------

    def read_config(self, agent: Agent) -> ConfigRead:
        """One instance's config document and ETag; raises :class:`ControlError`."""
        instance_only(agent)
        reply = self._get(agent, "/_trimtab/config")
        if not isinstance(reply.body, dict) or reply.etag is None:
            raise ControlError(reply.status, "bad_reply", "config answer without document/ETag")
        self._remember(agent, reply.etag, reply.body)
        return ConfigRead(reply.body, reply.etag)

    def read_configs(self, agents: Iterable[Agent]) -> dict[Agent, ConfigRead | ControlError]:
        """Every instance's config (or the error reading it), read in parallel."""
        def one(agent: Agent) -> ConfigRead | ControlError:
            try:
                return self.read_config(agent)
            except ControlError as err:
                return err
        return self._fan_out(agents, one)

    def set_ttl(self, agents: Iterable[Agent], route: str, ttl: Any, reason: str,
                expected: Mapping[Agent, str | None]) -> ChangeResult:
        """Set ``route``'s TTL on each agent with ``If-Match: expected[agent]``.

        ``ttl`` is sent as given, so the agent's validation speaks (422 naming the
        field). An agent without an expected ETag is refused locally (read first).
        """
        patch = {"routes": {route: {"ttl": ttl}}, "reason": reason}
        return self.patch_configs(agents, patch, expected, f"TTL of {route} → {ttl!r}")

    def patch_configs(self, agents: Iterable[Agent], patch: dict[str, Any],
                      expected: Mapping[Agent, str | None], description: str) -> ChangeResult:
        """Apply one config patch on each agent (each validated whole by its agent)."""
        outcomes = self._fan_out(agents, lambda a: self._patch_one(a, patch, expected.get(a)))

        def again(todo: list[Agent], etags: dict[Agent, str | None]) -> ChangeResult:
            return self.patch_configs(todo, patch, etags, description)
        return ChangeResult(description, outcomes, again, dict(expected))

    def _patch_one(self, agent: Agent, patch: dict[str, Any], etag: str | None) -> Outcome:
        if agent.kind != INSTANCE:
            return Outcome(agent, REFUSED, f"{agent.name} is a balancer, not an instance agent")
        if not etag:
            return Outcome(agent, REFUSED, "no ETag for this instance: read its config first")
        try:
            reply = self._call(agent, "PATCH", "/_trimtab/config", json=patch,
                               headers={"If-Match": etag})
            if reply.status == 412:
                current = self.read_config(agent)
                return self._conflict(agent, etag, current.doc, current.etag, reply.message())
        except Unreachable as err:
            return err.outcome(agent)
        except ControlError as err:  # 412, then the re-read failed
            return Outcome(agent, CONFLICT, f"changed meanwhile; re-read failed: {err}", (), 412)
        if reply.status != 200:
            return self._failure(agent, reply)
        self._remember(agent, reply.etag, reply.body["config"])
        jid = reply.body.get("journal_id")
        if jid is None:
            return Outcome(agent, UNCHANGED, "already so", (), 200, etag=reply.etag)
        before = flatten_doc(self._seen_doc(agent, etag) or {})
        changes = tuple(FieldChange(p, before.get(p), v)
                        for p, v in flatten_doc(reply.body.get("changed") or {}).items())
        return Outcome(agent, APPLIED, "", (), 200, (int(jid),), reply.etag, changes)

    def rollback(self, result: ChangeResult, reason: str = "") -> ChangeResult:
        """Revert the applied part of ``result`` (journal ids the agents returned)."""
        why = reason or f"roll back: {result.description}"

        def one(agent: Agent) -> Outcome:
            ids = result.outcomes[agent].journal_ids
            if not ids:  # e.g. an invalidation: dropped entries stay dropped
                return Outcome(agent, REFUSED, "not revertible")
            for jid in reversed(ids):  # newest first; stop at the first that fails
                outcome = self._revert_id(agent, jid, why)
                if outcome.status != APPLIED:
                    break
            return outcome
        return ChangeResult(f"roll back: {result.description}",
                            self._fan_out(result.with_status(APPLIED), one))

    def retry(self, result: ChangeResult, expected: Mapping[Agent, str | None] | None = None,
              include_conflicts: bool = False) -> ChangeResult:
        """Re-apply to the targets that failed (unreachable, unknown, error; conflicts on request).

        Returns a new result: to undo everything, roll back both this one and the original.

        Unreachable ones reuse the ETag the caller first sent unless ``expected`` gives
        one; conflicts (only after the user saw what changed) use the ETag the conflict
        reported. Refused ones are not retried: the same input would be refused again.
        """
        if result.retry_call is None:
            raise ValueError("this result cannot be retried")
        statuses = (UNREACHABLE, UNKNOWN, ERROR) + ((CONFLICT,) if include_conflicts else ())
        todo = result.with_status(*statuses)
        original = result.sent_etags
        etags = {a: (expected or {}).get(a) or (result.outcomes[a].etag
                 if result.outcomes[a].status == CONFLICT else original.get(a)) for a in todo}
        return result.retry_call(todo, etags)

    def _revert_id(self, agent: Agent, jid: int, reason: str, force: bool = False) -> Outcome:
        path = ("/_trimtab/revert/" if agent.kind == INSTANCE else "/_trimtab/balancer/revert/")
        body: dict[str, Any] = {"reason": reason} | ({"force": True} if force else {})
        try:
            reply = self._call(agent, "POST", f"{path}{jid}", json=body)
        except Unreachable as err:
            return err.outcome(agent)
        if reply.status != 200:
            return self._failure(agent, reply)
        if agent.kind == INSTANCE:
            new_id = reply.body.get("journal_id")
            if reply.body.get("config") is not None:
                self._remember(agent, reply.etag, reply.body["config"])
            ids: tuple[int, ...] = (int(new_id),) if new_id is not None else ()
            changes = tuple(FieldChange(p, None, v)
                            for p, v in flatten_doc(reply.body.get("changed") or {}).items())
        else:
            self._remember(agent, reply.etag, reply.body)
            applied = reply.body.get("applied") or []
            ids = tuple(int(e["id"]) for e in applied)
            changes = tuple(c for e in applied
                            for c in entry_changes(e["what"], e["old"], e["new"]))
        return Outcome(agent, APPLIED if ids else UNCHANGED, f"reverted #{jid}", (), 200, ids,
                       reply.etag, changes)

    # -- rate limits ----------------------------------------------------------------------------

    def read_limits(self, agent: Agent) -> LimitsRead:
        """One instance's rate limits with this worker's counts; raises :class:`ControlError`."""
        instance_only(agent)
        reply = self._get(agent, "/_trimtab/limits")
        body = reply.body if isinstance(reply.body, dict) else {}
        if not isinstance(body.get("limits"), dict) or reply.etag is None:
            raise ControlError(reply.status, "bad_reply", "limits answer without limits/ETag")
        return LimitsRead(limit_views(body["limits"]), str(body.get("store", "")),
                          int(body.get("store_errors", 0)), reply.etag)

    def top_keys(self, agents: Iterable[Agent], name: str) -> TopKeys:
        """The keys limit ``name`` refused most (or would have, in shadow mode) on every
        instance that has it, summed by key (:func:`.top_keys.merge`). An agent too old to
        report them is listed in ``unsupported``; one that fails, in ``errors``."""
        def one(agent: Agent) -> InstanceTopKeys | None | Exception:
            try:
                return parse_instance(agent.name, self._get(agent, "/_trimtab/limits").body,
                                      name)
            except LookupError as err:  # the instance has no such limit: not part of it
                return err
            except ControlError as err:
                return err
            except ValueError as err:
                return ValueError(f"unreadable top keys: {err}")
        answers = self._fan_out([a for a in agents if a.kind == INSTANCE], one)
        return merge(name, {a.name: r for a, r in answers.items()
                            if not isinstance(r, LookupError)})

    def limits_whatif(self, agent: Agent, route: str, key: str, rate: float, burst: int,
                      minutes: float = 10.0) -> LimitWhatIf:
        """The share of ``route``'s recent requests (and keys) a limit would have refused."""
        instance_only(agent)
        params = {"route": route, "key": key, "rate": repr(float(rate)), "burst": str(burst),
                  "minutes": repr(float(minutes))}
        b = self._get(agent, "/_trimtab/limits/whatif", params).body
        return LimitWhatIf(str(b["route"]), str(b["key"]), float(b["rate"]), int(b["burst"]),
                           float(b["seconds"]), int(b["requests"]), int(b["limited"]),
                           float(b["limited_share"]), int(b["keys"]), int(b["limited_keys"]),
                           tuple((str(t["key"]), int(t["requests"]), int(t["limited"]))
                                 for t in b["top_limited"]))

    def set_limit(self, agents: Iterable[Agent], name: str, fields: Mapping[str, Any],
                  reason: str, expected: Mapping[Agent, str | None]) -> ChangeResult:
        """Create or change the limit ``name`` (``route``, ``key``, ``rate``, ``burst``, ``mode``).

        Values are sent as given, so the agent's validation speaks (422 naming the
        field, e.g. ``limits['per-key'].rate``); ``expected`` holds the config ETags.
        """
        patch = {"limits": {name: dict(fields)}, "reason": reason}
        shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return self.patch_configs(agents, patch, expected, f"limit {name}: {shown}")

    def delete_limit(self, agents: Iterable[Agent], name: str, reason: str,
                     expected: Mapping[Agent, str | None]) -> ChangeResult:
        """Remove the limit ``name`` (a revert re-creates it as it was)."""
        patch = {"limits": {name: None}, "reason": reason}
        return self.patch_configs(agents, patch, expected, f"remove limit {name}")

    # -- rate limits at the balancer ------------------------------------------------------------

    def read_balancer_limits(self, balancer: Agent | str) -> LimitsRead:
        """The balancer's rate limits with its decision counts and their ETag (its own, apart
        from the servers'); raises :class:`ControlError` (404: a balancer without limits)."""
        agent = as_balancer(balancer)
        reply = self._get(agent, BALANCER_LIMITS)
        body = reply.body if isinstance(reply.body, dict) else {}
        if not isinstance(body.get("limits"), dict) or reply.etag is None:
            raise ControlError(reply.status, "bad_reply", "limits answer without limits/ETag")
        self._remember(agent, reply.etag, body)
        return LimitsRead(limit_views(body["limits"]), str(body.get("store", "")),
                          int(body.get("store_errors", 0)), reply.etag)

    def set_balancer_limit(self, balancer: Agent | str, name: str, fields: Mapping[str, Any],
                           reason: str, etag: str) -> ChangeResult:
        """Create or change the balancer's limit ``name`` with ``If-Match: etag`` (from
        :meth:`read_balancer_limits`). Sent as given: the balancer's validation speaks (422
        naming the field; the HAProxy adapter also refuses what HAProxy cannot do live)."""
        shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return self._patch_balancer_limits(as_balancer(balancer), {name: dict(fields)}, reason,
                                           etag, f"limit {name}: {shown}")

    def delete_balancer_limit(self, balancer: Agent | str, name: str, reason: str,
                              etag: str) -> ChangeResult:
        """Remove the balancer's limit ``name`` (a revert re-creates it as it was)."""
        return self._patch_balancer_limits(as_balancer(balancer), {name: None}, reason, etag,
                                           f"remove limit {name}")

    def _patch_balancer_limits(self, agent: Agent, section: dict[str, Any], reason: str,
                               etag: str, description: str) -> ChangeResult:
        return self._patch_if_match(
            agent, BALANCER_LIMITS, {"limits": section, "reason": reason}, etag, description,
            lambda e: self._patch_balancer_limits(agent, section, reason, e, description))

    # -- cache --------------------------------------------------------------------------------

    def whatif(self, agent: Agent, route: str, ttls: Iterable[float] = ()) -> WhatIf:
        """Predicted hit ratio of ``route`` on ``agent`` per candidate TTL (grid when empty)."""
        instance_only(agent)
        params = {"route": route}
        wanted = [float(t) for t in ttls]
        if wanted:
            params["ttls"] = ",".join(f"{t:g}" for t in wanted)
        body = self._get(agent, "/_trimtab/cache/whatif", params).body
        cands = body.get("candidates", [])
        return WhatIf(route, int(body.get("requests", 0)), float(body.get("current_ttl", 0.0)),
                      {float(c["ttl"]): float(c["hit_ratio"]) for c in cands},
                      frozenset(float(c["ttl"]) for c in cands if c.get("interpolated")))

    def invalidate(self, agents: Iterable[Agent], route: str | None = None,
                   prefix: str | None = None, reason: str = "") -> ChangeResult:
        """Drop cached entries of ``route`` (or keys starting with ``prefix``) on each agent."""
        body: dict[str, Any] = {"reason": reason}
        body |= {"route": route} if route is not None else {}
        body |= {"prefix": prefix} if prefix is not None else {}

        def one(agent: Agent) -> Outcome:
            if agent.kind != INSTANCE:
                return Outcome(agent, REFUSED, f"{agent.name} is a balancer, not an instance")
            try:
                reply = self._call(agent, "POST", "/_trimtab/cache/invalidate", json=body)
            except Unreachable as err:
                return err.outcome(agent)
            if reply.status != 200:
                return self._failure(agent, reply)
            return Outcome(agent, APPLIED, f"dropped {reply.body.get('dropped', 0)}", (), 200,
                           detail=str(reply.body.get("dropped", 0)))

        def again(todo: list[Agent], _: dict[Agent, str | None]) -> ChangeResult:
            return self.invalidate(todo, route, prefix, reason)
        what = f"invalidate {'route ' + route if route is not None else f'prefix {prefix}'}"
        return ChangeResult(what, self._fan_out(agents, one), again)

    # -- balancer ---------------------------------------------------------------------------

    def read_balancer(self, balancer: Agent | str, window: float | None = None) -> BalancerState:
        """Servers with weight, state, expected and observed share, and the ETag."""
        agent = as_balancer(balancer)
        params = {"window": f"{window:g}"} if window is not None else None
        reply = self._get(agent, "/_trimtab/balancer", params)
        self._remember(agent, reply.etag, reply.body)
        return balancer_state(reply.body, reply.etag or "")

    def set_weights(self, balancer: Agent | str, weights: Mapping[str, Any], reason: str,
                    etag: str, force: bool = False) -> ChangeResult:
        """Set several weights at once (all or nothing on the balancer)."""
        spec = {name: {"weight": w} for name, w in weights.items()}
        text = ", ".join(f"{n}={w!r}" for n, w in weights.items())
        return self._patch_balancer(as_balancer(balancer), spec, reason, etag, force,
                                    f"weights {text}")

    def set_state(self, balancer: Agent | str, server: str, state: str, reason: str,
                  etag: str, force: bool = False) -> ChangeResult:
        """Set one server's state: ``ready``, ``drain`` or ``maint``."""
        return self._patch_balancer(as_balancer(balancer), {server: {"state": state}}, reason,
                                    etag, force, f"{server} → {state}")

    def _patch_balancer(self, agent: Agent, spec: dict[str, Any], reason: str, etag: str,
                        force: bool, description: str) -> ChangeResult:
        return self._patch_if_match(
            agent, "/_trimtab/balancer", {"servers": spec, "reason": reason, "force": force},
            etag, description,
            lambda e: self._patch_balancer(agent, spec, reason, e, force, description))

    def _patch_if_match(self, agent: Agent, path: str, body: dict[str, Any], etag: str,
                        description: str, retry: Callable[[str], ChangeResult]) -> ChangeResult:
        """PATCH one balancer document (its servers or its limits) under ``If-Match``; a 412
        re-reads it and says what changed meanwhile; ``retry`` sends again with a new ETag."""
        try:
            reply = self._call(agent, "PATCH", path, json=body, headers={"If-Match": etag})
            if reply.status == 412:
                now = self._get(agent, path)
                self._remember(agent, now.etag, now.body)
                outcome = self._conflict(agent, etag, now.body, now.etag, reply.message())
            elif reply.status != 200:
                outcome = self._failure(agent, reply)
            else:
                outcome = self._balancer_applied(agent, reply)
        except Unreachable as err:
            outcome = err.outcome(agent)
        except ControlError as err:
            outcome = Outcome(agent, CONFLICT, f"changed meanwhile; re-read failed: {err}",
                              (), 412)

        def again(todo: list[Agent], etags: dict[Agent, str | None]) -> ChangeResult:
            return retry(etags.get(agent) or etag)
        return ChangeResult(description, {agent: outcome}, again, {agent: etag})

    def _balancer_applied(self, agent: Agent, reply: Reply) -> Outcome:
        self._remember(agent, reply.etag, reply.body)
        applied = [e for e in reply.body.get("applied") or [] if e.get("old") != e.get("new")]
        if not applied:
            return Outcome(agent, UNCHANGED, "already so", (), 200, etag=reply.etag)
        changes = tuple(c for e in applied for c in entry_changes(e["what"], e["old"], e["new"]))
        return Outcome(agent, APPLIED, "", (), 200, tuple(int(e["id"]) for e in applied),
                       reply.etag, changes)

    # -- journal ------------------------------------------------------------------------------

    def journal(self, sources: Iterable[Agent], since: float | None = None
                ) -> tuple[list[JournalRow], dict[Agent, ControlError]]:
        """Entries of every source at or after ``since`` (unix s), oldest first; and errors."""
        reads = self._fan_out(sources, self._journal_of)
        rows = [r for v in reads.values() if isinstance(v, list) for r in v
                if since is None or r.time >= since]
        rows.sort(key=lambda r: (r.time, r.source.name, r.id))
        return rows, {a: v for a, v in reads.items() if isinstance(v, ControlError)}

    def _journal_of(self, agent: Agent) -> list[JournalRow] | ControlError:
        path = "/_trimtab/journal" if agent.kind == INSTANCE else "/_trimtab/balancer/journal"
        rows: list[JournalRow] = []
        cursor = 0
        try:
            while True:  # page through with the id cursor the agent returns
                body = self._get(agent, path, {"since": str(cursor), "limit": "5000"}).body
                entries = body.get("entries") or []
                rows += [journal_row(agent, e) for e in entries]
                if not entries or int(body.get("next", cursor)) <= cursor:
                    return rows
                cursor = int(body["next"])
        except ControlError as err:
            return err

    def revert(self, entry: JournalRow, reason: str = "", force: bool = False) -> Outcome:
        """Undo one accepted change (a new, journaled change on its source)."""
        return self._revert_id(entry.source, entry.id, reason or f"revert #{entry.id}", force)

    def revert_since(self, sources: Iterable[Agent], since: float, reason: str = ""
                     ) -> list[tuple[JournalRow, Outcome]]:
        """Revert every accepted change since ``since``, newest first; one outcome per entry.

        A change and its revert, both since ``since``, cancel out and are skipped (also
        along chains: a revert of a revert). Each entry reports for itself, e.g. a
        conflict where a field was changed again since: nothing is overwritten silently.
        An accepted entry that cannot be set back (an HAProxy re-apply, a cache invalidation:
        see ``JournalRow.not_revertible``) is not sent: it reports :data:`SKIPPED` and why, so
        the operator reads that the dropped entries stay dropped rather than nothing at all.
        """
        rows, errors = self.journal(sources, since)
        todo = to_revert(rows)
        report = [(r, self.revert(r, reason)) for r in todo]
        report += [(r, Outcome(r.source, SKIPPED, f"not undone: {r.not_revertible}"))
                   for r in sorted(rows, key=lambda r: (r.time, r.id), reverse=True)
                   if r.result == "accepted" and not r.revertible
                   and (r.setting_change or r.what == "cache.invalidate")]
        for agent, err in errors.items():
            stub = JournalRow(agent, 0, since, "", agent.name, "journal", None, None, "", "")
            report.append((stub, Outcome(agent, UNREACHABLE if err.status == 0 else ERROR,
                                         f"journal not read: {err.message}")))
        return report
