"""The Overview in the real window on synthetic scrapes with a clock the test moves: the
time axis starts at the first data, top-N legends hold exactly N routes, and a route or
backend has one colour on every chart (issue 20.8, 21.5)."""

from __future__ import annotations

import math

import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.window import LIVE_STEP, MainWindow
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

LES = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, float("inf"))
INSTANCES = [ScrapeTarget(f"api-{i}", f"http://127.0.0.1:{i}/metrics") for i in (1, 2)]
LB = ScrapeTarget("lb", "http://127.0.0.1:9/metrics", kind="balancer")


class Feed:
    """Instances serving routes at set rates and latencies; one balancer over them."""

    def __init__(self, model: FleetModel, start: float = 1_000_000.0) -> None:
        self.model = model
        self.now = start
        self.routes: dict[str, tuple[float, float]] = {}  # route → (req/s, latency s)
        self.counts: dict[tuple[str, str], dict[float, float]] = {}
        self.lb = {"api-1": 0.0, "api-2": 0.0}
        self.slowness = {"api-1": 1.0, "api-2": 1.0}
        self.statuses = {"200": 1.0}  # share of requests answered with each status

    def clock(self) -> float:
        return self.now

    def step(self, count: int = 1) -> None:
        for _ in range(count):
            self.now += 1.0
            for target in INSTANCES:
                lines = ["# TYPE trimtab_http_request_duration_seconds histogram"]
                for route, (rps, latency) in self.routes.items():
                    buckets = self.counts.setdefault((target.name, route), dict.fromkeys(LES, 0.0))
                    for le in LES:
                        slow = latency * self.slowness[target.name]
                        buckets[le] += rps / 2 if slow <= le else 0.0
                    for le, n in buckets.items():
                        bound = "+Inf" if math.isinf(le) else f"{le:g}"
                        lines.append(f'trimtab_http_request_duration_seconds_bucket{{route="{route}",'
                                     f'le="{bound}"}} {n}')
                lines.append("# TYPE trimtab_http_requests_total counter")
                for route in self.routes:
                    n = self.counts[(target.name, route)][math.inf]
                    lines += [f'trimtab_http_requests_total{{route="{route}",status="{status}"}} '
                              f'{n * share}' for status, share in self.statuses.items()]
                self._ingest(target, "\n".join(lines) + "\n")
            for server in self.lb:
                self.lb[server] += 50.0
            self._ingest(LB, "# TYPE trimtab_balancer_requests_total counter\n" + "".join(
                f'trimtab_balancer_requests_total{{server="{s}"}} {n}\n'
                f'trimtab_balancer_server_weight{{server="{s}"}} 1\n'
                f'trimtab_balancer_expected_share{{server="{s}"}} 0.5\n'
                for s, n in self.lb.items()))
            self.model.tick(self.now)

    def _ingest(self, target: ScrapeTarget, text: str) -> None:
        self.model.ingest(ScrapeResult(target, self.now, True, 0.01, parse(text), ""))


@pytest.fixture
def window(qtbot) -> MainWindow:
    model = FleetModel()
    window = MainWindow(model, refresh_hz=50)
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    window.tabs.setCurrentWidget(window.overview)
    return window


def _feed(window: MainWindow) -> Feed:
    feed = Feed(window.model)
    window.clock = feed.clock
    return feed


def test_after_20_s_of_data_the_time_axis_starts_at_the_first_data(qtbot, window) -> None:
    feed = _feed(window)
    feed.routes = {"/a": (10.0, 0.04)}
    first = feed.now + 1.0  # the first tick
    feed.step(20)
    window._force_refresh()
    expected = math.floor(first / LIVE_STEP) * LIVE_STEP
    for chart in window.charts:  # every page's charts, so the next page shown is in place
        x0, x1 = chart.x_window()
        assert x0 == pytest.approx(expected), chart.plot.plotItem.titleLabel.text
        assert x1 == pytest.approx(math.ceil(feed.now / LIVE_STEP) * LIVE_STEP)
    assert window.live_window == 300  # "last 5 min", yet 20 s of data fill the chart
    # once there is more history than the range, the range is the range again
    feed.step(300)
    window._force_refresh()
    x0, x1 = window.overview.latency.x_window()
    assert x1 - x0 == pytest.approx(window.live_window)


