"""The Cache, Balancer, Traces and Journal tables on the demo fleet's real data (issue 20.11,
issue 21.5): every route listed, rates labelled as rates, no action on an unselected row,
one natural order, headers that fit, one row per fleet-wide change, reverts linked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from trimtab.app.cli.main import make_tuning
from trimtab.app.control import types as ctl
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages.balancer import NO_LATENCY_HISTOGRAM, BalancerPage
from trimtab.app.ui.pages.cache import NOT_CACHED, CachePage
from trimtab.app.ui.pages.journal import JournalPage, revert_prompt
from trimtab.app.ui.pages.traces import DURATION_COLUMN, TracesPage
from trimtab.app.ui.tuning import Tuning
from trimtab.demo.fleet import DemoFleet

from .test_tuning_gui import DialogDriver

ROUTES = {"/products/{id}", "/search", "/orders"}


@pytest.fixture()
def cache_page(qtbot, model: FleetModel) -> Iterator[CachePage]:
    page = CachePage(model)
    qtbot.addWidget(page)
    page.show()

    def all_routes() -> None:
        page.refresh(0.0)
        assert set(page.table.column_texts(0)) == ROUTES
        assert page.table.column_texts(1).count(NOT_CACHED) == 2  # configs read

    qtbot.waitUntil(all_routes, timeout=20_000)
    yield page


def test_cache_page_lists_every_route_and_says_which_are_not_cached(cache_page) -> None:
    table = cache_page.table
    ttl = dict(zip(table.column_texts(0), table.column_texts(1), strict=True))
    assert ttl["/search"] == ttl["/orders"] == NOT_CACHED == "not cached (TTL 0)"
    assert ttl["/products/{id}"] == "10 s"
    hits = dict(zip(table.column_texts(0), table.column_texts(3), strict=True))
    assert hits["/search"] == "–" and hits["/products/{id}"].endswith("/s")
    # rates are labelled as rates
    assert table.source.headers[3:6] == ["hits/s", "misses/s", "bypasses/s"]
    # the cached route first (by lookups), the uncached ones after it
    assert table.column_texts(0)[0] == "/products/{id}"


def test_change_ttl_waits_for_a_selected_route(qtbot, cache_page) -> None:
    page = cache_page
    page.set_write_access(True, "")
    assert page.table.selected_key() is None
    for button in (page.change_button, page.invalidate_button):
        assert not button.isEnabled()
        assert "Select a route" in button.toolTip()
    with qtbot.assertNotEmitted(page.ttl_requested, wait=0):
        page.change_button.click()  # disabled: never the first row by default
        page._ask_ttl()  # even called directly, no route is made up
    assert page.table.select_key("/search")
    assert page.change_button.isEnabled() and page.invalidate_button.isEnabled()
    with qtbot.waitSignal(page.ttl_requested) as asked:
        page.change_button.click()
    assert asked.args == ["/search"]
    page.set_write_access(False, "this token has read scope only")
    assert not page.change_button.isEnabled()
    assert "read scope" in page.change_button.toolTip()  # the token's reason wins


@pytest.fixture()
def balancer_page(qtbot, model: FleetModel) -> Iterator[BalancerPage]:
    page = BalancerPage(model)
    qtbot.addWidget(page)
    page.show()

    def filled() -> None:
        page.refresh(0.0)
        assert page.table.rowCount() == 3

    qtbot.waitUntil(filled, timeout=20_000)
    yield page


def test_balancer_rows_and_bars_share_one_natural_order(balancer_page) -> None:
    page = balancer_page
    assert page.table.column_texts(0) == ["api-1", "api-2", "api-3"]
    assert [r[0] for r in page.bars.rows] == ["api-1", "api-2", "api-3"]


def test_balancer_latency_chart_draws_the_built_in_balancer(qtbot, balancer_page) -> None:
    # The built-in balancer has a latency histogram per backend: its chart draws it
    # (HAProxy's exporter has none: test_tables_haproxy.py).
    page = balancer_page
    qtbot.waitUntil(lambda: (page.refresh(0.0), page.latency.point_count() > 0)[1],
                    timeout=20_000)
    assert page.latency_empty_text() != NO_LATENCY_HISTOGRAM


def test_traces_open_slowest_first(qtbot, model: FleetModel) -> None:
    page = TracesPage(model)
    qtbot.addWidget(page)
    page.show()

    def some() -> None:
        page.refresh(0.0)
        assert page.table.rowCount() >= 20

    qtbot.waitUntil(some, timeout=20_000)
    header = page.table.horizontalHeader()
    assert header.sortIndicatorSection() == DURATION_COLUMN
    assert header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    keys = [page.table.proxy.index(r, DURATION_COLUMN).data(Qt.ItemDataRole.UserRole + 1)
            for r in range(page.table.rowCount())]
    assert keys == sorted(keys, reverse=True)
    assert page.table.selected_key() is not None  # the slowest one's waterfall shows


def test_every_header_fits_at_1366x768(qtbot, model: FleetModel, fleet: DemoFleet) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    for page in (window.cache, window.balancer, window.traces, window.journal):
        window.tabs.setCurrentWidget(page)
        qtbot.waitUntil(lambda p=page: p is window.journal or p.table.rowCount() > 0,
                        timeout=20_000)
        header = page.table.horizontalHeader()
        for i, text in enumerate(page.table.source.headers):
            assert header.sectionSize(i) >= header.sectionSizeHint(i), text
            tip = page.table.model().headerData(i, Qt.Orientation.Horizontal,
                                                Qt.ItemDataRole.ToolTipRole)
            assert tip, text
    # The balancer table shows all its columns beside the bars without scrolling sideways.
    window.tabs.setCurrentWidget(window.balancer)
    table = window.balancer.table
    qtbot.waitUntil(lambda: table.horizontalScrollBar().maximum() == 0, timeout=5_000)
    window.close()


# --- the journal, from the demo fleet's real agents (changes them: keep these last) --------


@pytest.fixture()
def tuning(qtbot, fleet: DemoFleet) -> Iterator[Tuning]:
    tuning = make_tuning(fleet.write_token, fleet.targets)
    yield tuning
    tuning.close()


def journal(tuning: Tuning) -> list[ctl.JournalRow]:
    rows, errors = tuning.client.journal(tuning.sources)
    assert not errors
    return rows


def test_journal_groups_a_fleet_wide_change_and_links_its_revert(qtbot, tuning: Tuning) -> None:
    client = tuning.client
    reads = client.read_configs(tuning.instances)
    assert client.set_ttl(tuning.instances, "/products/{id}", 20.0, "cache longer",
                          ctl.expected_etags(reads)).ok
    state = client.read_balancer(tuning.balancer)
    assert client.set_weights(tuning.balancer, {"api-3": 0}, "drain the slow one",
                              state.etag).ok
    weight = next(r for r in journal(tuning) if r.what.startswith("servers."))
    assert client.revert(weight, "undo the drain").status == ctl.APPLIED
    page = JournalPage(tuning)
    qtbot.addWidget(page)
    page.show_rows(journal(tuning))
    texts = {c: page.table.column_texts(c) for c in range(page.table.source.columnCount())}
    where, result = texts[2], texts[6]
    # one row for the change made on three instances, naming them
    ttl_rows = [i for i, t in enumerate(texts[4]) if "TTL of" in t]
    assert len(ttl_rows) == 1
    assert where[ttl_rows[0]] == "api-1, api-2, api-3 #1"  # each instance's first change
    assert texts[4][ttl_rows[0]] == "TTL of /products/{id}: 10 s → 20 s"
    # the balancer is named once, the drain marked as undone by the revert, which links back
    assert "balancer balancer" not in where
    drain = texts[4].index("api-3 weight: 1 → 0")
    undo = texts[4].index("api-3 weight: 0 → 1")
    assert (where[drain], where[undo]) == (f"balancer #{weight.id}", f"balancer #{weight.id + 1}")
    assert texts[3][drain] == texts[3][undo] == "server weight"  # the server is in old → new
    assert result[drain] == f"accepted · undone by #{weight.id + 1}"
    assert result[undo] == f"accepted · undoes #{weight.id}"
    assert page.table.select_key(page.keys_in_order()[drain])
    # the prompt says what undoing does, not the change again
    assert revert_prompt(page.selected_group()) == (
        f"Undo change #{weight.id} on balancer: set api-3 weight back from 0 to 1?")


def test_revert_prompt_of_a_grouped_change_undoes_it_everywhere(qtbot, tuning: Tuning,
                                                                fleet: DemoFleet) -> None:
    page = JournalPage(tuning)
    qtbot.addWidget(page)
    page.set_write_access(True, "")
    page.show_rows(journal(tuning))
    row = page.table.column_texts(4).index("TTL of /products/{id}: 10 s → 20 s")
    assert page.table.select_key(page.keys_in_order()[row])
    driver = DialogDriver()
    driver.expect(driver.click("Yes"))
    try:
        page.revert_button.click()
        driver.wait_done(qtbot)
    finally:
        driver.stop()
    assert driver.texts == ["Undo this change on api-1, api-2, api-3: set the TTL of "
                            "/products/{id} back from 20 s to 10 s?"]

    def reverted() -> None:
        configs = tuning.client.read_configs(tuning.instances)
        assert {r.ttl("/products/{id}") for r in configs.values()} == {10.0}

    qtbot.waitUntil(reverted, timeout=15_000)
    page.show_rows(journal(tuning))
    row = page.table.column_texts(4).index("TTL of /products/{id}: 10 s → 20 s")
    assert page.table.column_texts(6)[row].startswith("accepted · undone by #")
    assert page.table.column_texts(4).count("TTL of /products/{id}: 20 s → 10 s") == 1
