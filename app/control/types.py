"""Value types and pure helpers of the control client (:mod:`.control`).

Outcomes, change results, journal rows and balancer views, plus the functions
that compare documents and plan reverts; no I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

APPLIED, UNCHANGED, REFUSED, GUARD_RAIL = "applied", "unchanged", "refused", "guard_rail"
CONFLICT, UNREACHABLE, UNKNOWN, ERROR = "conflict", "unreachable", "unknown", "error"
INSTANCE, BALANCER = "instance", "balancer"
SKIPPED = "skipped"  # not sent: a revert the source would refuse (JournalRow.not_revertible)
LIMITS_PREFIX = "limits."  # a balancer journals each limit as its own entry: limits.<name>
LIMIT_MODES = ("off", "shadow", "enforce")


@dataclass(frozen=True)
class Agent:
    """One control endpoint: an instance agent or a balancer (``kind``)."""

    name: str
    base_url: str  # scheme://host:port
    kind: str = INSTANCE
    service: str = ""  # the service it is an instance of (a TTL change on its routes only)

    @classmethod
    def from_target(cls, target: Any) -> Agent:
        """From a ScrapeTarget / fleet Target (``name``, ``url``, ``kind``, ``service``)."""
        parts = urlsplit(target.url)
        kind = BALANCER if getattr(target, "kind", INSTANCE) == BALANCER else INSTANCE
        # a discovered target may name its control endpoint apart from its scrape URL
        base = getattr(target, "control_url", "") or f"{parts.scheme}://{parts.netloc}"
        return cls(target.name, base.rstrip("/"), kind, str(getattr(target, "service", "")))


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

    def limits(self) -> dict[str, LimitView]:
        """The instance's rate limits (an agent without rate limits: none)."""
        return limit_views(self.doc.get("limits") or {})


@dataclass(frozen=True)
class LimitView:
    """One rate limit of an instance: its settings, and this worker's decision counts.

    ``counts`` is route → {"allowed", "limited", "shadow_limited"} (empty from a
    config read, which carries settings only).
    """

    name: str
    route: str
    key: str
    rate: float
    burst: int
    mode: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class LimitsRead:
    """An instance's rate limits, its limit store, and the config ETag to change them with."""

    limits: dict[str, LimitView]
    store: str
    store_errors: int
    etag: str


@dataclass(frozen=True)
class LimitWhatIf:
    """What a proposed limit would have done to a route's recent traffic on one worker."""

    route: str
    key: str
    rate: float
    burst: int
    seconds: float  # how much traffic the answer covers
    requests: int
    limited: int
    limited_share: float
    keys: int
    limited_keys: int
    top_limited: tuple[tuple[str, int, int], ...]  # (key, requests, limited), most limited first


def limit_views(section: Mapping[str, Any]) -> dict[str, LimitView]:
    """The ``limits`` part of a config document (or of ``GET /_trimtab/limits``), typed."""
    return {name: LimitView(name, str(f["route"]), str(f["key"]), float(f["rate"]),
                            int(f["burst"]), str(f.get("mode", "shadow")),
                            {r: {k: int(v) for k, v in c.items()}
                             for r, c in (f.get("counts") or {}).items()})
            for name, f in section.items() if isinstance(f, dict)}


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
        """old → new per field (a config patch is flattened to field paths; a balancer's
        ``limits.<name>`` entry to ``limits.<name>.<field>``, as an instance's reads)."""
        if self.what.startswith(LIMITS_PREFIX):
            return limit_entry_changes(self.what, self.old, self.new)
        if isinstance(self.old, dict) or isinstance(self.new, dict):
            if self.old is None:  # refused patch: only what was asked
                return tuple(FieldChange(p, None, v) for p, v in flatten_doc(self.new).items())
            return diff_docs(self.old, self.new or {})
        return (FieldChange(self.what, self.old, self.new),)

    @property
    def setting_change(self) -> bool:
        """A change of a config, a server or a balancer's limit (not an invalidation, a
        refused request or a read)."""
        return self.what == "config" or self.what.startswith(("servers.", LIMITS_PREFIX))

    @property
    def not_revertible(self) -> str:
        """Why undoing this entry would be refused ("" when it can be undone).

        The HAProxy adapter journals its re-apply of the desired limits after a reload
        with HAProxy's map values (``{"mode": "2"}`` → ``{"mode": 0}``, ``{"limit": "3"}``),
        not a limit's settings: the balancer answers a revert of one 409 (the values never
        read back equal), then 422 when forced (``"2"`` is no mode). Undoing the operator's
        change it restored is what sets the limit back.
        """
        if self.result != "accepted":
            return f"only accepted changes can be undone (this one was {self.result or 'not applied'})"
        if not self.setting_change:
            return (f"{self.what} changed no setting: nothing to set back (dropped cache "
                    "entries stay dropped)" if self.what == "cache.invalidate" else
                    f"{self.what} changed no setting: nothing to set back")
        if self.what.startswith(LIMITS_PREFIX) and not all(
                side is None or limit_settings(side) is not None for side in (self.old, self.new)):
            return ("the balancer re-applied HAProxy map values after a reload (" +
                    ", ".join(f"{c.path.removeprefix(self.what + '.')} {c.old!r} → {c.new!r}"
                              for c in self.changes) +
                    "), not a limit's settings: it refuses to set them back (422); undo the "
                    "change it restored, or change the limit")
        return ""

    @property
    def revertible(self) -> bool:
        """An accepted config, server or balancer limit change its source can set back (not
        an invalidation, a refusal or an HAProxy re-apply: :attr:`not_revertible`)."""
        return not self.not_revertible


