"""The tuning loop's GUI side: change TTLs and weights, report per-target results, revert.

All agent calls go through :class:`ControlRunner` (never on the GUI thread). Results
are shown per target and claim nothing that did not happen; a partial failure offers
retry or roll back of the part that was applied; a conflict (someone else changed it
meanwhile) shows their change and asks before overwriting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QInputDialog, QMessageBox, QWidget
from trimtab.agent.balance.policies import MAX_WEIGHT
from trimtab.agent.config import MAX_TTL
from trimtab.agent.ratelimit_config import MAX_BURST, MAX_RATE
from trimtab.widgets.change_dialogs import TtlDialog, WeightsDialog
from trimtab.widgets.limit_dialog import LimitDialog, LimitSettings

from ..control import types as ctl
from ..control.client import ControlClient
from ..control.rollout import FINAL, Gates, Rollout
from ..model.keys import route_key, split_route_key
from ..slo.burn import FAST
from .control_worker import ControlRunner

JOURNAL_POLL_MS = 3000


def describe(result: ctl.ChangeResult) -> str:
    """One line per target: what happened there, in words an operator can act on."""
    lines = [result.description]
    for agent, outcome in sorted(result.outcomes.items(), key=lambda kv: kv[0].name):
        text = f"• {agent.name}: {outcome.status.replace('_', ' ')}"
        if outcome.changes:
            text += " — " + ", ".join(f"{c.path}: {c.old} → {c.new}" for c in outcome.changes)
        if outcome.message and outcome.status != ctl.APPLIED:
            text += f" — {outcome.message}"
        if outcome.status == ctl.UNREACHABLE:
            text += " (nothing changed there)"
        elif outcome.status == ctl.UNKNOWN:
            text += " (the answer was lost: it may have been applied)"
        lines.append(text)
    return "\n".join(lines)


class Tuning(QObject):
    """Owns the control client for one fleet: instance agents and an optional balancer."""

    journal_changed = Signal(list)  # list[JournalRow], oldest first
    access_changed = Signal(bool, str)  # can write, reason when not
    message = Signal(str)

    def __init__(self, token: str, instances: Sequence[ctl.Agent], balancer: ctl.Agent | None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = ControlClient(token)
        self.instances, self.balancer = list(instances), balancer
        self.runner = ControlRunner(self)
        self.rows: list[ctl.JournalRow] = []
        self.can_write: bool | None = None
        self.write_reason = "checking the token's scope…"
        # (route, instance) → (canary p95 in ms, error rate 0..1), from the model (GUI thread)
        self.numbers: Callable[[str, str], tuple[float, float]] | None = None
        # (route, instance, change time) → the judge's verdicts on the canary (GUI thread)
        self.judged: Callable[[str, str, float], dict[str, Any]] | None = None
        # (route, instance) → the canary's SLO burn rate over 5 min, None without an SLO
        # on the route (read from the history store: called on the runner thread)
        self.burn: Callable[[str, str], float | None] | None = None
        # (route, limit, instance) → the canary's share (0..1) of the route's requests that
        # limit refused with 429, None when it decided nothing, from the model (GUI thread)
        self.refused: Callable[[str, str, str], float | None] | None = None
        self.rollout: StagedRun | None = None

    def serving(self, route: str) -> tuple[list[ctl.Agent], str]:
        """(the instances serving ``route``, the route as their agents name it).

        ``route`` is a route key (:mod:`trimtab.app.model.keys`): a service's key
        (``shop · /items/{id}``) reaches only that service's instances, with the plain route;
        an unqualified one, the instances of the unnamed service.
        """
        service, plain = split_route_key(route)
        return [a for a in self.instances if a.service == service], plain

    @property
    def sources(self) -> list[ctl.Agent]:
        return [*self.instances, *([self.balancer] if self.balancer else [])]

    def start(self) -> None:
        """Find out whether the token may write, and start following the journals."""
        probes = [*self.instances, *([self.balancer] if self.balancer else [])]
        if probes:
            self.runner.submit(lambda: self._first_access(probes), self._got_access)
        self.refresh_journal()

    def _first_access(self, probes: list[ctl.Agent]) -> ctl.Access:
        """The access of the first agent that answers (runner thread): with several
        services, the first instance may be one without a trimtab agent."""
        access = self.client.access(probes[0])
        for agent in probes[1:]:
            if access.read:
                break
            access = self.client.access(agent)
        return access

    def _got_access(self, access: Any) -> None:
        if isinstance(access, Exception):
            self.can_write, self.write_reason = None, f"cannot reach the agents: {access}"
        else:
            self.can_write = access.write is not False
            self.write_reason = access.reason or ("" if self.can_write else
                                                  "this token has read scope only")
        self.access_changed.emit(bool(self.can_write), self.write_reason)

    @Slot()
    def refresh_journal(self) -> None:
        if self.runner.busy < 2:  # never queue polls behind a slow agent
            self.runner.submit(lambda: self.client.journal(self.sources), self._got_journal)

    def _got_journal(self, answer: Any) -> None:
        if isinstance(answer, Exception):
            self.message.emit(f"journal unavailable: {answer}")
            return
        rows, errors = answer
        self.rows = list(rows)
        self.journal_changed.emit(self.rows)
        if errors:
            self.message.emit("journal unavailable from " + ", ".join(
                f"{a.name} ({e})" for a, e in errors.items()))

    # --- TTL -------------------------------------------------------------------------

    def change_ttl(self, parent: QWidget, route: str, then: Callable[[], None] | None = None) -> None:
        """Read every instance's config (for ETags), then ask, preview, confirm and apply."""
        instances, plain = self.serving(route)

        def ask(reads: Any) -> None:
            if isinstance(reads, Exception):
                QMessageBox.warning(parent, "Change TTL", f"Could not read the configs: {reads}")
                return
            current = {a.name: r.ttl(plain) or 0.0 for a, r in reads.items()
                       if isinstance(r, ctl.ConfigRead)}
            failed = [a.name for a, r in reads.items() if not isinstance(r, ctl.ConfigRead)]
            if not current:
                QMessageBox.warning(parent, "Change TTL", "No instance answered: "
                                    + ", ".join(failed))
                return
            self._ttl_dialog(parent, route, current, reads, then)

        if not instances:
            QMessageBox.warning(parent, "Change TTL", f"No instance serves {route}.")
            return
        self.runner.submit(lambda: self.client.read_configs(instances), ask)

    def _ttl_dialog(self, parent: QWidget, route: str, current: dict[str, float],
                    reads: dict[ctl.Agent, Any], then: Callable[[], None] | None) -> None:
        dialog = TtlDialog(route, current, parent, max_ttl=MAX_TTL)  # the agent's own bound
        instances, plain = self.serving(route)
        probe = next(a for a in instances if a.name in current)

        def show_whatif(w: Any) -> None:
            if isinstance(w, Exception):
                dialog.set_preview_error(str(w))
            else:
                dialog.set_whatif(w.hit_ratio, w.current_ttl, w.requests)

        self.runner.submit(lambda: self.client.whatif(probe, plain), show_whatif)
        if not dialog.exec() or (choice := dialog.choice()) is None:
            return  # cancelled; an invalid dialog never accepts, so nothing half-typed is sent
        names, ttl, reason = choice
        agents = [a for a in instances if a.name in names]
        etags = ctl.expected_etags({a: reads[a] for a in agents})
        staged = dialog.staged_choice()
        if staged is not None:
            self._staged_ttl(parent, route, ttl, reason, agents, etags, staged)
            return
        self.runner.submit(lambda: self.client.set_ttl(agents, plain, ttl, reason, etags),
                           lambda r: self.report(parent, "Change TTL", r, then))

    def _staged_ttl(self, parent: QWidget, route: str, ttl: float, reason: str,
                    agents: list[ctl.Agent], etags: dict[ctl.Agent, str | None],
                    staged: tuple[str, float, float | None, float | None]) -> None:
        canary_name, watch, p95_max, err_max = staged
        canary = next(a for a in agents if a.name == canary_name)
        plain = self.serving(route)[1]  # the agents' name of it; the gates read the key's series
        rollout = Rollout(
            canary, [a for a in agents if a is not canary],
            apply=lambda ts: self.client.set_ttl(ts, plain, ttl, reason,
                                                 {a: etags.get(a) for a in ts}),
            rollback=lambda r: self.client.rollback(r, "staged rollout: a gate failed"),
            # An SLO on the route adds the workbook's fast-burn gate on the canary's own series.
            gates=Gates(p95_max_ms=p95_max, error_rate_max=err_max, burn_max=FAST.factor),
            watch_seconds=watch)
        self.rollout = StagedRun(self, parent, rollout, route)
        self.rollout.begin()

    def invalidate(self, parent: QWidget, route: str) -> None:
        """Drop the route's cached entries on every instance, after a confirmation with reason."""
        agents, plain = self.serving(route)
        reason, ok = QInputDialog.getText(
            parent, "Invalidate cache", f"Drop every cached entry of {route} on "
            f"{', '.join(a.name for a in agents)}.\nReason (recorded in the journal):")
        if not ok:
            return
        self.runner.submit(lambda: self.client.invalidate(agents, route=plain, reason=reason),
                           lambda r: self.report(parent, "Invalidate cache", r))

    # --- rate limits -----------------------------------------------------------------

    def change_limit(self, parent: QWidget, name: str, mode: str | None = None,
                     then: Callable[[], None] | None = None) -> None:
        """Read every instance's config (for ETags and the limit as it is), then ask with
        the what-if preview, and apply to the instances chosen (a config change: journaled,
        revertible from the Journal page). ``mode`` presets the dialog's mode."""
        def ask(reads: Any) -> None:
            if isinstance(reads, Exception):
                QMessageBox.warning(parent, "Change limit", f"Could not read the configs: {reads}")
                return
            current = {a.name: LimitSettings(v.route, v.key, v.rate, v.burst, v.mode)
                       for a, r in reads.items() if isinstance(r, ctl.ConfigRead)
                       for v in [r.limits().get(name)] if v is not None}
            if not current:
                QMessageBox.warning(parent, "Change limit",
                                    f"No instance that answered has the limit {name}.")
                return
            self._limit_dialog(parent, name, current, reads, mode, then)

        self.runner.submit(lambda: self.client.read_configs(self.instances), ask)

    def _limit_dialog(self, parent: QWidget, name: str, current: dict[str, LimitSettings],
                      reads: dict[ctl.Agent, Any], mode: str | None,
                      then: Callable[[], None] | None) -> None:
        dialog = LimitDialog(name, current, parent, mode=mode, max_rate=MAX_RATE,
                             max_burst=MAX_BURST)  # the agent's own bounds
        agents = [a for a in self.instances if a.name in current]
        route = dialog.route

        def preview(key: str, rate: float, burst: int) -> None:
            def work() -> tuple[int, int, int, float, list[str]]:
                requests = limited = clients = 0
                seconds, failed = 0.0, []
                for agent in agents:  # each instance replays its own arrivals
                    try:
                        w = self.client.limits_whatif(agent, route, key, rate, burst)
                    except ctl.ControlError as err:
                        failed.append(f"{agent.name}: {err}")
                        continue
                    requests, limited = requests + w.requests, limited + w.limited
                    # Key values are hashed per instance: the same client cannot be told
                    # apart across instances, so the most on any one instance is shown.
                    clients, seconds = max(clients, w.limited_keys), max(seconds, w.seconds)
                return requests, limited, clients, seconds, failed

            def show(answer: Any) -> None:
                if isinstance(answer, Exception):
                    dialog.set_preview_error(str(answer))
                    return
                requests, limited, clients, seconds, failed = answer
                if failed and len(failed) == len(agents):
                    dialog.set_preview_error("; ".join(failed))
                else:
                    dialog.set_whatif(key, rate, burst, requests, limited, clients, seconds)

            self.runner.submit(work, show)

        dialog.preview_wanted.connect(preview)
        if not dialog.exec() or (choice := dialog.choice()) is None:
            return  # cancelled; an invalid dialog never accepts, so nothing half-typed is sent
        names, fields, reason = choice
        chosen = [a for a in agents if a.name in names]
        etags = ctl.expected_etags({a: reads[a] for a in chosen})
        staged = dialog.staged_choice()
        if staged is not None:
            self._staged_limit(parent, name, route, fields, reason, chosen, etags, staged)
            return
        self.runner.submit(lambda: self.client.set_limit(chosen, name, fields, reason, etags),
                           lambda r: self.report(parent, "Change limit", r, then))

    def _staged_limit(self, parent: QWidget, name: str, route: str, fields: dict[str, object],
                      reason: str, agents: list[ctl.Agent], etags: dict[ctl.Agent, str | None],
                      staged: tuple[str, float, float | None, float | None]) -> None:
        """The limit change on the canary, watched against its error rate and its share of
        ``route`` (the limit's route, as the agents name it) refused with 429, then on the
        rest; or the canary reverted (journaled) and the rest never touched."""
        canary_name, watch, err_max, refused_max = staged
        canary = next(a for a in agents if a.name == canary_name)
        rollout = Rollout(
            canary, [a for a in agents if a is not canary],
            apply=lambda ts: self.client.set_limit(ts, name, fields, reason,
                                                   {a: etags.get(a) for a in ts}),
            rollback=lambda r: self.client.rollback(r, "staged rollout: a gate failed"),
            # An SLO on the route adds the workbook's fast-burn gate on the canary's own series.
            gates=Gates(error_rate_max=err_max, refused_max=refused_max, burn_max=FAST.factor),
            watch_seconds=watch)
        # The model keys the canary's series by its service's route key.
        self.rollout = StagedRun(self, parent, rollout, route_key(canary.service, route),
                                 limit=name)
        self.rollout.begin()

    def top_keys(self, name: str, done: Callable[[Any], None]) -> None:
        """Ask every instance for the keys limit ``name`` refused most, off the GUI thread;
        ``done`` gets the merged :class:`~trimtab.app.control.top_keys.TopKeys` (or the
        exception) on the GUI thread."""
        self.runner.submit(lambda: self.client.top_keys(self.instances, name), done)

    def remove_limit(self, parent: QWidget, name: str,
                     then: Callable[[], None] | None = None) -> None:
        """Remove the limit from every instance that has it, after a confirmation with reason."""
        def ask(reads: Any) -> None:
            if isinstance(reads, Exception):
                QMessageBox.warning(parent, "Remove limit", f"Could not read the configs: {reads}")
                return
            agents = [a for a, r in reads.items()
                      if isinstance(r, ctl.ConfigRead) and name in r.limits()]
            if not agents:
                QMessageBox.warning(parent, "Remove limit",
                                    f"No instance that answered has the limit {name}.")
                return
            reason, ok = QInputDialog.getText(
                parent, "Remove limit", f"Remove the rate limit {name} from "
                f"{', '.join(a.name for a in agents)}.\nReason (recorded in the journal):")
            if not ok:
                return
            etags = ctl.expected_etags({a: reads[a] for a in agents})
            self.runner.submit(lambda: self.client.delete_limit(agents, name, reason, etags),
                               lambda r: self.report(parent, "Remove limit", r, then))

        self.runner.submit(lambda: self.client.read_configs(self.instances), ask)

    # --- rate limits at the balancer --------------------------------------------------

    def _balancer_named(self, parent: QWidget, title: str, balancer: str) -> ctl.Agent | None:
        if self.balancer is None or self.balancer.name != balancer:
            QMessageBox.warning(parent, title, f"No control endpoint for the balancer {balancer}.")
            return None
        return self.balancer

    def change_balancer_limit(self, parent: QWidget, balancer: str, name: str,
                              mode: str | None = None,
                              then: Callable[[], None] | None = None) -> None:
        """Change the balancer's own limit ``name`` (its ``/_trimtab/balancer/limits``, never
        the instances): read it with its ETag, ask, apply; journaled and revertible on the
        balancer. A value the balancer refuses (422: e.g. what the HAProxy adapter cannot do
        live) opens the dialog again as typed, with the balancer's words; nothing changed."""
        agent = self._balancer_named(parent, "Change limit", balancer)
        if agent is None:
            return

        def ask(read: Any) -> None:
            if isinstance(read, Exception):
                QMessageBox.warning(parent, "Change limit",
                                    f"Could not read the balancer's limits: {read}")
                return
            view = read.limits.get(name)
            if view is None:
                QMessageBox.warning(parent, "Change limit",
                                    f"The balancer {agent.name} has no limit {name} now.")
                return
            current = {agent.name: LimitSettings(view.route, view.key, view.rate, view.burst,
                                                 view.mode)}
            dialog = LimitDialog(name, current, parent, mode=mode, max_rate=MAX_RATE,
                                 max_burst=MAX_BURST, at_balancer=True)
            dialog.preview_wanted.connect(lambda *_: dialog.set_preview_error(
                "not offered by the balancer (the instances' agents replay their own traffic; "
                "the balancer keeps no arrivals to replay)"))
            self._balancer_limit_dialog(parent, agent, dialog, read.etag, then)

        self.runner.submit(lambda: self.client.read_balancer_limits(agent), ask)

    def _balancer_limit_dialog(self, parent: QWidget, agent: ctl.Agent, dialog: LimitDialog,
                               etag: str, then: Callable[[], None] | None) -> None:
        if not dialog.exec() or (choice := dialog.choice()) is None:
            return  # cancelled; an invalid dialog never accepts, so nothing half-typed is sent
        _, fields, reason = choice

        def done(result: Any) -> None:
            outcome = None if isinstance(result, Exception) else result.outcomes.get(agent)
            if outcome is not None and outcome.status == ctl.REFUSED and \
                    outcome.http_status == 422:
                self.refresh_journal()  # the refusal is journaled on the balancer
                dialog.show_refusal(outcome.message)
                self._balancer_limit_dialog(parent, agent, dialog, etag, then)
                return
            self.report(parent, "Change limit", result, then)

        self.runner.submit(lambda: self.client.set_balancer_limit(agent, dialog.name, fields,
                                                                  reason, etag), done)

    def remove_balancer_limit(self, parent: QWidget, balancer: str, name: str,
                              then: Callable[[], None] | None = None) -> None:
        """Remove the balancer's own limit ``name`` after a confirmation with reason (the
        HAProxy adapter refuses: its limits live in HAProxy's config; its words are shown)."""
        agent = self._balancer_named(parent, "Remove limit", balancer)
        if agent is None:
            return

        def ask(read: Any) -> None:
            if isinstance(read, Exception):
                QMessageBox.warning(parent, "Remove limit",
                                    f"Could not read the balancer's limits: {read}")
                return
            if name not in read.limits:
                QMessageBox.warning(parent, "Remove limit",
                                    f"The balancer {agent.name} has no limit {name} now.")
                return
            reason, ok = QInputDialog.getText(
                parent, "Remove limit", f"Remove the rate limit {name} from the balancer "
                f"{agent.name} (the instances keep theirs).\nReason (recorded in the journal):")
            if not ok:
                return
            self.runner.submit(
                lambda: self.client.delete_balancer_limit(agent, name, reason, read.etag),
                lambda r: self.report(parent, "Remove limit", r, then))

        self.runner.submit(lambda: self.client.read_balancer_limits(agent), ask)

    # --- weights and states ----------------------------------------------------------

    def change_weights(self, parent: QWidget, then: Callable[[], None] | None = None) -> None:
        if self.balancer is None:
            return
        balancer = self.balancer

        def ask(state: Any) -> None:
            if isinstance(state, Exception):
                QMessageBox.warning(parent, "Change weights", f"Balancer unavailable: {state}")
                return
            views = {s.name: s for s in state.servers}

            def preview(weights: dict[str, int], states: dict[str, str]) -> dict[str, float]:
                what_if = [ctl.ServerView(n, weights[n], states[n], v.up, 0.0, None)
                           for n, v in views.items()]
                return ctl.preview_weights(what_if, weights)

            dialog = WeightsDialog([(s.name, s.weight, s.state) for s in state.servers],
                                   preview, parent, max_weight=MAX_WEIGHT)
            if not dialog.exec() or (choice := dialog.choice()) is None:
                return  # cancelled; an invalid dialog never accepts
            weights, states, reason, force = choice
            self.runner.submit(lambda: self._apply_servers(balancer, state.etag, weights, states,
                                                           reason, force),
                               lambda r: self.report(parent, "Change weights", r, then))

        self.runner.submit(lambda: self.client.read_balancer(balancer), ask)

    def _apply_servers(self, balancer: ctl.Agent, etag: str, weights: dict[str, int],
                       states: dict[str, str], reason: str, force: bool) -> ctl.ChangeResult:
        """Weights in one all-or-nothing change, then each state change with the fresh ETag."""
        result = ctl.ChangeResult("nothing to change", {})
        if weights:
            result = self.client.set_weights(balancer, weights, reason, etag, force=force)
            if not result.ok:
                return result
        for server, state in states.items():
            etag = self.client.read_balancer(balancer).etag
            result = self.client.set_state(balancer, server, state, reason, etag, force=force)
            if not result.ok:
                return result
        return result

    # --- results, revert --------------------------------------------------------------

    def report(self, parent: QWidget, title: str, result: Any,
               then: Callable[[], None] | None = None) -> None:
        """Per-target results; offer retry / roll back on partial failure, ask on conflict."""
        self.refresh_journal()
        if then is not None:
            then()
        if isinstance(result, Exception):
            QMessageBox.warning(parent, title, f"Nothing was confirmed: {result}")
            return
        text = describe(result)
        if result.ok:
            QMessageBox.information(parent, title, text)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
        applied = result.with_status(ctl.APPLIED)
        failed = result.with_status(ctl.UNREACHABLE, ctl.UNKNOWN, ctl.ERROR)
        conflicts = result.with_status(ctl.CONFLICT)
        retry = box.addButton("Retry the failed ones", QMessageBox.ButtonRole.AcceptRole) \
            if failed and result.retry_call else None
        overwrite = box.addButton("Apply over their change", QMessageBox.ButtonRole.AcceptRole) \
            if conflicts and result.retry_call else None
        rollback = box.addButton("Roll back what was applied",
                                 QMessageBox.ButtonRole.DestructiveRole) if applied else None
        box.addButton("Keep as is", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        clicked = box.clickedButton()
        if clicked is not None and clicked in (retry, overwrite):
            self.runner.submit(lambda: self.client.retry(result, include_conflicts=clicked is overwrite),
                               lambda r: self.report(parent, title, r, then))
        elif clicked is not None and clicked is rollback:
            self.runner.submit(lambda: self.client.rollback(result, "rolled back after a partial failure"),
                               lambda r: self.report(parent, "Roll back", r, then))

    def revert(self, parent: QWidget, row: ctl.JournalRow) -> None:
        def done(outcome: Any) -> None:
            self.refresh_journal()
            if isinstance(outcome, Exception):
                QMessageBox.warning(parent, "Revert", f"Nothing was confirmed: {outcome}")
            elif outcome.status != ctl.APPLIED:
                QMessageBox.warning(parent, "Revert", f"{row.source.name}: {outcome.status} — "
                                    f"{outcome.message}")

        self.runner.submit(lambda: self.client.revert(row, "reverted from the cockpit"), done)

    def revert_many(self, parent: QWidget, rows: Sequence[ctl.JournalRow]) -> None:
        """Undo one change made on several targets: each entry reverted on its own source,
        one report naming any that failed."""
        if len(rows) == 1:
            self.revert(parent, rows[0])
            return
        todo = list(rows)

        def work() -> list[tuple[ctl.JournalRow, ctl.Outcome]]:
            return [(row, self.client.revert(row, "reverted from the cockpit")) for row in todo]

        def done(pairs: Any) -> None:
            self.refresh_journal()
            if isinstance(pairs, Exception):
                QMessageBox.warning(parent, "Undo", f"Nothing was confirmed: {pairs}")
                return
            failed = [f"• {row.source.name} #{row.id}: {o.status} — {o.message}"
                      for row, o in pairs if o.status != ctl.APPLIED]
            if failed:
                QMessageBox.warning(parent, "Undo", "Not undone everywhere:\n" + "\n".join(failed))

        self.runner.submit(work, done)

    def revert_since(self, parent: QWidget, since: float) -> None:
        def done(pairs: Any) -> None:
            self.refresh_journal()
            if isinstance(pairs, Exception):
                QMessageBox.warning(parent, "Revert", f"Nothing was confirmed: {pairs}")
                return
            lines = [f"• {row.source.name} #{row.id} {row.what}: {o.status}"
                     + (f" — {o.message}" if o.message and o.status != ctl.APPLIED else "")
                     for row, o in pairs]
            QMessageBox.information(parent, "Revert everything since",
                                    "\n".join(lines) or "Nothing to revert in that period.")

        self.runner.submit(lambda: self.client.revert_since(self.sources, since,
                                                            "reverted from the cockpit"), done)

    def close(self) -> None:
        self.runner.shutdown()
        self.client.close()


class StagedRun(QObject):
    """Drives a :class:`Rollout`: canary first, the model's numbers fed to it every 2 s,
    the rest applied after the watch, or the canary reverted when a gate fails.

    ``route`` is the route key of the canary's series. ``limit``: the change is to that rate
    limit (on ``route``), and the canary's share of the route refused with 429 by it
    (``Tuning.refused``) is fed to the 429-share gate too; None (a TTL) feeds none.
    """

    def __init__(self, tuning: Tuning, parent: QWidget, rollout: Rollout, route: str,
                 limit: str | None = None) -> None:
        super().__init__(tuning)
        self.tuning, self.parent_widget, self.rollout, self.route = tuning, parent, rollout, route
        self.limit = limit
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._step)
        self._stepping = False

    def begin(self) -> None:
        self.started = time.time()  # the canary's change, for the judge's windows
        self._stepping = True
        self.tuning.runner.submit(self.rollout.start, self._after)

    def _step(self) -> None:
        if self._stepping or self.tuning.numbers is None:
            return
        p95_ms, error_rate = self.tuning.numbers(self.route, self.rollout.canary.name)
        judged = (self.tuning.judged(self.route, self.rollout.canary.name, self.started)
                  if self.tuning.judged is not None else None)
        refused = (self.tuning.refused(self.route, self.limit, self.rollout.canary.name)
                   if self.limit is not None and self.tuning.refused is not None else None)
        self._stepping = True

        burn_of = self.tuning.burn
        route, canary = self.route, self.rollout.canary.name

        def work() -> str:
            burn = burn_of(route, canary) if burn_of is not None else None
            self.rollout.observe(p95_ms, error_rate, judged, burn, refused)
            return self.rollout.advance()

        self.tuning.runner.submit(work, self._after)

    def _after(self, state: object) -> None:
        self._stepping = False
        self.tuning.refresh_journal()
        events = self.rollout.events
        if events:
            self.tuning.message.emit(f"staged rollout: {events[-1].message}")
        if isinstance(state, Exception) or self.rollout.state in FINAL:
            self._timer.stop()
            text = "\n".join(f"• {e.state}: {e.message}" for e in events)
            if isinstance(state, Exception):
                text += f"\n• stopped: {state}"
            QMessageBox.information(self.parent_widget, "Staged rollout", text)
        elif not self._timer.isActive():
            self._timer.start(2000)
