"""The Limits page: every rate limit per instance with its decisions per second, and the
limited / would-be-limited requests per route and limit over time. GUI thread."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget
from trimtab.widgets.table import SortableTable, TableFilter
from trimtab.widgets.timeseries import TimeSeriesView

from ...control.top_keys import TopKeys
from ...control.types import balancer_label
from ...model import format as fmt
from ...model.fleet import FleetModel, LimitRow, limit_key, split_limit_key
from . import promql
from .common import TOP_ROUTES
from .top_keys import NO_SOURCE, PICK, TopKeysPanel

LIMIT_HEADERS = ("instance", "limit", "route", "key", "rate", "burst", "mode", "allowed/s",
                 "limited/s", "would-be-limited/s")
LIMIT_TIPS = {
    "instance": "Where the limit is decided: an instance's agent, or the balancer (before a "
                "server is chosen; changed at the balancer, never on the instances)",
    "key": "What a client is told apart by: ip, global, header:<name> (an API key), jwt:<claim>",
    "rate": "Requests per second each key may send, on this instance (or balancer)",
    "burst": "Requests a key may send at once",
    "mode": "off: not decided; shadow: counted, nobody refused; enforce: refused with 429",
    "allowed/s": "Requests this limit let through, per second (rate window)",
    "limited/s": "Requests this limit refused with 429 (mode enforce), per second",
    "would-be-limited/s": "Requests this limit would have refused in shadow mode, per second "
                          "(they were served)",
}
SELECT_FIRST = "Select a limit in the table first"
AT_BALANCER = "Not reported by the balancer (only the instances' agents keep them)."
ROW_SEP = "\x00"
# The chart's two curves per route and limit, by their last word (the before/after card's
# judge reads it too: app.model.before_after.KINDS).
CURVES = {"limit_limited": "limited/s", "limit_shadow": "would-be-limited/s"}
TOP_KEYS_EVERY = 5.0  # seconds between two asks for the selected limit's top keys
TOP_KEYS_PATIENCE = 30.0  # an ask unanswered this long is given up (asked again)
# (limit name, where the answer goes) → asks the agents off the GUI thread (Tuning.top_keys)
TopKeysSource = Callable[[str, Callable[[object], None]], None]


@dataclass(frozen=True)
class LimitLine:
    """One row of the table: a limit of one instance, on one route it decided on."""

    instance: str
    name: str
    route: str  # the route counted (the limit's own route, or one route of a "*" limit)
    key: str
    rate: float
    burst: int
    mode: str
    allowed: float
    limited: float
    shadow_limited: float
    at_balancer: bool = False  # ``instance`` is a balancer: changed at its own limits API

    @property
    def row_key(self) -> str:
        return ROW_SEP.join((self.instance, self.name, self.route))

    @property
    def where(self) -> str:
        """The instance column: the target's name; a balancer's says it is one when the
        name does not (``lb-1 (balancer)``)."""
        return balancer_label(self.instance) if self.at_balancer else self.instance


def limit_lines(configs: Mapping[str, Mapping[str, Any]], rows: list[LimitRow],
                balancers: Mapping[str, Mapping[str, Any]] | None = None) -> list[LimitLine]:
    """Each instance's limits (its config) and each balancer's (``balancers``: balancer →
    name → settings) with the decisions the model has for them; a limit that decided
    nothing yet shows its own route with NaN rates."""
    counted: dict[tuple[str, str], list[LimitRow]] = {}
    for row in rows:
        counted.setdefault((row.target, row.limit), []).append(row)
    owners = [(instance, doc.get("limits") or {}, False)
              for instance, doc in sorted(configs.items())]
    owners += [(balancer, limits, True) for balancer, limits in sorted((balancers or {}).items())]
    out = []
    for instance, limits, at_balancer in owners:
        for name, f in sorted(limits.items()):
            if not isinstance(f, dict):
                continue
            settings = (str(f.get("key", "?")), float(f.get("rate", math.nan)),
                        int(f.get("burst", 0)), str(f.get("mode", "?")))
            seen = counted.get((instance, name))
            if not seen:
                out.append(LimitLine(instance, name, str(f.get("route", "?")), *settings,
                                     math.nan, math.nan, math.nan, at_balancer))
            for r in seen or ():
                out.append(LimitLine(instance, name, r.route, *settings, r.allowed, r.limited,
                                     r.shadow_limited, at_balancer))
    return out


def _rate_cell(value: float) -> tuple[str, float]:
    return ("–", -1.0) if math.isnan(value) else (fmt.rate(value), value)


class LimitsPage(QWidget):
    """Rate limits as every instance has them, what they decide, and the buttons to change
    them; the buttons act on the selected limit (on every instance that has it)."""

    change_requested = Signal(str)  # limit name
    enforce_requested = Signal(str)  # limit name: the Change dialog preset to enforce
    remove_requested = Signal(str)  # limit name
    # The same three for a balancer's row: (balancer, limit name); never sent to instances.
    balancer_change_requested = Signal(str, str)
    balancer_enforce_requested = Signal(str, str)
    balancer_remove_requested = Signal(str, str)

    def __init__(self, model: FleetModel) -> None:
        super().__init__()
        self.model = model
        self.can_write, self._write_reason = False, "no control token"
        self.lines: list[LimitLine] = []
        self.change_button = QPushButton("Change limit…")
        self.change_button.clicked.connect(
            lambda: self._ask(self.change_requested, self.balancer_change_requested))
        self.enforce_button = QPushButton("Shadow → enforce…")
        self.enforce_button.clicked.connect(
            lambda: self._ask(self.enforce_requested, self.balancer_enforce_requested))
        self.remove_button = QPushButton("Remove…")
        self.remove_button.clicked.connect(
            lambda: self._ask(self.remove_requested, self.balancer_remove_requested))
        self.table = SortableTable(LIMIT_HEADERS, tooltips=LIMIT_TIPS)
        self.table.sortItems(0, Qt.SortOrder.AscendingOrder)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.table.selectionModel().selectionChanged.connect(self._ask_top_keys)
        self.filter = TableFilter(self.table, remember_as="limits")
        self.limited = TimeSeriesView(
            "Limited (429) and would-be-limited (shadow) per route and limit", "requests/s",
            "", "No rate limit has refused anyone, or would have: nothing to draw yet.")
        self.hint = QLabel("No rate limits on the instances or the balancer read so far. A "
                           "limit is set through the agent's control API (limits.<name> in its "
                           "config) or the balancer's (--limit); the demo starts with one in "
                           "shadow mode on /search.")
        self.hint.setWordWrap(True)
        self.top_keys = TopKeysPanel()
        self.top_keys_source: TopKeysSource | None = None  # set when there is a control token
        self._asked: tuple[str, float] | None = None  # (limit, monotonic time) asked last
        self._answered: tuple[str, float] | None = None  # (limit, monotonic time) shown last
        below = QSplitter(Qt.Orientation.Horizontal)
        below.addWidget(self.limited)
        below.addWidget(self.top_keys)
        below.setStretchFactor(0, 3)
        below.setStretchFactor(1, 2)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(below)
        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        buttons = QHBoxLayout()
        buttons.addWidget(self.filter, 1)
        for button in (self.remove_button, self.enforce_button, self.change_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        layout.addWidget(split, 1)
        self.charts = [self.limited]
        self._curves: dict[str, tuple[str, str]] = {}  # legend name → (metric, limit key)
        self.table.set_promql(promql.limit_cell(model, _split_row))
        self.limited.set_promql(promql.limit_curves(model, lambda: self._curves))
        self._update_buttons()

    def selected_limit(self) -> str | None:
        """The name of the limit in the selected row."""
        key = self.table.selected_key()
        return key.split(ROW_SEP)[1] if key is not None else None

    def selected_balancer(self) -> str | None:
        """The balancer of the selected row, None for an instance's limit (or no selection)."""
        key = self.table.selected_key()
        line = next((line for line in self.lines if line.row_key == key), None)
        return line.instance if line is not None and line.at_balancer else None

    def select_balancer_limit(self, balancer: str, name: str) -> bool:
        """Select the first row of the balancer's limit ``name``."""
        for line in self.lines:
            if line.at_balancer and (line.instance, line.name) == (balancer, name):
                return self.table.select_key(line.row_key)
        return False

    def select_limit(self, name: str) -> bool:
        """Select the first row of the limit ``name``."""
        for key in self.table.keys():
            if key.split(ROW_SEP)[1] == name:
                return self.table.select_key(key)
        return False

    def set_write_access(self, can_write: bool, reason: str) -> None:
        """Whether the token may change things (``reason`` says why not)."""
        self.can_write, self._write_reason = can_write, reason
        self._update_buttons()

    def _update_buttons(self, *_: object) -> None:
        """Enabled with write access and a selected limit (enforce: only from shadow or off)."""
        name, balancer = self.selected_limit(), self.selected_balancer()
        # A balancer's limit is its own; an instance limit's name spans every instance.
        modes = {line.mode for line in self.lines if line.name == name
                 and (line.instance == balancer if balancer else not line.at_balancer)}
        where = f"at the balancer {balancer} (not on the instances)" if balancer else \
            "on every instance that has it"
        for button, verb, ok in (
                (self.change_button, "Change the rate, burst, key or mode of", True),
                (self.enforce_button, "Enforce", bool(modes - {"enforce"})),
                (self.remove_button, "Remove", True)):
            button.setEnabled(self.can_write and name is not None and ok)
            button.setToolTip(f"Disabled: {self._write_reason}" if not self.can_write else
                              f"Disabled: {SELECT_FIRST}" if name is None else
                              f"{verb} {name} {where}" if ok else
                              f"Disabled: {name} is enforced " +
                              (f"at {balancer} already" if balancer else "everywhere already"))

    def _ask_top_keys(self, *_: object) -> None:
        """Ask for the selected limit's top keys: at once for a newly selected limit, then
        every TOP_KEYS_EVERY seconds; never twice at once for the same limit."""
        name = self.selected_limit()
        if name is None:
            self.top_keys.say(PICK)
            return
        if self.selected_balancer() is not None:
            self._asked = None
            self.top_keys.say(AT_BALANCER)
            return
        if self.top_keys_source is None:
            self.top_keys.say(NO_SOURCE)
            return
        now = time.monotonic()
        if self._asked is not None and self._asked[0] == name:
            age, in_flight = now - self._asked[1], self._answered != self._asked
            if age < (TOP_KEYS_PATIENCE if in_flight else TOP_KEYS_EVERY):
                return  # asked already: still in flight, or answered a moment ago
        if self.top_keys.shown is None or self.top_keys.shown.limit != name:
            self.top_keys.say(f"Asking the agents which keys {name} refused most…")
        asked = self._asked = (name, now)
        self.top_keys_source(name, lambda answer: self._got_top_keys(asked, answer))

    def _got_top_keys(self, asked: tuple[str, float], answer: object) -> None:
        """Show an answer (TopKeys, or the exception the ask raised) unless another limit
        was selected, or asked for, since."""
        if asked != self._asked or asked[0] != self.selected_limit():
            return
        self._answered = asked
        if isinstance(answer, TopKeys | Exception):
            self.top_keys.show_keys(answer)
        else:
            self.top_keys.show_keys(TypeError(f"unexpected answer {type(answer).__name__}"))

    def _ask(self, signal: Any, at_balancer: Any) -> None:
        """The selected limit's intent: a balancer's row to its balancer, never the instances."""
        name, balancer = self.selected_limit(), self.selected_balancer()
        if name is not None and balancer is not None:
            at_balancer.emit(balancer, name)
        elif name is not None:
            signal.emit(name)

    def refresh(self, since: float) -> None:
        configs, rows, balancers = self.model.read(
            lambda m: (dict(m.configs), list(m.limits), dict(m.balancer_limits)))
        self.lines = limit_lines(configs, rows, balancers)
        self.table.set_rows([(line.row_key, [
            (line.where, line.where), (line.name, line.name), (line.route, line.route),
            (line.key, line.key), (f"{line.rate:g}/s", line.rate),
            (f"{line.burst:,}", float(line.burst)), (line.mode, line.mode),
            _rate_cell(line.allowed), _rate_cell(line.limited), _rate_cell(line.shadow_limited)])
            for line in self.lines])
        self.hint.setVisible(not self.lines)
        self._update_buttons()
        self._ask_top_keys()
        self._chart(since)

    def _chart(self, since: float) -> None:
        """Limited and would-be-limited of the busiest limits (fleet-wide, per route)."""
        data = {metric: self.model.snapshot(metric, since) for metric in CURVES}
        busiest: dict[str, float] = {}
        for line in self.lines:
            key = limit_key(line.route, line.name)
            score = (0.0 if math.isnan(line.limited) else line.limited) + \
                (0.0 if math.isnan(line.shadow_limited) else line.shadow_limited)
            busiest[key] = busiest.get(key, 0.0) + score
        keys = sorted(busiest, key=lambda k: (-busiest[k], k))[:TOP_ROUTES]
        series, curves = {}, {}
        for key in keys:
            route, name = split_limit_key(key)
            for metric, word in CURVES.items():
                if key in data[metric]:
                    series[f"{route} {name} {word}"] = data[metric][key]
                    curves[f"{route} {name} {word}"] = (metric, key)
        self._curves = curves
        self.limited.set_series(series, keep_gone=False)


def _split_row(row_key: str) -> tuple[str, str, str]:
    """(instance, limit, route) of a table row's key (LimitLine.row_key)."""
    instance, name, route = row_key.split(ROW_SEP, 2)
    return instance, name, route
