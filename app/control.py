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
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import httpx

APPLIED, UNCHANGED, REFUSED, GUARD_RAIL = "applied", "unchanged", "refused", "guard_rail"
CONFLICT, UNREACHABLE, UNKNOWN, ERROR = "conflict", "unreachable", "unknown", "error"
# Errors that prove the request never reached the agent; any other may have been applied.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
INSTANCE, BALANCER = "instance", "balancer"
_SEEN_MAX = 512
T = TypeVar("T")


@dataclass(frozen=True)
class Agent:
    """One control endpoint: an instance agent or a balancer (``kind``)."""

    name: str
    base_url: str  # scheme://host:port
    kind: str = INSTANCE

    @classmethod
    def from_target(cls, target: Any) -> Agent:
        """From a ScrapeTarget / fleet Target (``name``, ``url``, ``kind``)."""
        parts = urlsplit(target.url)
        kind = BALANCER if getattr(target, "kind", INSTANCE) == BALANCER else INSTANCE
        return cls(target.name, f"{parts.scheme}://{parts.netloc}", kind)


@dataclass(frozen=True)
class ControlError(Exception):
    """A single-target call failed; ``status`` 0 means no HTTP answer (unreachable)."""

    status: int
    code: str
    message: str
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: ``path`` like ``routes./search.ttl`` or ``servers.api-1.weight``."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Outcome:
    """What one target did with one change."""

    agent: Agent
    status: str
    message: str = ""
    fields: tuple[str, ...] = ()  # fields the agent named in a refusal
    http_status: int = 0
    journal_ids: tuple[int, ...] = ()  # what the agent journaled as accepted (for revert)
    etag: str | None = None  # the version after the change, or the current one on conflict
    changes: tuple[FieldChange, ...] = ()  # applied: old → new; conflict: theirs
    detail: str = ""


@dataclass
class ChangeResult:
    """Per-target outcomes of one change, plus what is needed to retry it."""

    description: str
    outcomes: dict[Agent, Outcome]
    retry_call: Callable[[list[Agent], dict[Agent, str | None]], ChangeResult] | None = \
        field(default=None, repr=False)
    sent_etags: dict[Agent, str | None] = field(default_factory=dict, repr=False)

    def with_status(self, *statuses: str) -> list[Agent]:
        """Targets whose outcome has one of ``statuses``."""
        return [a for a, o in self.outcomes.items() if o.status in statuses]

    @property
    def ok(self) -> bool:
        """True when every target applied it (or already had it)."""
        return all(o.status in (APPLIED, UNCHANGED) for o in self.outcomes.values())


@dataclass(frozen=True)
class ConfigRead:
    """One instance's config document and its ETag."""

    doc: dict[str, Any]
    etag: str

    def ttl(self, route: str) -> float | None:
        """The route's TTL, None when the instance does not know the route."""
        entry = self.doc.get("routes", {}).get(route)
        return None if entry is None else float(entry["ttl"])


@dataclass(frozen=True)
class WhatIf:
    """Predicted hit ratio per candidate TTL, from the agent's simulation of real traffic."""

    route: str
    requests: int
    current_ttl: float
    hit_ratio: dict[float, float]
    interpolated: frozenset[float]


@dataclass(frozen=True)
class ServerView:
    """One balancer server as the GUI shows it."""

    name: str
    weight: int
    state: str
    up: bool
    expected_share: float
    observed_share: float | None


@dataclass(frozen=True)
class BalancerState:
    """The balancer's servers and the ETag to send with a change."""

    target: str
    policy: str
    servers: tuple[ServerView, ...]
    etag: str


@dataclass(frozen=True)
class Access:
    """Can this token write here? ``write`` None = not known yet; ``reason`` says why not."""

    read: bool
    write: bool | None
    reason: str = ""


@dataclass(frozen=True)
class JournalRow:
    """One journal entry, from whichever agent or balancer recorded it."""

    source: Agent
    id: int
    time: float
    who: str
    target: str
    what: str
    old: Any
    new: Any
    reason: str
    result: str
    detail: str = ""
    reverts: int | None = None

    @property
    def changes(self) -> tuple[FieldChange, ...]:
        """old → new per field (a config patch is flattened to field paths)."""
        if isinstance(self.old, dict) or isinstance(self.new, dict):
            if self.old is None:  # refused patch: only what was asked
                return tuple(FieldChange(p, None, v) for p, v in _flatten(self.new).items())
            return diff_docs(self.old, self.new or {})
        return (FieldChange(self.what, self.old, self.new),)

    @property
    def revertible(self) -> bool:
        """An accepted config or server change (not an invalidation or a refusal)."""
        return self.result == "accepted" and (self.what == "config"
                                              or self.what.startswith("servers."))


