"""The Fleet page: every scrape target, its health, and Add/Remove target. GUI thread.

It also says what discovery found (one line per source, with its last error), shows a
configuration error in the window (not only on stderr), and greets a first run (no
targets file yet) with *Add target…* and the demo. Targets discovery dropped read
"gone", never "DOWN".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from trimtab.collectors.errors import one_line
from trimtab.widgets.table import SortableTable
from trimtab.widgets.target_dialog import TargetDialog
from trimtab.widgets.timeseries import TimeSeriesView

from ...model import format as fmt
from ...model.fleet import FleetModel, TargetHealth
from ...store.settings import describe_retention, human_size
from ...store.store import Store
from ...targets.file import KINDS, TargetsError
from ...targets.manager import TargetManager

FLEET_HEADERS = ("target", "service", "kind", "state", "last scrape", "scrape duration", "samples",
                 "failed scrapes", "error", "url")
GONE = "gone"
GREETING = ("<b>Welcome to trimtab.</b> There is no targets file yet ({path}).<br>"
            "Add the <code>/metrics</code> URL of an API instance running the trimtab agent "
            "(<i>Add target…</i>), or start the demo fleet to see the cockpit at work.")


class FirstRunGreeting(QFrame):
    """What a first run shows instead of an empty table: where targets go, and two ways on."""

    def __init__(self, path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = QLabel(GREETING.format(path=path))
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.add_button = QPushButton("Add target…")
        self.demo_button = QPushButton("Start the demo")
        self.demo_button.setToolTip("Runs `trimtab demo`: three API instances, a balancer and "
                                    "traffic on loopback ports, in a window of its own")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addLayout(buttons)


class FleetPage(QWidget):
    """Targets with their service (when any is named), up/down/gone, last scrape, scrape duration, the error text and the URL;
    add / remove; discovery's sources; config errors; the first-run greeting."""

    def __init__(self, model: FleetModel, manager: TargetManager | None = None,
                 first_run: bool = False) -> None:
        super().__init__()
        self.model = model
        self.manager = manager
        self.clock: Callable[[], float] = time.time  # "now" for "last scrape … ago"
        # Starts the demo fleet (set by the cockpit's command line); None hides the offer.
        self.start_demo: Callable[[], None] | None = None
        self.table = SortableTable(FLEET_HEADERS)
        self.hint = QLabel("No targets yet: add one (Add target…) or start the demo (trimtab demo).")
        self.problem = QLabel()  # a configuration error, shown in the window as well as on stderr
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #e0524f; font-weight: bold")
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem.setVisible(False)
        self.sources_label = QLabel()  # one line per discovery source
        self.sources_label.setVisible(False)
        self.greeting = FirstRunGreeting(str(manager.path) if manager is not None else "")
        self.greeting.add_button.clicked.connect(self.ask_add)
        self.greeting.demo_button.clicked.connect(self._start_demo)
        self.first_run = first_run and manager is not None
        self.add_button = QPushButton("Add target…")
        self.remove_button = QPushButton("Remove selected")
        self.add_button.clicked.connect(self.ask_add)
        self.remove_button.clicked.connect(self.remove_selected)
        where = (f"Targets file: {manager.path}" if manager is not None
                 else "Demo fleet: targets come from the demo and are not saved.")
        self.config_label = QLabel(where)
        self.config_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # The store's size and the retention in force (hidden without a store).
        self.history_label = QLabel(history_text(model.store) if model.store else "")
        self.history_label.setVisible(model.store is not None)
        for button in (self.add_button, self.remove_button):
            button.setEnabled(manager is not None)
            if manager is None:
                button.setToolTip("The demo's targets are fixed; run `trimtab` to manage targets.")
        row = QHBoxLayout()
        row.addWidget(self.config_label, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.problem)
        layout.addWidget(self.greeting)
        layout.addWidget(self.history_label)
        layout.addWidget(self.sources_label)
        layout.addWidget(self.hint)
        layout.addWidget(self.table, 1)
        self.greeting.setVisible(self.first_run)
        self.hint.setVisible(not self.first_run)
        self.charts: list[TimeSeriesView] = []

    def greet_first_run(self, start_demo: Callable[[], None] | None = None) -> None:
        """Greet a first run (no targets file yet) until a target appears; ``start_demo``
        is what *Start the demo* does (None: the button is hidden)."""
        self.first_run, self.start_demo = self.manager is not None, start_demo
        self.greeting.setVisible(self.first_run)
        self.greeting.demo_button.setVisible(start_demo is not None)
        self.hint.setVisible(not self.first_run)

    def show_problem(self, text: str) -> None:
        """Show a configuration error (targets file, discovery, settings) above the table."""
        self.problem.setText(text)
        self.problem.setVisible(bool(text))

    @Slot()
    def _start_demo(self) -> None:
        if self.start_demo is not None:
            self.start_demo()
            self.greeting.demo_button.setEnabled(False)
            self.greeting.demo_button.setText("Demo starting…")

    @Slot()
    def ask_add(self) -> None:
        """Ask for a target until it is valid or the user cancels."""
        assert self.manager is not None
        dialog = TargetDialog(KINDS, self)
        while dialog.exec():
            name, url, kind, interval = dialog.values()
            try:
                self.manager.add(name, url, kind, interval, token_env=dialog.token_variable(),
                                 service=dialog.service())
                return
            except TargetsError as exc:
                dialog.show_error(str(exc))

    @Slot()
    def remove_selected(self) -> None:
        name = self.table.selected_key()
        if self.manager is None or name is None:
            return
        try:
            self.manager.remove(name)
        except TargetsError as exc:
            QMessageBox.warning(self, "Remove target", str(exc))

    def refresh(self, since: float) -> None:
        now = self.clock()
        health = self.model.read(lambda m: list(m.health.values()))
        rows, down = [], set()
        for h in health:
            if not h.up and not h.gone:
                down.add(h.name)
            rows.append((h.name, fleet_cells(h, now)))
        self.table.set_rows(rows, highlight=down)
        # One unnamed service (the demo, most single-service fleets): no service column.
        self.table.setColumnHidden(FLEET_HEADERS.index("service"),
                                   not any(h.service for h in health))
        greet = self.first_run and not rows
        self.greeting.setVisible(greet)
        self.greeting.demo_button.setVisible(self.start_demo is not None)
        self.hint.setVisible(not rows and not greet)
        discovery = self.manager.discovery if self.manager is not None else None
        if discovery is not None:
            lines = [s.summary() for s in discovery.statuses()]
            self.sources_label.setText("Discovery: " + "\n".join(lines))
            self.sources_label.setVisible(bool(lines))
        if self.model.store is not None:
            self.history_label.setText(history_text(self.model.store))


