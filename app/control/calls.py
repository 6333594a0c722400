"""Balancer and journal calls of :class:`~.control.ControlClient` (a mixin).

Kept apart so the client module stays readable; the methods use the client's
request helpers (``_call``, ``_get``, ``_remember``, ``_conflict``, ``_failure``,
``_fan_out``, ``_revert_id``), declared below for the type checker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .types import (
    APPLIED,
    CONFLICT,
    ERROR,
    INSTANCE,
    UNCHANGED,
    UNREACHABLE,
    Agent,
    BalancerState,
    ChangeResult,
    ControlError,
    FieldChange,
    JournalRow,
    Outcome,
    Reply,
    Unreachable,
    as_balancer,
    balancer_state,
    journal_row,
    to_revert,
)


class BalancerJournalCalls:
    """Weights, states and the merged journal; mixed into ``ControlClient``."""

    # Provided by ControlClient.
    _call: Callable[..., Reply]
    _get: Callable[..., Reply]
    _remember: Callable[[Agent, str | None, dict[str, Any]], None]
    _conflict: Callable[..., Outcome]
    _failure: Callable[[Agent, Reply], Outcome]
    _fan_out: Callable[..., dict[Agent, Any]]
    _revert_id: Callable[..., Outcome]

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
        except Unreachable as err:
            outcome = err.outcome(agent)
        except ControlError as err:
            outcome = Outcome(agent, CONFLICT, f"changed meanwhile; re-read failed: {err}",
                              (), 412)

        def again(todo: list[Agent], etags: dict[Agent, str | None]) -> ChangeResult:
            return self._patch_balancer(agent, spec, reason, etags.get(agent) or etag, force,
                                        description)
        return ChangeResult(description, {agent: outcome}, again, {agent: etag})

    def _balancer_applied(self, agent: Agent, reply: Reply) -> Outcome:
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
        """
        rows, errors = self.journal(sources, since)
        todo = to_revert(rows)
        report = [(r, self.revert(r, reason)) for r in todo]
        for agent, err in errors.items():
            stub = JournalRow(agent, 0, since, "", agent.name, "journal", None, None, "", "")
            report.append((stub, Outcome(agent, UNREACHABLE if err.status == 0 else ERROR,
                                         f"journal not read: {err.message}")))
        return report