def test_top_10_legend_lists_10_when_an_11th_route_ties_or_overtakes(qtbot, window) -> None:
    feed = _feed(window)
    feed.routes = {f"/r{i:02d}": (10.0, 0.04) for i in range(11)}  # eleven exactly tied
    feed.step(3)
    window._force_refresh()
    latency = window.overview.latency
    assert len(latency.curves) == 10 and len(latency.legend.items) == 10
    shown = set(latency.curves)
    # ties keep the routes already shown: no flapping between refreshes
    feed.step(2)
    window._force_refresh()
    assert set(latency.curves) == shown
    # the 11th becomes the slowest: it enters, the weakest leaves the legend (it listed 11)
    (outsider,) = {f"/r{i:02d}" for i in range(11)} - shown
    feed.routes[outsider] = (10.0, 0.4)
    feed.step(12)
    window._force_refresh()
    assert outsider in latency.curves
    assert len(latency.curves) == 10 and len(latency.legend.items) == 10


def test_a_backend_has_one_colour_on_every_chart(qtbot, window) -> None:
    feed = _feed(window)
    feed.routes = {"/a": (10.0, 0.04), "/b": (10.0, 0.2)}
    feed.step(5)
    for page in (window.overview, window.balancer, window.routes):
        window.tabs.setCurrentWidget(page)
        window._force_refresh()
    share = window.overview.share_time
    bars = window.overview.share_bars
    for i, server in enumerate(("api-1", "api-2")):
        colour = window.palette.colour(server)
        assert share.curves[server].opts["pen"].color().name().upper() == colour
        assert window.balancer.share_time.curves[server].opts["pen"].color().name().upper() \
            == colour
        assert bars._observed.opts["brushes"][i] == colour
    assert window.palette.colour("api-1") != window.palette.colour("api-2")
    routes = window.overview.latency.curves
    assert routes["/a"].opts["pen"].color() != routes["/b"].opts["pen"].color()
    assert {window.palette.colour(k) for k in ("/a", "/b")}.isdisjoint(
        {window.palette.colour(k) for k in ("api-1", "api-2")})


def test_headline_names_the_slow_route_backend_and_rates(qtbot, window) -> None:
    feed = _feed(window)
    feed.routes = {"/fast": (40.0, 0.02), "/slow": (10.0, 0.3), "/rare": (0.1, 0.9)}
    feed.slowness["api-2"] = 3.0
    feed.statuses = {"200": 0.85, "429": 0.10, "503": 0.05}
    feed.step(15)
    window._force_refresh()
    facts = window.overview.headline_facts()
    text = window.overview.headline.text()
    # /rare is slower but carries 0.2 % of requests: the slowest route an operator should see
    assert facts.route is not None and facts.route.route == "/slow"
    assert text.startswith("Slowest route: /slow — p95 ")
    # api-2 runs 3× slower: its p95 over its peer's (buckets make it 2.5–5×)
    assert facts.backend is not None and facts.backend.name == "api-2" and facts.stands_out
    assert 2.0 < facts.backend.factor < 6.0
    assert f"Backend api-2 stands out: p95 {facts.backend.factor:.1f}× its peers'" in text
    assert facts.error_ratio == pytest.approx(0.05, abs=1e-6)
    assert facts.limited_ratio == pytest.approx(0.10, abs=1e-6)
    assert "Errors: 5.0 % of " in text and "429s: 10.0 % of requests" in text
    # time share: /slow spends more handler time than /fast although 4× rarer
    assert 0.5 < facts.route.time_share < 1.0


def test_headline_when_nothing_stands_out(qtbot, window) -> None:
    feed = _feed(window)
    feed.routes = {"/a": (10.0, 0.04)}
    feed.step(15)
    window._force_refresh()
    facts = window.overview.headline_facts()
    assert facts.backend is not None and not facts.stands_out
    assert "No backend stands out" in window.overview.headline.text()
    assert math.isnan(facts.limited_ratio) is False and facts.limited_ratio == 0.0
