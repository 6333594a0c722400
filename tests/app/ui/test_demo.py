"""The demo fleet end to end: real processes, real scrapes, the real window (offscreen)."""

from __future__ import annotations

import numpy as np
import pytest
from trimtab.agent.procs import alive
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages.fleet import FLEET_HEADERS
from trimtab.demo.fleet import DemoFleet


def test_fleet_has_three_instances_and_a_balancer(fleet: DemoFleet) -> None:
    kinds = sorted(t.kind for t in fleet.targets)
    assert kinds == ["balancer", "instance", "instance", "instance"]
    assert all(alive(pid) for pid in fleet.pids)
    assert len(fleet.pids) == 5  # three instances, balancer, traffic generator


def test_collector_receives_samples_from_every_target(qtbot, model: FleetModel) -> None:
    def all_up() -> None:
        health = model.read(lambda m: dict(m.health))
        assert set(health) == {"api-1", "api-2", "api-3", "balancer"}
        for h in health.values():
            assert h.up, h.error
            assert h.samples > 0

    qtbot.waitUntil(all_up, timeout=15_000)


def test_window_views_hold_live_data(qtbot, model: FleetModel) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.overview)

    def views_filled() -> None:
        assert {"/products/{id}", "/search", "/orders"} <= set(window.overview.latency.data)
        assert window.overview.latency.point_count() > 0
        assert window.overview.hit_ratio.point_count() > 0
        assert window.overview.share_time.point_count() > 0
        assert [r[0] for r in window.overview.share_bars.rows] == ["api-1", "api-2", "api-3"]

    qtbot.waitUntil(views_filled, timeout=20_000)
    # Equal weights: each backend expects a third and gets roughly a third.
    for _server, expected, observed in window.overview.share_bars.rows:
        assert expected == pytest.approx(1 / 3)
        assert 0.2 < observed < 0.47
    window.close()


def test_slow_routes_table_ranks_and_selects(qtbot, model: FleetModel) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.routes)
    table = window.routes.table
    qtbot.waitUntil(lambda: table.rowCount() >= 3, timeout=20_000)
    # Default ranking: time spent (p95 × rate), largest first.
    spent = [float(t.split()[0]) for t in table.column_texts(table.source.columnCount() - 1)]
    assert spent == sorted(spent, reverse=True)
    # p95 is shown with the bucket bounds it lies between, e.g. "36 ms (35.2–44)".
    assert all("(" in text and "–" in text for text in table.column_texts(2))
    assert table.select_key("/search")
    qtbot.waitUntil(lambda: window.routes.percentiles.point_count() > 0, timeout=10_000)
    assert set(window.routes.percentiles.data) == {"p50", "p95", "p99"}
    qtbot.waitUntil(lambda: set(window.routes.instances.data) == {"api-1", "api-2", "api-3"},
                    timeout=10_000)
    _, p50 = window.routes.percentiles.data["p50"]
    _, p99 = window.routes.percentiles.data["p99"]
    finite = np.isfinite(p50) & np.isfinite(p99)
    assert (p50[finite] <= p99[finite]).all()
    # Sorting by another column keeps the selection.
    table.sortItems(4)
    assert table.selected_key() == "/search"
    window.close()


def test_pause_freezes_the_views_while_collection_goes_on(qtbot, model: FleetModel) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.overview)
    qtbot.waitUntil(lambda: window.overview.latency.point_count() > 0, timeout=20_000)
    window.pause_action.trigger()
    frozen = window.overview.latency.point_count()
    version = model.version
    qtbot.waitUntil(lambda: model.version > version + 2, timeout=10_000)
    window.refresh()
    assert window.overview.latency.point_count() == frozen
    assert "PAUSED" in window.status.text()
    window.pause_action.trigger()
    qtbot.waitUntil(lambda: window.overview.latency.point_count() > frozen, timeout=10_000)
    window.close()


def test_fleet_page_lists_every_target_up(qtbot, model: FleetModel) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.fleet)
    qtbot.waitUntil(lambda: window.fleet.table.rowCount() == 4, timeout=20_000)
    qtbot.waitUntil(lambda: set(window.fleet.table.column_texts(FLEET_HEADERS.index("state"))) == {"up"}, timeout=10_000)
    window.close()


def test_cache_and_balancer_pages(qtbot, model: FleetModel) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.cache)
    qtbot.waitUntil(lambda: "/products/{id}" in window.cache.table.column_texts(0), timeout=20_000)
    assert window.cache.hit_ratio.point_count() > 0
    window.tabs.setCurrentWidget(window.balancer)
    qtbot.waitUntil(lambda: window.balancer.table.rowCount() == 3, timeout=20_000)
    assert window.balancer.table.column_texts(4) == ["33.3 %"] * 3  # expected share, equal weights
    assert set(window.balancer.table.column_texts(1)) == {"ready"}
    qtbot.waitUntil(lambda: window.balancer.latency.point_count() > 0, timeout=10_000)
    window.close()


