"""Copy as PromQL in the real window on synthetic scrapes: what each page copies is the model's
own expression (FleetModel.promql) for the exact series shown, route or backend filled in;
combined cells are the model's expressions combined; numbers with no PromQL say so.
That the expressions evaluate to the shown numbers in Prometheus: test_promql_prometheus.py.
"""

from __future__ import annotations

import pytest
from PySide6.QtGui import QGuiApplication
from trimtab.app.model.expiry import INSTANCE_SEP
from trimtab.app.model.fleet import FleetModel, limit_key
from trimtab.app.slo.definition import SLO
from trimtab.app.ui.pages import promql
from trimtab.app.ui.window import MainWindow
from trimtab.widgets.promql_menu import NoPromql

from tests.app.ui.promql_gui import cell_copy, curves_of, legend_copy, shortcut_copy
from tests.app.ui.test_overview_window import Feed

ODD = "<other>"  # the agent's fold of routes over its cap: a tag to a rich-text tooltip


@pytest.fixture
def window(qtbot) -> MainWindow:
    window = MainWindow(FleetModel(), refresh_hz=50)
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    qtbot.waitExposed(window)
    feed = Feed(window.model)
    window.clock = feed.clock
    feed.routes = {"/a": (40.0, 0.04), ODD: (20.0, 0.2)}
    feed.statuses = {"200": 0.9, "503": 0.1}
    feed.step(15)
    return window


def test_overview_copies_the_models_expression_of_each_curve(qtbot, window) -> None:
    model, page = window.model, window.overview
    window.tabs.setCurrentWidget(page)
    window._force_refresh()
    every = curves_of(shortcut_copy(qtbot, page.latency.plot))
    assert every == {r: model.promql("p95", r) for r in ("/a", ODD)}
    assert legend_copy(qtbot, page.share_time, "api-2") == model.promql("share", "api-2")
    bars = curves_of(shortcut_copy(qtbot, page.share_bars.plot))
    assert bars["api-1 observed"] == model.promql("share", "api-1")
    assert bars["api-1 expected"] == 'trimtab_balancer_expected_share{server="api-1"}'


def test_routes_table_cells_fill_in_the_route(qtbot, window) -> None:
    model, page = window.model, window.routes
    window.tabs.setCurrentWidget(page)
    window._force_refresh()
    qtbot.waitUntil(lambda: set(page.table.keys()) == {"/a", ODD}, timeout=10_000)
    assert cell_copy(qtbot, page.table, ODD, "req/s") == model.promql("rate", ODD)
    assert cell_copy(qtbot, page.table, ODD, "5xx") == model.promql("error_ratio", ODD)
    assert cell_copy(qtbot, page.table, "/a", "2xx") == (
        f"({model.promql('rate_2xx', '/a')}) / ({model.promql('rate', '/a')})")
    assert cell_copy(qtbot, page.table, "/a", "p99 (bucket)") == model.promql("p99", "/a")
    assert cell_copy(qtbot, page.table, "/a", "time spent (p95 × rate)") == (
        f"({model.promql('p95', '/a')}) * ({model.promql('rate', '/a')})")
    # the header names the column's expression for every route, the route escaped for HTML
    assert "sum by (route) (rate(trimtab_http_requests_total[10s]))" in \
        page.table.column_tooltip(page.table.source.headers.index("req/s"))


