"""One full refresh of the visible page vs one pyqtgraph curve with as many points.

Data: 50 routes × 5 instances × 1 h at 1 s, as the model holds it after an hour of
scraping (p50/p95/p99/hit ratio/error ratio/rate per route, p95 per route and
instance, share and latency per backend), written straight into the model's rings.
A "refresh" = one scrape cycle's worth of new points (one per series, as ``tick``
appends them, so nothing can be skipped as unchanged), then copying the series out
of the model, handing them to the visible page's charts and painting the whole
window once (every widget and every chart's whole viewport, not only what changed,
through the event loop as the app paints; grab() would paint it twice, into its
pixmap and again for the pending update). The window's clock is the simulated scrape
clock, one second per refresh, so the live time axis steps every 10th refresh as it
does in the app (the axes are laid out again and each chart's cached curve image is
shifted by whole pixels: it shows in the p90 and max printed).
Pages timed: Overview, Slow routes, Cache, Balancer.
The Cache page charts the 10 busiest cached routes (plus the selected one), not all 50.
CPU time (process_time) is printed beside wall time: on a loaded machine it is the
steadier figure.
The peer: one PlotWidget with one curve holding the same total number of points
(every p95, hit-ratio and share series), setData + the same repaint, in the same run.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/render.py
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QApplication, QGraphicsView, QWidget
from trimtab.app.model.fleet import INSTANCE_SEP, CacheRow, FleetModel, RouteStats, ShareRow
from trimtab.app.model.ring import Ring
from trimtab.app.ui import window as window_module
from trimtab.app.ui.window import MainWindow
from trimtab.collectors.promql import Quantile

ROUTES, INSTANCES, SECONDS = 50, 5, 3600
REPEATS = 30  # three live-axis steps per page
ROUTE_METRICS = (("p50", 0.5), ("p95", 1.0), ("p99", 1.6), ("hit_ratio", None),
                 ("error_ratio", None), ("rate", None))


def _ring(t: np.ndarray, values: np.ndarray) -> Ring:
    ring = Ring(len(t))
    for ts, v in zip(t.tolist(), values.tolist()):
        ring.append(ts, v)
    return ring


def filled_model(end: float) -> FleetModel:
    """A model holding an hour of points per series, the last one at ``end``."""
    model = FleetModel(capacity=SECONDS)
    rng = np.random.default_rng(1)
    t = end - SECONDS + 1 + np.arange(SECONDS, dtype=float)
    servers = [f"api-{i + 1}" for i in range(INSTANCES)]
    for r in range(ROUTES):
        route = f"/svc/{r}/items/{{id}}"
        base = rng.uniform(0.01, 0.3)
        for metric, scale in ROUTE_METRICS:
            values = (base * scale * rng.lognormal(0, 0.1, SECONDS) if scale
                      else rng.uniform(0, 1, SECONDS))
            model.series[(metric, route)] = _ring(t, values)
        for server in servers:
            model.series[("p95_instance", f"{route}{INSTANCE_SEP}{server}")] = _ring(
                t, base * rng.lognormal(0, 0.2, SECONDS))
        model.routes[route] = RouteStats(route, {0.95: Quantile(base, 0.0, 1.0)}, 10.0 + r, 0.0)
        model.cache.append(CacheRow(route, 5.0 + r, 5.0, 0.0))
    for server in servers:
        for metric in ("share", "lb_p95"):
            model.series[(metric, server)] = _ring(t, rng.uniform(0.1, 0.3, SECONDS))
        model.share.append(ShareRow(server, 1.0, 0.2, 0.2))
    return model


def one_cycle(model: FleetModel, now: float, rng: np.random.Generator) -> None:
    """What ``tick`` does once a second: one new point on every series, version bumped."""
    with model.lock:
        for ring in model.series.values():
            ring.append(now, float(rng.uniform(0.1, 0.3)))
        model.version += 1


class SimulatedClock:
    """Stands in for the ``time`` module inside the window: now = the last scrape."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def time_refresh(app: QApplication, window: MainWindow, clock: SimulatedClock,
                 rng: np.random.Generator) -> tuple[float, float]:
    """Wall and CPU ms of one refresh (CPU time is less at the mercy of a busy machine)."""
    clock.now += 1.0
    one_cycle(window.model, clock.now, rng)
    start, cpu = time.perf_counter(), time.process_time()
    window.refresh()
    paint_everything(app, window)
    return (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3


def paint_everything(app: QApplication, widget: QWidget) -> None:
    """One paint of all of ``widget``, through the event loop as the app paints.

    Every chart's whole viewport, not only the region that changed, so cached
    axes and curve images are blitted in full.
    """
    widget.update()
    for view in widget.findChildren(QGraphicsView):
        view.viewport().update()
    app.processEvents()


def time_peer(app: QApplication, plot: pg.PlotWidget, curve: pg.PlotDataItem,
              x: np.ndarray, y: np.ndarray) -> float:
    start = time.perf_counter()
    curve.setData(x, y)
    paint_everything(app, plot)
    return time.perf_counter() - start


def time_pages(app: QApplication, window: MainWindow, clock: SimulatedClock,
               cpu: dict[str, list[float]]) -> dict[str, list[float]]:
    """ms of each full refresh per page, in the order an operator would visit them.

    ``cpu`` receives each page's CPU ms per refresh.
    """
    rng = np.random.default_rng(3)
    results = {}
    for page in (window.overview, window.routes, window.cache, window.balancer):
        window.tabs.setCurrentWidget(page)
        for _ in range(2):  # warm-up: first paint, curve creation, route selection
            time_refresh(app, window, clock, rng)
        timed = [time_refresh(app, window, clock, rng) for _ in range(REPEATS)]
        results[type(page).__name__] = [wall for wall, _ in timed]
        cpu[type(page).__name__] = [c for _, c in timed]
    return results


def main() -> None:
    app = QApplication.instance() or QApplication([])
    clock = SimulatedClock(time.time())
    model = filled_model(clock.now)
    window_module.time = clock
    window = MainWindow(model)
    window.resize(1400, 860)
    window.range_box.setCurrentIndex(2)  # last 60 min: every point is in view
    window.show()
    n_points = sum(len(r) for (m, _), r in model.series.items() if m in ("p95", "hit_ratio", "share"))
    cpu: dict[str, list[float]] = {}
    results = time_pages(app, window, clock, cpu)
    plot = pg.PlotWidget()
    plot.resize(1400, 860)
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    plot.show()
    curve = plot.plot(pen=pg.mkPen("#56B4E9", width=1))
    now = time.time()
    x = np.linspace(now - SECONDS, now, n_points)
    y = np.random.default_rng(2).uniform(0, 1, n_points)
    time_peer(app, plot, curve, x, y)
    peer = statistics.median(time_peer(app, plot, curve, x, y) for _ in range(REPEATS)) * 1e3
    medians = {name: statistics.median(ms) for name, ms in results.items()}
    for name, ms in results.items():
        p90 = statistics.quantiles(ms, n=10)[-1]
        cpu_p90 = statistics.quantiles(cpu[name], n=10)[-1]
        print(f"{name:14s} full refresh: {medians[name]:7.1f} ms median of {REPEATS} "
              f"(p90 {p90:.1f}, max {max(ms):.1f}; CPU median {statistics.median(cpu[name]):.1f} "
              f"ms, p90 {cpu_p90:.1f})")
    print(f"single curve with {n_points:,} points (peer): {peer:7.1f} ms")
    slowest = max(medians, key=medians.__getitem__)
    overview = medians["OverviewPage"]
    print(f"overview refresh / single-curve peer: {overview / peer:.2f}x ({overview:.1f} ms vs "
          f"{peer:.1f} ms; slowest page {slowest} {medians[slowest]:.1f} ms)")


if __name__ == "__main__":
    main()
