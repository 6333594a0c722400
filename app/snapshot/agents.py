"""What the headless export asks the agents for: their change journal, traces and config
(the rate limits).

The cockpit's File → Export holds both already (it polls them live); ``trimtab
snapshot export`` runs without a cockpit, so it reads them from the agents named
in the targets file, with the read token in ``TRIMTAB_TOKEN`` (the same one the
cockpit uses). Whatever it cannot include is returned as :class:`Omission`s,
one per part and source with the reason (no targets file, no token, an agent
unreachable or refusing the token, traces the agent no longer holds), for the
command to print and the snapshot to record (``meta.omitted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..control.client import ControlClient
from ..control.types import INSTANCE, Agent, ControlError, JournalRow

TRACE_PAGE = 1000  # the agent's largest page
MAX_TRACE_PAGES = 200  # a bound, whatever an agent answers


@dataclass(frozen=True)
class Omission:
    """One part of the window not in the snapshot: ``what`` (journal, traces, targets),
    from ``source`` (a target name, or "all"), and ``why``."""

    what: str
    source: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"what": self.what, "source": self.source, "why": self.why}

    def __str__(self) -> str:
        return f"{self.what} of {self.source}: {self.why}"


@dataclass
class AgentRecords:
    """The journal and traces read from the agents, and what could not be read."""

    journal: list[JournalRow] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # instance → document
    # balancer → its own limits (name → settings), as FleetModel.balancer_limits holds them
    balancer_limits: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    omitted: list[Omission] = field(default_factory=list)


def read_agents(targets: Sequence[Any], token: str, start: float, end: float,
                timeout: float = 3.0) -> AgentRecords:
    """The journal (instances and balancers), traces and config documents (instances, as
    the cockpit polls them) and each balancer's own limits of ``targets`` in ``[start,
    end]``; an omission for every part missing (a balancer without limits is none)."""
    out = AgentRecords()
    agents = [Agent.from_target(t) for t in targets
              if getattr(t, "kind", INSTANCE) in ("instance", "balancer")]
    if not agents:
        return out
    if not token:
        why = ("no read token: set TRIMTAB_TOKEN to the agents' read (or write) token, "
               "as for the cockpit")
        out.omitted += [Omission(what, "all", why) for what in ("journal", "traces", "limits")]
        return out
    instances = [a for a in agents if a.kind == INSTANCE]
    with ControlClient(token, timeout=timeout) as client:
        # Every entry from the start on, also after the window: the limits are read now
        # and worked back to the window's end through the later changes (snapshot/limits).
        rows, errors = client.journal(agents, since=start)
        reads = client.read_configs(instances)
        for agent in agents:
            if agent.kind != INSTANCE:
                _balancer_limits(client, agent, out)
    out.journal = rows
    out.omitted += [Omission("journal", agent.name, _why(err.status, err.message))
                    for agent, err in errors.items()]
    for agent, read in reads.items():
        if isinstance(read, ControlError):
            out.omitted.append(Omission("limits", agent.name, _why(read.status, read.message)))
        else:
            out.configs[agent.name] = read.doc
    with httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"}) as http:
        for agent in agents:
            if agent.kind == INSTANCE:
                traces, missing = _traces_of(http, agent, start, end)
                out.traces += traces
                out.omitted += missing
    out.traces.sort(key=lambda t: t.get("start") or 0.0)
    return out


def _balancer_limits(client: ControlClient, agent: Agent, out: AgentRecords) -> None:
    """A balancer's own limits into ``out`` (404: it has none), or the omission."""
    try:
        read = client.read_balancer_limits(agent)
    except ControlError as err:
        if err.status != 404:
            out.omitted.append(Omission("balancer limits", agent.name,
                                        _why(err.status, err.message)))
        return
    out.balancer_limits[agent.name] = {
        name: {"route": v.route, "key": v.key, "rate": v.rate, "burst": v.burst,
               "mode": v.mode} for name, v in read.limits.items()}


def _why(status: int, message: str) -> str:
    if status == 0:
        return f"agent unreachable ({message})"
    if status in (401, 403):
        return f"the token was refused (HTTP {status}: {message})"
    return f"HTTP {status}: {message}"


def _traces_of(http: httpx.Client, agent: Agent, start: float, end: float
               ) -> tuple[list[dict[str, Any]], list[Omission]]:
    """Traces of one agent in the window, following its cursor from the oldest it holds."""
    out: list[dict[str, Any]] = []
    cursor, oldest, dropped = 0, None, 0
    for _ in range(MAX_TRACE_PAGES):
        try:
            resp = http.get(f"{agent.base_url}/_trimtab/traces",
                            params={"since": str(cursor), "limit": str(TRACE_PAGE)})
        except httpx.HTTPError as exc:
            return out, [Omission("traces", agent.name,
                                  _why(0, f"{type(exc).__name__}: {exc}"))]
        if resp.status_code != 200:
            return out, [Omission("traces", agent.name, _why(resp.status_code,
                                                             _message(resp)))]
        try:
            body = resp.json()
            page, nxt = list(body["traces"]), int(body["next"])
            if cursor == 0:  # records the agent's ring buffer already overwrote
                dropped = int(body.get("dropped") or 0)
        except (ValueError, KeyError, TypeError) as exc:
            return out, [Omission("traces", agent.name, f"unexpected answer ({exc})")]
        for trace in page:
            if not isinstance(trace, dict):
                continue
            t = trace.get("start")
            if isinstance(t, (int, float)):
                oldest = t if oldest is None else min(oldest, t)
                if start <= t <= end:
                    trace.setdefault("instance", agent.name)  # as the cockpit's model does
                    out.append(trace)
        if not page or nxt <= cursor:
            break
        cursor = nxt
    if dropped and oldest is not None and oldest > start:
        return out, [Omission("traces", agent.name,
                              f"{dropped} older traces are no longer held by the agent (its "
                              f"buffer keeps the newest): none before {oldest:.0f} (unix s)")]
    return out, []


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(body.get("message") or body.get("error") or body)[:200] \
        if isinstance(body, dict) else str(body)[:200]