def test_selected_route_charts_copy_that_routes_series(qtbot, window) -> None:
    model, page = window.model, window.routes
    window.tabs.setCurrentWidget(page)
    page.table.select_key(ODD)
    window._force_refresh()
    qtbot.waitUntil(lambda: page.selected == ODD and "api-1" in page.instances.shown_keys(),
                    timeout=10_000)
    assert legend_copy(qtbot, page.instances, "api-1") == model.promql(
        "p95_instance", f"{ODD}{INSTANCE_SEP}api-1")
    assert legend_copy(qtbot, page.percentiles, "p50") == model.promql("p50", ODD)
    assert legend_copy(qtbot, page.statuses, "5xx") == model.promql("rate_5xx", ODD)
    assert legend_copy(qtbot, page.errors, "5xx %") == model.promql("error_ratio", ODD)
    assert shortcut_copy(qtbot, page.heatmap.plot) == model.promql("heat", ODD)
    # a tooltip over the title: every curve, the route escaped (else "<other>" vanishes)
    title = page.percentiles.plot.getPlotItem().titleLabel.sceneBoundingRect().center()
    assert "&lt;other&gt;" in page.percentiles.promql_tooltip(title)
    assert QGuiApplication.clipboard().text() == model.promql("heat", ODD)


def test_a_trace_duration_says_it_has_no_promql(window) -> None:
    table = window.traces.table
    tip = table.column_tooltip(table.source.headers.index("duration"))
    assert "no PromQL equivalent" in tip and "trace" in tip
    assert table.column_tooltip(table.source.headers.index("route")) == ""


def test_cache_cells_narrow_the_models_expression_to_one_result() -> None:
    model = FleetModel()
    cell = promql.cache_cell(model)
    assert cell("/a", "hits/s") == (
        'sum by (route, result) (rate(trimtab_cache_requests_total{result="hit",route="/a"}'
        "[10s]))")
    assert cell(None, "bypasses/s") == (
        'sum by (route, result) (rate(trimtab_cache_requests_total{result="bypass"}[10s]))')
    assert cell("/a", "hit ratio") == model.promql("hit_ratio", "/a")
    assert cell("/a", "TTL (per instance)") is None


def test_limit_cells_narrow_every_selector_to_the_rows_instance() -> None:
    model = FleetModel()
    cell = promql.limit_cell(model, lambda row: tuple(row.split("|")))
    expr = cell("api-1|search|/search", "limited/s")
    assert isinstance(expr, str)
    whole = model.promql("limit_limited", limit_key("/search", "search"))
    assert expr == whole.replace("trimtab_ratelimit_requests_total{",
                                 'trimtab_ratelimit_requests_total{instance="api-1",')
    assert expr.count('instance="api-1"') == 2
    assert cell("api-1|search|/search", "burst") is None


@pytest.mark.parametrize(("expr", "want"), [
    ("rate(m[5s])", 'rate(m{l="v"}[5s])'),
    ('rate(m{a="b"}[5s])', 'rate(m{l="v",a="b"}[5s])'),
    ("rate(m_total[5s]) + rate(m:x[5s])", "rate(m_total[5s]) + rate(m:x[5s])"),  # other names
    ("sum(am[5s])", "sum(am[5s])"),  # a name ending in the metric's
    ("sum(m) / scalar(sum(m))", 'sum(m{l="v"}) / scalar(sum(m{l="v"}))'),
])
def test_narrowed_adds_the_matcher_to_that_metric_only(expr: str, want: str) -> None:
    assert promql.narrowed(expr, "m", "l", "v") == want


def test_narrowed_quotes_the_value() -> None:
    assert promql.narrowed("m", "m", "instance", 'a"b\\') == 'm{instance="a\\"b\\\\"}'


def test_slo_cells_and_one_beyond_the_buckets() -> None:
    ok = SLO(name="avail", route="/a", kind="availability", objective=0.99)
    far = SLO(name="slow", route="/a", kind="latency", objective=0.99, threshold_s=60.0)
    cell = promql.slo_cell({"avail": ok, "slow": far}.get)
    burn = cell("avail", "fast burn (1 h / 5 min)")
    assert isinstance(burn, str) and burn.splitlines()[0] == "# 1 h"
    assert "[1h]" in burn and "[5m]" in burn and burn.count("/ 0.01") == 2
    assert cell("avail", "SLI now (5 min)").startswith("1 - ((")
    refused = cell("slow", "budget left")
    assert isinstance(refused, NoPromql) and "beyond the largest bucket" in refused.reason
    assert cell("avail", "history") is None and cell(None, "budget left") is None
