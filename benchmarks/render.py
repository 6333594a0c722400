"""One full refresh of the visible page vs one pyqtgraph curve with as many points.

Data: 50 routes × 5 instances × 1 h at 1 s, as the model holds it after an hour of
scraping (p50/p95/p99/hit ratio/error ratio per route, share and latency per backend).
A "refresh" = copying the series out of the model, setData on every curve and painting
the window (grab() forces a paint). The peer: one PlotWidget with one curve holding the
same total number of points, setData + paint, in the same run.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/render.py
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QApplication
from trimtab.app.model import CacheRow, FleetModel, RouteStats, ShareRow
from trimtab.app.window import MainWindow
from trimtab.collectors.promql import Quantile

ROUTES, INSTANCES, SECONDS = 50, 5, 3600
REPEATS = 15


def filled_model(now: float) -> FleetModel:
    model = FleetModel(capacity=SECONDS)
    rng = np.random.default_rng(1)
    t = now - SECONDS + np.arange(SECONDS, dtype=float)
    for r in range(ROUTES):
        route = f"/svc/{r}/items/{{id}}"
        base = rng.uniform(0.01, 0.3)
        for metric, scale in (("p50", 0.5), ("p95", 1.0), ("p99", 1.6), ("hit_ratio", None),
                              ("error_ratio", None), ("rate", None)):
            values = (base * scale * rng.lognormal(0, 0.1, SECONDS) if scale
                      else rng.uniform(0, 1, SECONDS))
            for ts, v in zip(t, values):
                model._append(metric, route, float(ts), float(v))
        model.routes[route] = RouteStats(route, {0.95: Quantile(base, 0.0, 1.0)}, 10.0 + r, 0.0)
        model.cache.append(CacheRow(route, 5.0 + r, 5.0, 0.0))
    for i in range(INSTANCES):
        server = f"api-{i + 1}"
        for metric in ("share", "lb_p95"):
            for ts, v in zip(t, rng.uniform(0.1, 0.3, SECONDS)):
                model._append(metric, server, float(ts), float(v))
        model.share.append(ShareRow(server, 1.0, 0.2, 0.2))
    return model


def time_refresh(app: QApplication, window: MainWindow) -> float:
    window._seen_version = -1  # force, as a new scrape cycle does
    window.model.version += 1
    start = time.perf_counter()
    window.refresh()
    window.grab()
    app.processEvents()
    return time.perf_counter() - start


def time_peer(app: QApplication, plot: pg.PlotWidget, curve: pg.PlotDataItem,
              x: np.ndarray, y: np.ndarray) -> float:
    start = time.perf_counter()
    curve.setData(x, y)
    plot.grab()
    app.processEvents()
    return time.perf_counter() - start


def main() -> None:
    app = QApplication.instance() or QApplication([])
    now = time.time()
    model = filled_model(now)
    window = MainWindow(model)
    window.resize(1400, 860)
    window.range_box.setCurrentIndex(2)  # last 60 min: every point is in view
    window.show()
    n_points = sum(len(r) for (m, _), r in model.series.items() if m in ("p95", "hit_ratio", "share"))
    results = {}
    for page in (window.overview, window.routes):
        window.tabs.setCurrentWidget(page)
        time_refresh(app, window)  # warm-up: first paint, curve creation
        samples = [time_refresh(app, window) for _ in range(REPEATS)]
        results[type(page).__name__] = statistics.median(samples) * 1e3
    plot = pg.PlotWidget()
    plot.resize(1400, 860)
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    plot.show()
    curve = plot.plot(pen=pg.mkPen("#56B4E9", width=1))
    x = np.linspace(now - SECONDS, now, n_points)
    y = np.random.default_rng(2).uniform(0, 1, n_points)
    time_peer(app, plot, curve, x, y)
    peer = statistics.median(time_peer(app, plot, curve, x, y) for _ in range(REPEATS)) * 1e3
    for name, ms in results.items():
        print(f"{name:14s} full refresh: {ms:7.1f} ms median of {REPEATS}")
    print(f"single curve with {n_points:,} points (peer): {peer:7.1f} ms")
    overview = results["OverviewPage"]
    print(f"overview refresh / single-curve peer: {overview / peer:.2f}x ({overview:.1f} ms vs {peer:.1f} ms)")


if __name__ == "__main__":
    main()