def test_zoom_moves_every_chart_and_pauses_until_space(qtbot, model: FleetModel) -> None:
    from PySide6.QtGui import QKeySequence
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    chart = window.routes.percentiles
    chart.plot.getPlotItem().getViewBox().setXRange(1000.0, 2000.0, padding=0)
    chart._manual_range()  # what pyqtgraph's mouse zoom emits
    assert window.paused
    for other in window.charts:
        x0, x1 = other.x_window()
        assert (round(x0), round(x1)) == (1000, 2000)
    assert window.pause_action.shortcut() == QKeySequence("Space")
    window.pause_action.trigger()  # offscreen windows are not reliably active for key events
    assert not window.paused
    x0, x1 = window.overview.latency.x_window()
    # live again: the live window, or from the first data while the history is shorter
    assert x0 == pytest.approx(window._live_start(x1)) and x0 > 2000
    assert 0 < x1 - x0 <= window.live_window * 1.01
    window.close()


def test_theme_switch_recolours_the_charts(qtbot, model: FleetModel) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.set_theme("light")
    assert window.overview.latency.plot.backgroundBrush().color().name() == "#ffffff"
    window.set_theme("dark")
    assert window.overview.latency.plot.backgroundBrush().color().name() == "#111418"
    window.close()


def test_export_the_charts_of_a_page(qtbot, model: FleetModel, tmp_path) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.overview)
    qtbot.waitUntil(lambda: window.overview.latency.point_count() > 0, timeout=20_000)
    written = window.export_page(str(tmp_path / "incident.csv"))
    assert len(written) == 3
    with open(written[0]) as fh:
        header = fh.readline().strip().split(",")
    assert header[0] == "time (unix s)" and "/search (s)" in header  # seconds, said so
    window.close()


def test_traces_page_filters_and_shows_a_waterfall(qtbot, model: FleetModel) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.routes)
    qtbot.waitUntil(lambda: window.routes.table.select_key("/search"), timeout=20_000)
    window.routes.traces_button.click()  # the jump from a slow route to example traces
    assert window.tabs.currentWidget() is window.traces
    assert window.traces.route.currentText() == "/search"
    threshold = window.traces.min_ms.value()
    assert threshold > 0  # the route's p95
    qtbot.waitUntil(lambda: window.traces.table.rowCount() > 0, timeout=20_000)
    durations = [t["duration_ms"] for t in window.traces._by_key.values()]
    assert all(d >= threshold for d in durations)
    assert set(window.traces.table.column_texts(1)) == {"/search"}
    qtbot.waitUntil(lambda: len(window.traces.waterfall.spans) >= 2, timeout=10_000)
    request, *children = window.traces.waterfall.spans
    assert request[0] == "GET /search" and request[1] == 0.0
    assert all(child[1] + child[2] <= request[2] + 1.0 for child in children)
    window.close()


def test_cache_page_shows_ttls_and_flags_instances_that_disagree(qtbot, fleet: DemoFleet,
                                                                  model: FleetModel) -> None:
    import httpx
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()
    window.tabs.setCurrentWidget(window.cache)
    route = "/products/{id}"

    def ttl_cell() -> str:
        texts = dict(zip(window.cache.table.column_texts(0), window.cache.table.column_texts(1)))
        return texts.get(route, "")

    qtbot.waitUntil(lambda: ttl_cell() == "10 s", timeout=20_000)
    canary = next(t for t in fleet.targets if t.name == "api-3").url.removesuffix("/metrics")
    auth = {"authorization": f"Bearer {fleet.write_token}"}
    etag = httpx.get(f"{canary}/_trimtab/config", headers=auth).headers["etag"]
    patch = {"routes": {route: {"ttl": 30}}, "reason": "canary"}
    assert httpx.patch(f"{canary}/_trimtab/config", json=patch,
                       headers={**auth, "if-match": etag}).status_code == 200
    try:
        qtbot.waitUntil(lambda: ttl_cell() == "10 s on api-1, api-2 · 30 s on api-3",
                        timeout=15_000)
        assert route in window.cache.table.source.highlight
    finally:
        etag = httpx.get(f"{canary}/_trimtab/config", headers=auth).headers["etag"]
        httpx.patch(f"{canary}/_trimtab/config", json={"routes": {route: {"ttl": 10}}},
                    headers={**auth, "if-match": etag})
    window.close()


def test_stop_leaves_no_child_process() -> None:
    fleet = DemoFleet(rps=20.0)
    fleet.start()
    pids = fleet.pids
    assert all(alive(pid) for pid in pids)
    fleet.stop()
    assert not [pid for pid in pids if alive(pid)]
