"""The instances chart of a route served by many instances: the slowest few, said so.

200 instances' p95 lines are a blur under a legend taller than the chart, and pyqtgraph
lays a legend out in time quadratic in its entries (a first view of the Routes page took
~1 s of the GUI thread at 200 targets). The model is fed real expositions, parsed as the
scrape engine parses them.
"""

from __future__ import annotations

import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages.routes import INSTANCE_LINES, RoutesPage
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

BOUNDS = ("0.01", "0.1", "1.0", "+Inf")


def _scrape(slow: int, requests: int) -> str:
    """An agent's latency histogram of one route: ``slow`` of every 100 requests took
    0.01–0.1 s, the others under 0.01 s (the p95 grows with ``slow``)."""
    fast = requests * (100 - slow) // 100
    counts = (fast, requests, requests, requests)
    labels = 'method="GET",route="/orders",status="200"'
    lines = ["# TYPE trimtab_http_request_duration_seconds histogram"]
    lines += [f'trimtab_http_request_duration_seconds_bucket{{{labels},le="{le}"}} {c}'
              for le, c in zip(BOUNDS, counts, strict=True)]
    lines += [f"trimtab_http_request_duration_seconds_count{{{labels}}} {requests}",
              f"trimtab_http_request_duration_seconds_sum{{{labels}}} {requests * 0.02}",
              "# TYPE trimtab_http_requests_total counter",
              f'trimtab_http_requests_total{{{labels}}} {requests}']
    return "\n".join(lines) + "\n"


def _fleet(instances: int) -> FleetModel:
    """Instance ``api-07`` has 7 % of its requests slow: the higher the number, the slower."""
    model = FleetModel(rate_window=10.0)
    for t, requests in ((100.0, 1000), (105.0, 2000)):
        for i in range(instances):
            target = ScrapeTarget(f"api-{i:02d}", f"http://127.0.0.1:{9000 + i}/metrics")
            model.ingest(ScrapeResult(target, t, True, 0.01, parse(_scrape(i, requests)), ""))
        model.tick(t)
    return model


def test_an_instance_that_left_holds_no_place_among_the_slowest() -> None:
    model = _fleet(12)
    gone = ScrapeTarget("api-gone", "http://127.0.0.1:8999/metrics")
    for t, requests in ((100.0, 1000), (105.0, 2000)):  # the slowest of all, then it left
        model.ingest(ScrapeResult(gone, t, True, 0.01, parse(_scrape(90, requests)), ""))
    model.tick(105.0)
    series, _ = model.slowest_instances("/orders", 3)
    assert "api-gone" in series  # still reporting at the route's newest tick
    for t, requests in ((110.0, 3000), (115.0, 4000), (120.0, 5000), (125.0, 6000)):
        for i in range(12):
            target = ScrapeTarget(f"api-{i:02d}", f"http://127.0.0.1:{9000 + i}/metrics")
            model.ingest(ScrapeResult(target, t, True, 0.01, parse(_scrape(i, requests)), ""))
        model.tick(t)
    series, total = model.slowest_instances("/orders", 3)
    assert sorted(series) == ["api-09", "api-10", "api-11"] and total == 12
    assert "api-gone" in model.instance_series("/orders")  # its series is kept, not drawn


def test_a_bad_count_is_refused() -> None:
    model = _fleet(2)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="positive number of instances"):
            model.slowest_instances("/orders", bad)


def test_the_slowest_by_their_newest_p95_and_how_many_there_are() -> None:
    model = _fleet(30)
    series, total = model.slowest_instances("/orders", 10)
    assert total == 30
    assert sorted(series) == [f"api-{i:02d}" for i in range(20, 30)]
    assert sorted(model.slowest_instances("/orders", 1)[0]) == ["api-29"]
    everyone = model.instance_series("/orders")
    assert len(everyone) == 30
    for name, (t, v) in series.items():  # the same series the full read gives
        assert (list(t), list(v)) == (list(everyone[name][0]), list(everyone[name][1]))
    few, total = model.slowest_instances("/orders", 50)
    assert total == 30 and sorted(few) == sorted(everyone)
    assert model.slowest_instances("/nowhere", 10) == ({}, 0)