def _flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: doc}


def diff_docs(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every leaf field that differs between two JSON documents, sorted by path."""
    a, b = _flatten(dict(old)), _flatten(dict(new))
    return tuple(FieldChange(p, a.get(p), b.get(p)) for p in sorted(set(a) | set(b))
                 if a.get(p) != b.get(p))


def ttl_table(reads: Mapping[Agent, ConfigRead | ControlError]) -> dict[str, dict[Agent, float]]:
    """TTL per route per instance that answered (route → {agent: ttl})."""
    table: dict[str, dict[Agent, float]] = {}
    for agent, read in reads.items():
        if isinstance(read, ConfigRead):
            for route, entry in read.doc.get("routes", {}).items():
                table.setdefault(route, {})[agent] = float(entry["ttl"])
    return table


def disagreements(table: Mapping[str, Mapping[Agent, float]]) -> dict[str, set[Agent]]:
    """Per route, the instances whose TTL differs from the most common one (ties: lowest)."""
    out: dict[str, set[Agent]] = {}
    for route, ttls in table.items():
        values = list(ttls.values())
        if len(set(values)) > 1:
            common = min(set(values), key=lambda v: (-values.count(v), v))
            out[route] = {a for a, v in ttls.items() if v != common}
    return out


def expected_etags(reads: Mapping[Agent, ConfigRead | ControlError]) -> dict[Agent, str | None]:
    """The ETags to send with a change, from :meth:`ControlClient.read_configs`."""
    return {a: r.etag if isinstance(r, ConfigRead) else None for a, r in reads.items()}


def preview_weights(servers: Sequence[ServerView], new_weights: Mapping[str, int]
                    ) -> dict[str, float]:
    """Expected share per server after a weight change: w / Σw over servers up and ready."""
    weights = {s.name: int(new_weights.get(s.name, s.weight)) for s in servers}
    live = [s.name for s in servers if s.up and s.state == "ready"]
    total = sum(weights[n] for n in live)
    return {s.name: (weights[s.name] / total if total and s.name in live else 0.0)
            for s in servers}


@dataclass
class _Reply:
    status: int
    body: Any
    etag: str | None

    def error_fields(self) -> tuple[str, ...]:
        body = self.body if isinstance(self.body, dict) else {}
        names = [e.get("field", "") for e in body.get("errors") or [] if isinstance(e, dict)]
        if not names and body.get("field"):
            names = [body["field"]]
        return tuple(n for n in names if n)

    def message(self) -> str:
        if isinstance(self.body, dict) and self.body.get("message"):
            return str(self.body["message"])
        return f"HTTP {self.status}"


class _Unreachable(Exception):
    def __init__(self, message: str, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent

    def outcome(self, agent: Agent) -> Outcome:
        if self.maybe_sent:
            return Outcome(agent, UNKNOWN, f"{self}; it may have been applied: re-read")
        return Outcome(agent, UNREACHABLE, str(self))


class ControlClient:
    """Talks to agents and balancers with one bearer token (never logged or shown)."""

    def __init__(self, token: str, timeout: float = 3.0, max_workers: int = 8) -> None:
        self._client = httpx.Client(timeout=timeout,
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
              ) -> _Reply:
        try:
            resp = self._client.request(method, agent.base_url + path, json=json,
                                        headers=headers, params=params)
        except httpx.HTTPError as err:  # refused, reset, timed out: no answer at all
            sent = not isinstance(err, _NOT_SENT)
            what = "no answer from" if sent else "unreachable:"
            raise _Unreachable(f"{what} {agent.name}: {type(err).__name__}: {err}", sent) \
                from None
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = {"message": resp.text[:200]}
        if resp.status_code == 403 and method != "GET":
            with self._lock:
                self._denied[agent.base_url] = _Reply(403, body, None).message()
        return _Reply(resp.status_code, body, resp.headers.get("etag"))

    def _get(self, agent: Agent, path: str, params: dict[str, str] | None = None) -> _Reply:
        """GET that must succeed: raises :class:`ControlError` otherwise."""
        try:
            reply = self._call(agent, "GET", path, params=params)
        except _Unreachable as err:
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

    def _failure(self, agent: Agent, reply: _Reply) -> Outcome:
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
        changes = diff_docs(_comparable(seen), _comparable(current))
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
        _instance_only(agent)
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
        except _Unreachable as err:
            return err.outcome(agent)
        except ControlError as err:  # 412, then the re-read failed
            return Outcome(agent, CONFLICT, f"changed meanwhile; re-read failed: {err}", (), 412)
        if reply.status != 200:
            return self._failure(agent, reply)
        self._remember(agent, reply.etag, reply.body["config"])
        jid = reply.body.get("journal_id")
        if jid is None:
            return Outcome(agent, UNCHANGED, "already so", (), 200, etag=reply.etag)
        before = _flatten(self._seen_doc(agent, etag) or {})
        changes = tuple(FieldChange(p, before.get(p), v)
                        for p, v in _flatten(reply.body.get("changed") or {}).items())
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
        except _Unreachable as err:
            return err.outcome(agent)
        if reply.status != 200:
            return self._failure(agent, reply)
        if agent.kind == INSTANCE:
            new_id = reply.body.get("journal_id")
            if reply.body.get("config") is not None:
                self._remember(agent, reply.etag, reply.body["config"])
            ids: tuple[int, ...] = (int(new_id),) if new_id is not None else ()
            changes = tuple(FieldChange(p, None, v)
                            for p, v in _flatten(reply.body.get("changed") or {}).items())
        else:
            self._remember(agent, reply.etag, reply.body)
            applied = reply.body.get("applied") or []
            ids = tuple(int(e["id"]) for e in applied)
            changes = tuple(FieldChange(e["what"], e["old"], e["new"]) for e in applied)
        return Outcome(agent, APPLIED if ids else UNCHANGED, f"reverted #{jid}", (), 200, ids,
                       reply.etag, changes)

    # -- cache --------------------------------------------------------------------------------

    def whatif(self, agent: Agent, route: str, ttls: Iterable[float] = ()) -> WhatIf:
        """Predicted hit ratio of ``route`` on ``agent`` per candidate TTL (grid when empty)."""
        _instance_only(agent)
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
            except _Unreachable as err:
                return err.outcome(agent)
            if reply.status != 200:
                return self._failure(agent, reply)
            return Outcome(agent, APPLIED, f"dropped {reply.body.get('dropped', 0)}", (), 200,
                           detail=str(reply.body.get("dropped", 0)))

        def again(todo: list[Agent], _: dict[Agent, str | None]) -> ChangeResult:
            return self.invalidate(todo, route, prefix, reason)
        what = f"invalidate {'route ' + route if route is not None else f'prefix {prefix}'}"
        return ChangeResult(what, self._fan_out(agents, one), again)

    # -- balancer -----------------------------------------------------------------------------

    def read_balancer(self, balancer: Agent | str, window: float | None = None) -> BalancerState:
        """Servers with weight, state, expected and observed share, and the ETag."""
        agent = _balancer(balancer)
        params = {"window": f"{window:g}"} if window is not None else None
        reply = self._get(agent, "/_trimtab/balancer", params)
        self._remember(agent, reply.etag, reply.body)
        return _balancer_state(reply.body, reply.etag or "")

    def set_weights(self, balancer: Agent | str, weights: Mapping[str, Any], reason: str,
                    etag: str, force: bool = False) -> ChangeResult:
        """Set several weights at once (all or nothing on the balancer)."""
        spec = {name: {"weight": w} for name, w in weights.items()}
        text = ", ".join(f"{n}={w!r}" for n, w in weights.items())
        return self._patch_balancer(_balancer(balancer), spec, reason, etag, force,
                                    f"weights {text}")

    def set_state(self, balancer: Agent | str, server: str, state: str, reason: str,
                  etag: str, force: bool = False) -> ChangeResult:
        """Set one server's state: ``ready``, ``drain`` or ``maint``."""
        return self._patch_balancer(_balancer(balancer), {server: {"state": state}}, reason,
                                    etag, force, f"{server} → {state}")

    def _patch_balancer(self, agent: Agent, spec: dict[str, Any], reason: str, etag: str,
                        force: bool, description: str) -> ChangeResult:
        body = {"servers": spec, "reason": reason, "force": force}
        try:
            reply = self._call(agent, "PATCH", "/_trimtab/balancer", json=body,
                               headers={"If-Match": etag})
            if reply.status == 412:
                now = self._get(agent, "/_trimtab/balancer")
                self._remember(agent, now.etag, now.body)
                outcome = self._conflict(agent, etag, now.body, now.etag, reply.message())
            elif reply.status != 200:
                outcome = self._failure(agent, reply)
            else:
                outcome = self._balancer_applied(agent, reply)
        except _Unreachable as err:
            outcome = err.outcome(agent)
        except ControlError as err:
            outcome = Outcome(agent, CONFLICT, f"changed meanwhile; re-read failed: {err}",
                              (), 412)

        def again(todo: list[Agent], etags: dict[Agent, str | None]) -> ChangeResult:
            return self._patch_balancer(agent, spec, reason, etags.get(agent) or etag, force,
                                        description)
        return ChangeResult(description, {agent: outcome}, again, {agent: etag})

    def _balancer_applied(self, agent: Agent, reply: _Reply) -> Outcome:
        self._remember(agent, reply.etag, reply.body)
        applied = [e for e in reply.body.get("applied") or [] if e.get("old") != e.get("new")]
        if not applied:
            return Outcome(agent, UNCHANGED, "already so", (), 200, etag=reply.etag)
        return Outcome(agent, APPLIED, "", (), 200, tuple(int(e["id"]) for e in applied),
                       reply.etag, tuple(FieldChange(e["what"], e["old"], e["new"])
                                         for e in applied))

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
                rows += [_row(agent, e) for e in entries]
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
        """
        rows, errors = self.journal(sources, since)
        todo = _to_revert(rows)
        report = [(r, self.revert(r, reason)) for r in todo]
        for agent, err in errors.items():
            stub = JournalRow(agent, 0, since, "", agent.name, "journal", None, None, "", "")
            report.append((stub, Outcome(agent, UNREACHABLE if err.status == 0 else ERROR,
                                         f"journal not read: {err.message}")))
        return report


def _to_revert(rows: Sequence[JournalRow]) -> list[JournalRow]:
    """The accepted changes to revert, newest first, without pairs that cancel out.

    Newest first, a revert whose target is also in ``rows`` (and not yet cancelled)
    cancels it: the pair is net zero. A chain change → revert → revert-of-revert
    leaves the change itself to undo, which is right: its effect is what remains.
    """
    present = {(r.source, r.id) for r in rows if r.revertible}
    cancelled: set[tuple[Agent, int]] = set()
    todo = []
    for row in sorted(rows, key=lambda r: (r.time, r.id), reverse=True):
        key = (row.source, row.id)
        if not row.revertible or key in cancelled:
            continue
        if row.reverts is not None:
            target = (row.source, row.reverts)
            if target in present and target not in cancelled:
                cancelled.add(target)
                continue
        todo.append(row)
    return todo


def _row(agent: Agent, entry: dict[str, Any]) -> JournalRow:
    """A journal entry; fields a newer agent adds are ignored rather than fatal."""
    known = {k: entry.get(k) for k in _ROW_FIELDS}
    return JournalRow(agent, int(entry["id"]), float(entry["time"]), str(known["who"]),
                      str(known["target"]), str(known["what"]), known["old"], known["new"],
                      str(known["reason"] or ""), str(known["result"]),
                      str(known["detail"] or ""), known["reverts"])


_ROW_FIELDS = ("who", "target", "what", "old", "new", "reason", "result", "detail", "reverts")


def _comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The controllable part of a document (no version, no live counters)."""
    if isinstance(doc.get("servers"), list):
        return {"servers": {s["name"]: {"weight": s["weight"], "state": s["state"]}
                            for s in doc["servers"]}}
    return {k: v for k, v in doc.items() if k not in ("version", "instance")}


def _instance_only(agent: Agent) -> None:
    # A balancer forwards unknown /_trimtab/ paths upstream: its "config" would be an
    # instance's, so never send instance calls there.
    if agent.kind != INSTANCE:
        raise ControlError(0, "not_an_instance", f"{agent.name} is a balancer, not an instance")


def _balancer(balancer: Agent | str) -> Agent:
    if isinstance(balancer, Agent):
        return balancer if balancer.kind == BALANCER else \
            Agent(balancer.name, balancer.base_url, BALANCER)
    parts = urlsplit(balancer)
    return Agent("balancer", f"{parts.scheme}://{parts.netloc}", BALANCER)


def _balancer_state(body: dict[str, Any], etag: str) -> BalancerState:
    servers = tuple(ServerView(s["name"], int(s["weight"]), s["state"], bool(s["up"]),
                               float(s["expected_share"]),
                               None if s.get("observed_share") is None
                               else float(s["observed_share"]))
                    for s in body.get("servers", []))
    return BalancerState(body.get("target", ""), body.get("policy", ""), servers, etag)
