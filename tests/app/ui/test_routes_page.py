"""The Routes page an observability operator expects (issue 20.10, 21.4), on real widgets.

The model is fed real /metrics of a real agent (tests.app.model.test_status_classes), plus
an OpenTelemetry exposition without ``http_route`` mapped by the built-in tables, as the
scrape engine would hand them over. The demo test drives the real fleet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from trimtab.app.cli.main import start_collection
from trimtab.app.model import format as fmt
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages.cache import CachePage
from trimtab.app.ui.pages.routes import ROUTE_HEADERS, RoutesPage, byte_size
from trimtab.app.ui.window import MainWindow
from trimtab.collectors.exposition import parse
from trimtab.collectors.mappings import builtin_tables, normalise
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget
from trimtab.demo.fleet import DemoFleet

from tests.app.model.test_status_classes import MIX, agent_scrapes

SHOTS = Path(os.environ.get("TRIMTAB_SHOTS", "/tmp/shots"))
API = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
OTEL = ScrapeTarget("otel", "http://127.0.0.1:2/metrics")


def _otel(n: int) -> str:
    """Stable-convention OTel histogram of a plain ASGI app: no http_route label."""
    labels = 'http_request_method="GET",http_response_status_code="200"'
    return ("# TYPE http_server_request_duration_seconds histogram\n"
            f'http_server_request_duration_seconds_bucket{{{labels},le="0.1"}} {n}\n'
            f'http_server_request_duration_seconds_bucket{{{labels},le="+Inf"}} {n}\n'
            f"http_server_request_duration_seconds_count{{{labels}}} {n}\n"
            f"http_server_request_duration_seconds_sum{{{labels}}} {n * 0.01}\n")


@pytest.fixture(autouse=True)
def _forget_filters() -> Iterator[None]:
    """Filters are remembered in the settings, which every test of this process shares: a
    text left behind would filter another test's tables."""
    QSettings("trimtab", "trimtab").remove("filter")
    yield
    QSettings("trimtab", "trimtab").remove("filter")


@pytest.fixture(scope="module")
def model() -> FleetModel:
    model = FleetModel(rate_window=10.0)
    tables = builtin_tables()
    for t, text, n in zip((100.0, 105.0), agent_scrapes(), (1000, 2000), strict=True):
        model.ingest(ScrapeResult(API, t, True, 0.01, parse(text), ""))
        model.ingest(ScrapeResult(OTEL, t, True, 0.01, normalise(parse(_otel(n)), tables), ""))
        model.tick(t)
    return model


@pytest.fixture()
def page(qtbot, model: FleetModel) -> RoutesPage:
    page = RoutesPage(model)
    qtbot.addWidget(page)
    page.since = lambda: 0.0
    page.resize(1366, 768)
    page.refresh(0.0)
    return page


def _cells(page: RoutesPage, route: str) -> dict[str, str]:
    keys = page.table.column_texts(0)
    row = next(i for i, text in enumerate(keys) if text == route or text.startswith(route + " "))
    return {h: page.table.column_texts(c)[row] for c, h in enumerate(ROUTE_HEADERS)}


def test_table_shows_status_classes_and_size(page: RoutesPage) -> None:
    total = sum(MIX.values())
    mixed = _cells(page, "/mixed")
    # 429 has its own column: 4xx holds the 404s only.
    for cls, n in {"2xx": 6, "3xx": 1, "4xx": 3, "429": 2, "5xx": 4}.items():
        assert mixed[cls].endswith(" %")
        assert float(mixed[cls].removesuffix(" %")) == pytest.approx(100 * n / total, abs=0.051)
    search = _cells(page, "/search")
    assert search["size (mean)"] == "592 B"  # pages of 16, 160 and 1600 bytes
    assert search["2xx"] == "100.0 %" and search["5xx"] == "0.0 %"


def test_unlabelled_route_says_why_and_is_not_selected_first(page: RoutesPage) -> None:
    row = _cells(page, "?")
    assert row["route"] == "? — 200.0/s folded: no http.route label (see README)"
    assert not page.fold_note.isHidden()
    assert "no http.route label" in page.fold_note.text()
    assert "README's instrumentation table" in page.fold_note.text()
    assert row["size (mean)"] == "–"  # OTel sends no body size
    # It costs the most time (200 req/s), yet the charts open on a real route.
    assert page.table.column_texts(0)[0].startswith("? — ")
    assert page.selected == "/search" or page.selected == "/mixed"
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert page.grab().save(str(SHOTS / "D_routes_fold.png"))