def gone_markers(departures: list[tuple[float, str]]) -> list[tuple[str, float, str]]:
    """Chart markers for targets discovery dropped: (key, time, label), one per second in
    which any left (a scale-down drops several at once; one line names them all)."""
    groups: dict[int, list[tuple[float, str]]] = {}
    for when, name in departures:
        groups.setdefault(int(when), []).append((when, name))
    return [(f"gone@{second}", group[0][0], "gone: " + ", ".join(n for _, n in group))
            for second, group in sorted(groups.items())]


def config_error_box(message: str) -> QMessageBox:
    """The dialog a configuration error gets when the cockpit cannot start (not yet shown)."""
    box = QMessageBox(QMessageBox.Icon.Critical, "trimtab cannot start",
                      "The configuration has an error; fix it and start trimtab again.")
    box.setInformativeText(message)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return box


def history_text(store: Store) -> str:
    """The Fleet page's history line: size on disk as last measured (no I/O), retention."""
    size = store.footprint()
    where = ("size not measured yet" if size is None else
             f"{human_size(size.file + size.wal)} on disk (file + WAL)")
    return f"History: {where} · keeps {describe_retention(store.retention)}"


def fleet_cells(h: TargetHealth, now: float) -> list[tuple[str, float | str]]:
    """One Fleet row at ``now``; a target never scraped says so, not "56 years ago"."""
    if h.last_scrape > 0:
        ago: tuple[str, float | str] = (fmt.ago(now - h.last_scrape), now - h.last_scrape)
    else:
        ago = ("never", math.inf)
    gone = getattr(h, "gone", 0.0)  # a replay's recorded health may predate discovery
    state = (GONE, -1) if gone else ("up" if h.up else "DOWN", int(h.up))
    url = getattr(h, "url", "")
    service = getattr(h, "service", "")
    return [(h.name, h.name), (service or "—", service), (h.kind, h.kind), state, ago,
            (fmt.duration(h.duration), h.duration), (str(h.samples), h.samples),
            (f"{h.failed_scrapes} of {h.ok_scrapes + h.failed_scrapes}", h.failed_scrapes),
            (_error_text(h, now), h.error or ""), (url, url)]


def _error_text(h: TargetHealth, now: float) -> str:
    """The scrape error on one line, plus when a backed-off target is tried next (a dead
    target is retried at 1, 2, 4 … intervals, so "DOWN" alone would look like it is being
    hammered); for a gone target, when discovery dropped it."""
    gone = getattr(h, "gone", 0.0)
    if gone:
        return f"left discovery {fmt.ago(now - gone)}; history kept"
    error = one_line(h.error or "")
    wait = h.next_attempt - now
    if h.up or not error or wait < 1.5:
        return error
    return f"{error} · retrying in {wait:.0f} s"
