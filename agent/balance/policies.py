"""Balancing model: servers, input rules, shares, guard rails, the back-end contract,
and the built-in balancer's picking policies.

All policies choose only among *eligible* servers: state ``ready``, passing
health checks and weight > 0. They run on the event loop thread, so a weight
or state change made there takes effect from the very next pick.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..journal import ACCEPTED, Journal

STATES = ("ready", "drain", "maint")
FIELDS = ("weight", "state")  # what the control API may change on a server
MAX_WEIGHT = 256  # HAProxy's bound; the built-in balancer uses the same so both APIs agree
POLICIES = ("swrr", "leastconn", "iphash")


class InvalidInput(ValueError):
    """A value was refused before anything changed; ``field`` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def check_weight(value: object, maximum: int = MAX_WEIGHT) -> int:
    """``value`` as an int in 0..maximum; strings, floats and booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("weight", f"must be an integer 0..{maximum}, got {value!r}")
    if not 0 <= value <= maximum:
        raise InvalidInput("weight", f"must be between 0 and {maximum}, got {value}")
    return value


def check_state(value: object) -> str:
    """``value`` if it is ready, drain or maint."""
    if value not in STATES:
        raise InvalidInput("state", f"must be one of {', '.join(STATES)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class ServerStatus:
    """One server as either back-end reports it to the control API."""

    name: str
    weight: int
    state: str  # ready | drain | maint
    up: bool  # health: passing checks (HAProxy: status not DOWN/MAINT)
    picks: int  # cumulative times the balancer chose it (HAProxy's lbtot)
    in_flight: int = 0
    initial_weight: int | None = None


@dataclass(eq=False)
class Server:
    """A built-in balancer upstream and its live counters."""

    name: str
    url: str
    weight: int = 1
    state: str = "ready"
    healthy: bool = True
    current: int = 0  # SWRR running value
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    initial_weight: int = field(init=False)

    def __post_init__(self) -> None:
        check_weight(self.weight)
        check_state(self.state)
        self.initial_weight = self.weight

    @property
    def eligible(self) -> bool:
        """May receive new load-balanced requests."""
        return self.state == "ready" and self.healthy and self.weight > 0

    def status(self) -> ServerStatus:
        """Snapshot for the control API."""
        return ServerStatus(self.name, self.weight, self.state, self.healthy, self.requests,
                            self.in_flight, self.initial_weight)


def expected_share(servers: Sequence[ServerStatus]) -> dict[str, float]:
    """w / Σw over servers that are up and ready (not draining, not in maintenance)."""
    live = [s for s in servers if s.state == "ready" and s.up]
    total = sum(s.weight for s in live)
    return {s.name: (s.weight / total if total and s in live else 0.0) for s in servers}


def etag(servers: Iterable[ServerStatus], policy: str) -> str:
    """Version of the controllable configuration (weights, states, policy)."""
    doc = json.dumps([policy, sorted((s.name, s.weight, s.state) for s in servers)])
    return '"' + hashlib.sha256(doc.encode()).hexdigest()[:16] + '"'


def guard_rail(before: list[ServerStatus], after: list[ServerStatus]) -> str | None:
    """Why ``after`` is dangerous, or None. Only refuses what the change makes worse."""
    if all(s.weight == 0 for s in after) and not all(s.weight == 0 for s in before):
        return "this change sets every weight to zero"

    def serving(servers: list[ServerStatus]) -> bool:
        return any(s.state == "ready" and s.up and s.weight > 0 for s in servers)

    if serving(before) and not serving(after):
        return "this change leaves no server ready, up and with weight > 0 (the last one)"
    return None


class ShareWindow:
    """Cumulative pick counts sampled over time; observed share over the last N seconds."""

    def __init__(self, horizon: float = 3600.0) -> None:
        self.horizon = horizon
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, picks: dict[str, int], now: float | None = None) -> None:
        """Record a sample; drop those older than the horizon."""
        t = time.monotonic() if now is None else now
        self._samples.append((t, dict(picks)))
        while self._samples and self._samples[0][0] < t - self.horizon:
            self._samples.popleft()

    def observed(self, window: float, now: float | None = None) -> dict[str, float | None]:
        """Share of picks per server since the oldest sample inside ``window``."""
        if not self._samples:
            return {}
        t = time.monotonic() if now is None else now
        latest = self._samples[-1][1]
        base = next((p for ts, p in self._samples if ts >= t - window), latest)
        delta = {k: max(0, v - base.get(k, 0)) for k, v in latest.items()}
        total = sum(delta.values())
        return {k: (v / total if total else None) for k, v in delta.items()}


class BackendError(Exception):
    """The back-end could not apply a valid request; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Backend(Protocol):
    """What the control API needs from a balancer back-end."""

    target: str  # journal target, e.g. "balancer" or "haproxy/be"
    policy: str

    async def servers(self) -> list[ServerStatus]:
        """Live servers; raises :class:`BackendError`."""

    async def apply(self, server: str, field: str, value: Any) -> None:
        """Set one server's ``weight`` or ``state``; raises :class:`BackendError`."""

    async def reconcile(self) -> list[dict[str, Any]]:
        """Periodic check (e.g. HAProxy reload); journal-ready events it produced."""

    def extra(self) -> dict[str, Any]:
        """Back-end specific fields for the GET document (drift, reload, ...)."""