def test_selected_route_charts_rate_by_class_errors_and_size(page: RoutesPage,
                                                             model: FleetModel) -> None:
    page.select_route("/mixed")
    assert set(page.statuses.data) == {"all", "2xx", "3xx", "4xx", "429", "5xx"}
    _, rate_all = page.statuses.data["all"]
    assert rate_all[-1] == pytest.approx(model.routes["/mixed"].rate)
    _, rate_429 = page.statuses.data["429"]
    assert rate_429[-1] == pytest.approx(model.routes["/mixed"].status_rates["429"])
    _, err = page.errors.data["5xx %"]
    assert err[-1] == pytest.approx(100 * 4 / sum(MIX.values()))
    # Scaled to the data (25 %), not pinned to 0–100 %.
    page.errors.plot.getPlotItem().getViewBox().autoRange()
    top = page.errors.plot.getPlotItem().getViewBox().viewRange()[1][1]
    assert top < 50.0
    page.select_route("/search")
    assert set(page.statuses.data) == {"all", "2xx"}  # no legend entry for a class never seen
    # No errors: 0 % at the bottom of a 0–1 % axis, not ±float noise around zero.
    page.errors.plot.getPlotItem().getViewBox().autoRange()
    low, high = page.errors.plot.getPlotItem().getViewBox().viewRange()[1]
    assert low == 0.0 and 1.0 <= high < 2.0
    _, size = page.sizes.data["bytes per response"]
    assert size[-1] == pytest.approx(592.0)


def test_filter_leaves_only_matching_rows_and_is_remembered(qtbot, page: RoutesPage,
                                                            model: FleetModel) -> None:
    qtbot.keyClicks(page.filter.edit, "search")
    assert page.table.column_texts(0) == ["/search"]
    again = RoutesPage(model)
    qtbot.addWidget(again)
    again.refresh(0.0)
    assert again.filter.edit.text() == "search"
    assert again.table.column_texts(0) == ["/search"]
    page.filter.edit.clear()
    assert page.table.rowCount() == 3


def test_agent_fold_rows_say_why(qtbot) -> None:
    def text(n: int) -> str:
        lines = []
        for route in ("<other>", "<unmatched>", "/real"):
            lines += [f'trimtab_http_request_duration_seconds_bucket{{route="{route}",le="0.1"}} {n}',
                      f'trimtab_http_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {n}',
                      f'trimtab_http_requests_total{{route="{route}",status="404"}} {n}']
        return "\n".join(lines) + "\n"

    model = FleetModel()
    for t, n in ((100.0, 0), (101.0, 10)):
        model.ingest(ScrapeResult(API, t, True, 0.01, parse(text(n)), ""))
    model.tick(101.0)
    page = RoutesPage(model)
    qtbot.addWidget(page)
    page.refresh(0.0)
    texts = page.table.column_texts(0)
    rate = fmt.rate(model.routes["<other>"].rate)
    assert f"<other> — {rate} folded: over the agent's route cap" in texts
    assert f"<unmatched> — {rate} unmatched: no route matched" in texts
    assert "max_routes" in page.fold_note.text() and "404s" in page.fold_note.text()
    assert page.selected == "/real"  # equal cost: the real route is shown, not a fold


def test_cache_page_has_its_own_remembered_filter(qtbot, page: RoutesPage,
                                                  model: FleetModel) -> None:
    cache = CachePage(model)
    qtbot.addWidget(cache)
    cache.refresh(0.0)
    assert {"/search", "/mixed"} <= set(cache.table.column_texts(0))
    qtbot.keyClicks(cache.filter.edit, "/mi*")
    assert cache.table.column_texts(0) == ["/mixed"]
    assert page.filter.edit.text() == ""  # the Routes page keeps its own
    assert page.table.rowCount() == 3


@pytest.mark.parametrize(("n", "text"), [(0.0, "0 B"), (592.0, "592 B"), (1536.0, "1.5 KiB"),
                                         (3 * 2**20, "3.0 MiB"), (float("nan"), "–")])
def test_byte_size(n: float, text: str) -> None:
    assert byte_size(n) == text


@pytest.fixture(scope="module")
def model_demo(fleet: DemoFleet) -> Iterator[FleetModel]:
    """A model collecting from the real demo fleet (the package's ``model`` is this module's
    real-scrape model here)."""
    model = FleetModel()
    engine = start_collection(fleet, model)
    try:
        yield model
    finally:
        engine.stop()


@pytest.mark.slow
def test_demo_routes_page_filter_and_screenshot(qtbot, model_demo: FleetModel) -> None:
    window = MainWindow(model_demo)
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    window.tabs.setCurrentWidget(window.routes)
    qtbot.waitUntil(lambda: window.routes.table.rowCount() >= 3, timeout=60_000)
    qtbot.waitUntil(lambda: window.routes.table.select_key("/search"), timeout=20_000)
    # Enough points that the screenshot shows lines, not dots at the right edge.
    qtbot.waitUntil(lambda: window.routes.statuses.point_count() >= 20, timeout=60_000)
    qtbot.waitUntil(lambda: bool(window.routes.sizes.data)
                    and np.isfinite(window.routes.sizes.data["bytes per response"][1]).any(),
                    timeout=30_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert window.grab().save(str(SHOTS / "D_routes_demo.png"))
    qtbot.keyClicks(window.routes.filter.edit, "search")
    routes = window.routes.table.column_texts(0)
    assert routes and all("search" in r for r in routes)
    count = window.routes.filter.count
    qtbot.waitUntil(lambda: count.width() >= count.sizeHint().width(), timeout=5_000)
    assert count.text() == f"{len(routes)} of {window.routes.table.source.rowCount()} routes"
    assert window.grab().save(str(SHOTS / "D_routes_demo_filtered.png"))
    window.routes.filter.edit.clear()
    window.close()