def limit_settings(value: Any) -> dict[str, Any] | None:
    """``value`` when it reads as (some of) a rate limit's settings as a limits document
    holds them (``route``/``key`` text, ``rate`` a number, ``burst`` an int, ``mode`` one of
    :data:`LIMIT_MODES`), else None: e.g. the HAProxy adapter's map values."""
    if not isinstance(value, Mapping):
        return None
    checks: dict[str, Callable[[Any], bool]] = {
        "route": lambda v: isinstance(v, str), "key": lambda v: isinstance(v, str),
        "rate": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "burst": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "mode": lambda v: v in LIMIT_MODES}
    ok = all(k in checks and checks[k](v) for k, v in value.items())
    return dict(value) if ok else None


def entry_changes(what: str, old: Any, new: Any) -> tuple[FieldChange, ...]:
    """A balancer's journal entry (or an ``applied`` one of its answers) as field changes:
    a server's field as it is, a limit's per field (:func:`limit_entry_changes`)."""
    if what.startswith(LIMITS_PREFIX):
        return limit_entry_changes(what, old, new)
    return (FieldChange(what, old, new),)


def limit_entry_changes(what: str, old: Any, new: Any) -> tuple[FieldChange, ...]:
    """A balancer's journal entry of one limit (``what`` = ``limits.<name>``, old and new its
    changed fields, None for a limit created or removed) as field changes
    ``limits.<name>.<field>``: the paths an instance's config change has."""
    before = old if isinstance(old, dict) else {}
    after = new if isinstance(new, dict) else {}
    return tuple(FieldChange(f"{what}.{f}", before.get(f), after.get(f))
                 for f in sorted(set(before) | set(after)) if before.get(f) != after.get(f))


def flatten_doc(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(flatten_doc(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: doc}


def diff_docs(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every leaf field that differs between two JSON documents, sorted by path."""
    a, b = flatten_doc(dict(old)), flatten_doc(dict(new))
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
class Reply:
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


class Unreachable(Exception):
    def __init__(self, message: str, maybe_sent: bool) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent

    def outcome(self, agent: Agent) -> Outcome:
        if self.maybe_sent:
            return Outcome(agent, UNKNOWN, f"{self}; it may have been applied: re-read")
        return Outcome(agent, UNREACHABLE, str(self))


def to_revert(rows: Sequence[JournalRow]) -> list[JournalRow]:
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


def journal_row(agent: Agent, entry: dict[str, Any]) -> JournalRow:
    """A journal entry; fields a newer agent adds are ignored rather than fatal."""
    known = {k: entry.get(k) for k in ROW_FIELDS}
    return JournalRow(agent, int(entry["id"]), float(entry["time"]), str(known["who"]),
                      str(known["target"]), str(known["what"]), known["old"], known["new"],
                      str(known["reason"] or ""), str(known["result"]),
                      str(known["detail"] or ""), known["reverts"])


ROW_FIELDS = ("who", "target", "what", "old", "new", "reason", "result", "detail", "reverts")


def comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The controllable part of a document (no version, no live counters)."""
    if isinstance(doc.get("servers"), list):
        return {"servers": {s["name"]: {"weight": s["weight"], "state": s["state"]}
                            for s in doc["servers"]}}
    if isinstance(doc.get("limits"), dict) and "target" in doc:  # a balancer's limits
        return {"limits": {n: {k: v for k, v in f.items() if k != "counts"}
                           for n, f in doc["limits"].items() if isinstance(f, dict)}}
    return {k: v for k, v in doc.items() if k not in ("version", "instance")}


def instance_only(agent: Agent) -> None:
    # A balancer has no config, cache or what-if API (it answers 404 under /_trimtab/):
    # say so clearly instead of sending the call.
    if agent.kind != INSTANCE:
        raise ControlError(0, "not_an_instance", f"{agent.name} is a balancer, not an instance")


def balancer_label(name: str) -> str:
    """A balancer's name where instances' names stand too (the Limits page, the report):
    ``lb-1 (balancer)``, or the name alone when it says so already."""
    return name if "balancer" in name.lower() else f"{name} (balancer)"


def as_balancer(balancer: Agent | str) -> Agent:
    if isinstance(balancer, Agent):
        return balancer if balancer.kind == BALANCER else \
            Agent(balancer.name, balancer.base_url, BALANCER)
    parts = urlsplit(balancer)
    return Agent("balancer", f"{parts.scheme}://{parts.netloc}", BALANCER)


def balancer_state(body: dict[str, Any], etag: str) -> BalancerState:
    servers = tuple(ServerView(s["name"], int(s["weight"]), s["state"], bool(s["up"]),
                               float(s["expected_share"]),
                               None if s.get("observed_share") is None
                               else float(s["observed_share"]))
                    for s in body.get("servers", []))
    return BalancerState(body.get("target", ""), body.get("policy", ""), servers, etag)