def test_the_page_draws_the_slowest_and_its_title_says_so(qtbot) -> None:
    model = _fleet(3 * INSTANCE_LINES)
    page = RoutesPage(model)
    qtbot.addWidget(page)
    page.since = lambda: 0.0
    page.resize(1366, 768)
    page.refresh(0.0)
    page.select_route("/orders")
    title = page.instances.plot.getPlotItem().titleLabel.text
    assert (f"p95 per instance: {INSTANCE_LINES} of the {2 * INSTANCE_LINES} slowest of "
            f"{3 * INSTANCE_LINES}") in title
    slowest = {f"api-{i:02d}" for i in range(2 * INSTANCE_LINES, 3 * INSTANCE_LINES)}
    assert set(page.instances.data) == slowest
    assert len(page.instances.legend.items) == INSTANCE_LINES


def test_a_route_of_up_to_2n_instances_says_n_of_how_many(qtbot) -> None:
    model = _fleet(INSTANCE_LINES + 2)
    page = RoutesPage(model)
    qtbot.addWidget(page)
    page.since = lambda: 0.0
    page.refresh(0.0)
    page.select_route("/orders")
    title = page.instances.plot.getPlotItem().titleLabel.text
    assert f"p95 per instance: {INSTANCE_LINES} of {INSTANCE_LINES + 2}, the slowest" in title


def test_a_route_of_few_instances_draws_them_all_under_the_plain_title(qtbot) -> None:
    model = _fleet(4)
    page = RoutesPage(model)
    qtbot.addWidget(page)
    page.since = lambda: 0.0
    page.refresh(0.0)
    page.select_route("/orders")
    assert "p95 per instance of /orders" in page.instances.plot.getPlotItem().titleLabel.text
    assert set(page.instances.data) == {f"api-{i:02d}" for i in range(4)}


def test_a_shown_instance_keeps_its_place_while_among_the_2n_slowest() -> None:
    model = _fleet(30)  # api-29 the slowest, api-00 the fastest
    shown = {"api-21", "api-22", "api-12"}  # two among the 10 slowest, one not
    series, total = model.slowest_instances("/orders", 5, shown=shown)
    assert total == 30
    # the slowest always; the two shown within the 10 slowest stay; api-12 (18th) does not;
    # the places left go by rank
    assert sorted(series) == ["api-21", "api-22", "api-27", "api-28", "api-29"]
    # all shown within the 10 slowest but not the slowest: it takes the lowest-ranked's place
    shown = {f"api-{i}" for i in range(20, 25)}
    assert sorted(model.slowest_instances("/orders", 5, shown=shown)[0]) == [
        "api-21", "api-22", "api-23", "api-24", "api-29"]
    # nothing shown: the plain top n
    assert sorted(model.slowest_instances("/orders", 5)[0]) == [
        f"api-{i}" for i in range(25, 30)]


def test_the_page_keeps_its_lines_between_refreshes_and_starts_over_when_a_route_is_chosen(
        qtbot) -> None:
    model = _fleet(3 * INSTANCE_LINES)
    page = RoutesPage(model)
    qtbot.addWidget(page)
    page.since = lambda: 0.0
    page.refresh(0.0)
    page.select_route("/orders")
    everyone = model.instance_series("/orders")
    kept = [f"api-{i:02d}" for i in (INSTANCE_LINES + 1, INSTANCE_LINES + 2)]  # 8th, 9th
    page.instances.set_series({k: everyone[k] for k in kept}, keep_gone=False)
    page.refresh(0.0)
    top = [f"api-{i:02d}" for i in range(3 * INSTANCE_LINES - 1, 0, -1)]  # slowest first
    assert set(page.instances.data) == {*kept, *top[:INSTANCE_LINES - 2]}
    page.select_route("/orders")  # chosen again: a fresh start, by rank only
    assert set(page.instances.data) == set(top[:INSTANCE_LINES])