def desired_from_journal(journal: Journal, target: str) -> dict[str, dict[str, Any]]:
    """Latest accepted value per server and field for ``target``: the desired state."""
    out: dict[str, dict[str, Any]] = {}
    for entry in journal.list():
        if entry.target != target or entry.result != ACCEPTED:
            continue
        parsed = split_what(entry.what)
        if parsed is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = entry.new
    return out


def split_what(what: str) -> tuple[str, str] | None:
    """``servers.<name>.<field>`` → (name, field); names may contain dots."""
    head, _, rest = what.partition(".")
    server, _, field = rest.rpartition(".")
    if head != "servers" or not server or field not in FIELDS:
        return None
    return server, field


@dataclass(frozen=True)
class Item:
    """One requested change of one server field."""

    server: str
    field: str
    old: Any
    new: Any


def apply_items(servers: list[ServerStatus], items: list[Item]) -> list[ServerStatus]:
    """``servers`` as they would be after ``items`` (for the guard rails)."""
    after = {s.name: s for s in servers}
    for i in items:
        after[i.server] = replace(after[i.server], **{i.field: i.new})
    return list(after.values())


class Policy(Protocol):
    """Chooses the upstream for one request."""

    name: str

    def pick(self, servers: Sequence[Server], client: str) -> Server | None:
        """An eligible server, or None when there is none."""


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: exact shares, spread out rather than bursty."""

    name = "swrr"

    def pick(self, servers: Sequence[Server], client: str = "") -> Server | None:
        """Add every weight to its running value, take the largest, subtract the total."""
        best: Server | None = None
        total = 0
        for server in servers:
            if not server.eligible:
                continue
            server.current += server.weight
            total += server.weight
            if best is None or server.current > best.current:
                best = server
        if best is not None:
            best.current -= total
        return best


class LeastConnections:
    """Fewest in-flight requests relative to weight; ties resolved by SWRR among the tied."""

    name = "leastconn"

    def __init__(self) -> None:
        self._tie = SmoothWeightedRoundRobin()

    def pick(self, servers: Sequence[Server], client: str = "") -> Server | None:
        """Weighted least connections (in_flight / weight, lowest wins)."""
        live = [s for s in servers if s.eligible]
        if not live:
            return None
        # Cross-multiplied comparison keeps it exact (no float ties that are not ties).
        best = min(live, key=lambda s: s.in_flight / s.weight)
        tied = [s for s in live if s.in_flight * best.weight == best.in_flight * s.weight]
        return self._tie.pick(tied) if len(tied) > 1 else best


class ConsistentHash:
    """A hash ring keyed on client IP; ``points`` virtual nodes per unit of weight.

    Node ids are ``name#i``, so raising one server's weight only adds points for
    it: clients move to that server and nowhere else (stable across weight changes).
    """

    name = "iphash"

    def __init__(self, points: int = 40) -> None:
        self.points = points
        self._key: tuple[tuple[str, int], ...] = ()
        self._hashes: list[int] = []
        self._owners: list[str] = []

    @staticmethod
    def _hash(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    def _ring(self, servers: Sequence[Server]) -> None:
        key = tuple((s.name, s.weight) for s in servers)
        if key == self._key:
            return
        ring = sorted((self._hash(f"{s.name}#{i}"), s.name)
                      for s in servers for i in range(s.weight * self.points))
        self._key = key
        self._hashes = [h for h, _ in ring]
        self._owners = [n for _, n in ring]

    def pick(self, servers: Sequence[Server], client: str = "") -> Server | None:
        """The first eligible server clockwise from the client's hash."""
        self._ring(servers)
        if not self._hashes:
            return None
        by_name = {s.name: s for s in servers}
        start = bisect.bisect(self._hashes, self._hash(client))
        seen: set[str] = set()
        for i in range(len(self._owners)):
            name = self._owners[(start + i) % len(self._owners)]
            if name in seen:
                continue
            seen.add(name)
            if by_name[name].eligible:
                return by_name[name]
            if len(seen) == len(by_name):
                break
        return None


def make_policy(name: str) -> Policy:
    """A fresh policy by name: swrr, leastconn or iphash."""
    if name == "swrr":
        return SmoothWeightedRoundRobin()
    if name == "leastconn":
        return LeastConnections()
    if name == "iphash":
        return ConsistentHash()
    raise InvalidInput("policy", f"must be one of {', '.join(POLICIES)}, got {name!r}")
