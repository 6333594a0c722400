"""What "Copy as PromQL" puts on the clipboard, pasted into a real Prometheus, gives the number
the chart or table shows (issue 16.1), to a relative 1e-9.

A real ``prometheus`` scrapes the real demo fleet every second; the samples it stored are fed
to the model scrape by scrape (as tests/app/model/test_prometheus_equality.py does, so both
sides read the same samples) and the model ticks at instants T. The real window, offscreen,
shows that model; the test copies through its menus and shortcut, reads the real clipboard,
and asks Prometheus's HTTP API for each expression at ``time=T``: the Overview's p95 chart
(one curve from its legend's menu, every curve by Ctrl+Shift+C), the Slow routes page's
request rate chart (the "all" curve) and its table's req/s and 5xx cells; the Cache table's
hit ratio and hits/s (the model's expression narrowed to one result) and the Balancer
table's observed share.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.window import MainWindow
from trimtab.demo.fleet import DemoFleet

from tests.app.model.test_prometheus_equality import (
    _prom_values,
    _stored_scrapes,
    _wait_for_history,
)
from tests.app.ui.promql_gui import cell_copy, curves_of, legend_copy, shortcut_copy
from tests.collectors.prometheus.prom_server import running_prometheus

TOLERANCE = 1e-9


def _feed(model: FleetModel, client: httpx.Client) -> int:
    """Feed Prometheus's stored samples to ``model``, ticking every 1.7 s up to T; T (ms)."""
    t_ms = round(time.time() * 1000) - 2000  # every scrape up to here is stored
    scrapes = _stored_scrapes(client, t_ms)
    instants = sorted({t_ms - 1700 * k for k in range(12)})
    fed = 0
    for at in instants:
        while fed < len(scrapes) and round(scrapes[fed].timestamp * 1000) <= at:
            model.ingest(scrapes[fed])
            fed += 1
        model.tick(at / 1000)
    assert model.window == 10.0
    return t_ms


class Check:
    """Evaluates copied expressions in Prometheus at T against the window's numbers."""

    def __init__(self, client: httpx.Client, t_ms: int) -> None:
        self.client, self.t_ms = client, t_ms
        self.worst, self.compared = 0.0, 0

    def same(self, expr: str, key: str, mine: float, by: str = "route") -> None:
        got = _prom_values(self.client, expr, self.t_ms, by)
        assert set(got) == {key}, (expr, got)  # one series: the route or server filled in
        theirs = got[key]
        if math.isnan(theirs) and math.isnan(mine):
            return
        assert not (math.isnan(theirs) or math.isnan(mine)), (expr, mine, theirs)
        diff = abs(mine - theirs) / abs(theirs) if theirs else abs(mine)
        assert diff <= TOLERANCE, (expr, mine, theirs)
        self.worst, self.compared = max(self.worst, diff), self.compared + 1


def _last(model: FleetModel, metric: str, key: str, t_ms: int) -> float:
    t, v = model.snapshot(metric)[key]
    assert t[-1] == t_ms / 1000
    return float(v[-1])


@pytest.mark.slow
def test_copied_promql_equals_the_shown_number_in_prometheus(qtbot, tmp_path: Path) -> None:
    fleet = DemoFleet(rps=100.0, log_dir=str(tmp_path))
    try:
        fleet.start()
        with running_prometheus(tmp_path, {"demo": [t.url for t in fleet.targets]}) as prom, \
                httpx.Client(base_url=prom, timeout=30.0) as client:
            _wait_for_history(client, 45.0)
            model = FleetModel(rate_window=10.0)
            t_ms = _feed(model, client)
            window = MainWindow(model, refresh_hz=20)
            qtbot.addWidget(window)
            window.resize(1366, 768)
            window.show()
            qtbot.waitExposed(window)
            check = Check(client, t_ms)
            _overview(qtbot, window, check)
            _routes(qtbot, window, check)
            _cache_and_balancer(qtbot, window, check)
            window.close()
    finally:
        fleet.stop()
    print(f"largest relative difference copied PromQL vs the window: {check.worst:.3e} "
          f"over {check.compared} values")
    assert check.compared >= 12


def _overview(qtbot, window: MainWindow, check: Check) -> None:
    window.tabs.setCurrentWidget(window.overview)
    chart = window.overview.latency
    qtbot.waitUntil(lambda: len(chart.shown_keys()) >= 2, timeout=30_000)
    routes = chart.shown_keys()
    one = legend_copy(qtbot, chart, routes[0])
    check.same(one, routes[0], _last(window.model, "p95", routes[0], check.t_ms))
    every = curves_of(shortcut_copy(qtbot, chart.plot))
    assert sorted(every) == sorted(routes)
    for route, expr in every.items():
        check.same(expr, route, _last(window.model, "p95", route, check.t_ms))


def _routes(qtbot, window: MainWindow, check: Check) -> None:
    page = window.routes
    window.tabs.setCurrentWidget(page)
    qtbot.waitUntil(lambda: page.table.rowCount() >= 2 and page.selected is not None,
                    timeout=30_000)
    stats = window.model.read(lambda m: dict(m.routes))
    for route in page.table.keys():
        check.same(cell_copy(qtbot, page.table, route, "req/s"), route, stats[route].rate)
        check.same(cell_copy(qtbot, page.table, route, "5xx"), route,
                   stats[route].error_ratio)
    route = page.selected
    qtbot.waitUntil(lambda: "all" in page.statuses.shown_keys(), timeout=30_000)
    check.same(legend_copy(qtbot, page.statuses, "all"), route,
               _last(window.model, "rate", route, check.t_ms))


def _cache_and_balancer(qtbot, window: MainWindow, check: Check) -> None:
    page = window.cache
    window.tabs.setCurrentWidget(page)
    rows = {r.route: r for r in window.model.read(lambda m: list(m.cache))
            if r.hits + r.misses > 0}
    assert rows  # _wait_for_history waited for cache hits
    qtbot.waitUntil(lambda: set(rows) <= set(page.table.keys()), timeout=30_000)
    for route, row in rows.items():
        check.same(cell_copy(qtbot, page.table, route, "hit ratio"), route, row.hit_ratio)
        check.same(cell_copy(qtbot, page.table, route, "hits/s"), route, row.hits)
    page = window.balancer
    window.tabs.setCurrentWidget(page)
    servers = {r.server: r for r in window.model.read(lambda m: list(m.share))}
    assert servers
    qtbot.waitUntil(lambda: set(servers) == set(page.table.keys()), timeout=30_000)
    for server, row in servers.items():
        check.same(cell_copy(qtbot, page.table, server, "observed"), server, row.observed,
                   by="server")
