"""Heatmap refresh with 1 h at 1 s × 44 buckets (the agent's 43 + +Inf): model.heat copy +
HeatmapView.set_heat + paint, vs a bare pyqtgraph ImageItem.setImage of the same float32
array + paint (same run). Last line: the ratio.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/heatmap.py
"""
from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QApplication
from trimtab.agent.buckets import LATENCY_BUCKETS
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.heat import HeatRing
from trimtab.widgets.heatmap import HeatmapView

SECONDS, REPEATS = 3600, 25


def filled_model(now: float) -> tuple[FleetModel, np.ndarray]:
    bounds = np.array([*LATENCY_BUCKETS, np.inf])
    model = FleetModel(capacity=SECONDS)
    rng = np.random.default_rng(1)
    ring = model.heat_rings["/r"] = HeatRing(SECONDS, bounds)
    centre = np.arange(len(bounds))
    for i in range(SECONDS):
        row = 40 * np.exp(-0.5 * ((centre - 20 - rng.normal(0, 1)) / 3) ** 2)
        ring.append(now - SECONDS + i + rng.uniform(-0.05, 0.05), bounds,
                    np.floor(row * 10) / 10)  # counts over a 10 s window: multiples of 0.1/s
    return model, bounds


def timed(app: QApplication, fn) -> float:
    start = time.perf_counter()
    fn()
    app.processEvents()
    return time.perf_counter() - start


def main() -> None:
    app = QApplication.instance() or QApplication([])
    now = time.time()
    model, _bounds = filled_model(now)
    view = HeatmapView("heatmap", "empty")
    view.resize(640, 300)
    view.show()
    view.set_x_window(now - SECONDS, now)

    def refresh() -> None:
        view.set_heat(*model.heat("/r", now - SECONDS - 1))
        view.grab()

    peer = pg.PlotWidget()
    image = pg.ImageItem(axisOrder="col-major")
    peer.addItem(image)
    peer.resize(640, 300)
    peer.show()
    z = model.heat("/r")[2]

    def bare() -> None:
        image.setImage(z, autoLevels=False, levels=(0, 40))
        peer.grab()

    for fn in (refresh, bare):  # warm up
        timed(app, fn)
    ours = [timed(app, refresh) for _ in range(REPEATS)]
    theirs = [timed(app, bare) for _ in range(REPEATS)]
    copy = [timed(app, lambda: model.heat("/r")) for _ in range(REPEATS)]
    print(f"cells: {z.shape[0]} ticks x {z.shape[1]} buckets = {z.size}")
    print(f"model.heat copy: median {statistics.median(copy) * 1e3:.2f} ms")
    m_ours, m_peer = statistics.median(ours), statistics.median(theirs)
    print(f"heatmap refresh (copy + set_heat + paint): median {m_ours * 1e3:.2f} ms, "
          f"max {max(ours) * 1e3:.2f} ms")
    print(f"bare ImageItem.setImage + paint (peer): median {m_peer * 1e3:.2f} ms")
    print(f"ratio heatmap/peer: {m_ours / m_peer:.2f}")


if __name__ == "__main__":
    main()
