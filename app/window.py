"""The main window: wires FleetModel to the thin views. GUI thread only, no I/O here."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QGridLayout, QLabel, QMainWindow, QWidget

from trimtab.widgets.share import ShareBarsView
from trimtab.widgets.timeseries import TimeSeriesView

from .model import FleetModel


class MainWindow(QMainWindow):
    """Polls ``model.version`` a few times a second and refreshes the views when it moved."""

    def __init__(self, model: FleetModel, refresh_hz: float = 4.0) -> None:
        super().__init__()
        self.model = model
        self.setWindowTitle("trimtab — fleet cockpit")
        self.resize(1400, 860)
        self.latency = TimeSeriesView("p95 latency per route (fleet, 10 s rate window)",
                                      "p95 latency", "s",
                                      "No latency data yet: waiting for the first two scrapes.")
        self.hit_ratio = TimeSeriesView("Cache hit ratio per route", "hit ratio (%)", "",
                                        "No cache lookups yet: only routes with a TTL are cached.",
                                        y_range=(0, 100))
        self.share_time = TimeSeriesView("Request share per backend over time", "share (%)", "",
                                         "No balancer data yet.", y_range=(0, 100))
        self.share_bars = ShareBarsView()
        grid = QGridLayout()
        grid.addWidget(self.latency, 0, 0)
        grid.addWidget(self.hit_ratio, 0, 1)
        grid.addWidget(self.share_time, 1, 0)
        grid.addWidget(self.share_bars, 1, 1)
        central = QWidget()
        central.setLayout(grid)
        self.setCentralWidget(central)
        self.status = QLabel("no targets yet: add one or start the demo (trimtab demo)")
        self.statusBar().addWidget(self.status, 1)
        self.paused = False
        self._seen_version = -1
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(int(1000 / refresh_hz))
        QShortcut(QKeySequence("Space"), self, activated=self.toggle_pause)
        QShortcut(QKeySequence("Ctrl+Q"), self, activated=self.close)

    @Slot()
    def toggle_pause(self) -> None:
        """Freeze the charts (data keeps being collected) or resume them."""
        self.paused = not self.paused
        self._seen_version = -1
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Copy what changed out of the model and hand it to the views."""
        if self.model.version == self._seen_version and not self.paused:
            return
        self._refresh_status()
        if self.paused:
            return
        self._seen_version = self.model.version
        self.latency.set_series(self.model.snapshot("p95"))
        self.hit_ratio.set_series(_percent(self.model.snapshot("hit_ratio")))
        self.share_time.set_series(_percent(self.model.snapshot("share")))
        rows = self.model.read(lambda m: [(r.server, r.expected, r.observed) for r in m.share])
        self.share_bars.set_rows(rows)  # type: ignore[arg-type]

    def _refresh_status(self) -> None:
        health = self.model.read(lambda m: list(m.health.values()))
        if not health:
            return
        up = sum(1 for h in health if h.up)  # type: ignore[attr-defined]
        last = max(h.last_scrape for h in health)  # type: ignore[attr-defined]
        down = [f"{h.name}: {h.error}" for h in health if not h.up]  # type: ignore[attr-defined]
        text = f"{up}/{len(health)} targets up · last scrape {time.time() - last:.1f} s ago"
        if down:
            text += " · down: " + "; ".join(down)
        if self.paused:
            text += " · PAUSED (Space to resume)"
        self.status.setText(text)


def _percent(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple]:
    return {k: (t, v * 100.0) for k, (t, v) in series.items()}
