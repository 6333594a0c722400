"""Prometheus as a source: a real Prometheus scraping the real demo fleet and a foreign app."""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, TypeVar

import httpx
import numpy as np
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.mappings import builtin_tables, load_tables, merge
from trimtab.collectors.prometheus.api import MAX_POINTS, PromHTTPError, Series
from trimtab.collectors.prometheus.source import PromCollector, PromSource, selector, wanted_names
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget
from trimtab.demo.fleet import DemoFleet

from tests.collectors.prometheus.prom_server import running_prometheus
from tests.support import poll, start_uvicorn

ROOT = Path(__file__).resolve().parents[3]
_T = TypeVar("_T")


class Setup(NamedTuple):
    prom: str  # Prometheus base URL
    fleet: DemoFleet
    app: str  # base URL of a starlette_exporter app (a foreign instrumentation)


def _poll(fn: Callable[[], _T], ok: Callable[[_T], object], timeout: float = 60.0) -> _T:
    return poll(fn, ok, timeout, interval=0.5)


def _poll_once(source: PromSource) -> list[ScrapeResult]:
    async def run() -> list[ScrapeResult]:
        api = source.api()
        try:
            return await source.poll(api)
        finally:
            await api.aclose()
    return asyncio.run(run())


# ---------------------------------------------------------------- without a server

def test_bad_url_is_refused() -> None:
    for url in ("prometheus:9090", "ftp://host:9090", "http://"):
        with pytest.raises(ValueError, match="Prometheus url"):
            PromSource(url)


def test_query_asks_for_canonical_and_mapped_names() -> None:
    names = wanted_names(builtin_tables())
    for name in ("up", "scrape_duration_seconds", "trimtab_http_request_duration_seconds_bucket",
                 "trimtab_cache_requests_total", "starlette_request_duration_seconds_bucket",
                 "http_server_request_duration_seconds_count", "haproxy_server_status"):
        assert name in names
    assert "starlette_request_duration_seconds" not in names  # a family name is no sample
    assert selector(["a", "b"], 'job="api"') == '{__name__=~"a|b",job="api"}'


def test_scrapes_are_rebuilt_per_target_and_time() -> None:
    """Two scrapes of one target and a failed one of another, from matrix series."""
    source = PromSource("http://prom:9090")
    ts = np.array([10.0, 11.0])
    series = [
        Series({"__name__": "up", "job": "api", "instance": "a:1"}, ts, np.array([1.0, 1.0])),
        Series({"__name__": "scrape_duration_seconds", "job": "api", "instance": "a:1"}, ts,
               np.array([0.01, 0.02])),
        Series({"__name__": "trimtab_http_requests_total", "job": "api", "instance": "a:1",
                "route": "/x", "status": "200"}, ts, np.array([5.0, 7.0])),
        Series({"__name__": "up", "job": "api", "instance": "b:1"}, ts[1:], np.array([0.0])),
    ]
    grouped = source._live.group(series)
    assert sorted(grouped) == [("api", "a:1"), ("api", "b:1")]
    second = source._live.result(("api", "a:1"), 11.0, grouped[("api", "a:1")][11.0], None)
    assert second.up and second.duration == 0.02 and second.target.name == "prometheus/a:1"
    assert second.exposition is not None
    assert second.exposition.samples[0][:3] == ("trimtab_http_requests_total",
                                                 (("route", "/x"), ("status", "200")), 7.0)
    down = source._live.result(("api", "b:1"), 11.0, grouped[("api", "b:1")][11.0], None)
    assert not down.up and down.exposition is None and "up = 0" in down.error


def test_unreachable_server_is_a_down_row_and_a_history_error() -> None:
    source = PromSource(f"http://127.0.0.1:{free_port()}", name="prom", timeout=2.0)
    results = _poll_once(source)
    assert len(results) == 1
    assert results[0].target.name == "prom" and results[0].target.kind == "prometheus"
    assert not results[0].up
    assert results[0].error == f"connection refused ({source.url}/api/v1/targets)"
    with pytest.raises(PromHTTPError, match=r"^connection refused \("):
        source.cycles(time.time() - 60, time.time(), 10)


# ---------------------------------------------------------------- a real Prometheus

@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    """The demo fleet, a starlette_exporter app and a dead port, all scraped by Prometheus."""
    work = Path(tempfile.mkdtemp(prefix="trimtab-test-prom-"))
    fleet = DemoFleet(rps=100.0, log_dir=str(work))
    app, port = start_uvicorn("tests.collectors.apps.starlette_app:app", work / "uvicorn.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", app)
        fleet.start()
        jobs = {"demo": [t.url for t in fleet.targets],
                "foreign": [f"http://127.0.0.1:{port}/metrics"],
                "dead": [f"http://127.0.0.1:{free_port()}/metrics"]}
        with running_prometheus(work, jobs) as prom:
            yield Setup(prom, fleet, f"http://127.0.0.1:{port}")
    finally:
        fleet.stop()
        stop_all([app])


def _fleet_p95(model: FleetModel) -> dict[str, float]:
    routes = model.read(lambda m: dict(m.routes))
    return {r: s.quantiles[0.95].value for r, s in routes.items()
            if 0.95 in s.quantiles and s.rate > 0}


@pytest.mark.slow
def test_live_poll_gives_the_same_p95_as_a_direct_scrape(setup: Setup) -> None:
    """Both models derive p95 per route over a 20 s window: through Prometheus and directly."""
    via_prom, direct = FleetModel(rate_window=20.0), FleetModel(rate_window=20.0)
    collector = PromCollector(PromSource(setup.prom, matchers='job=~"demo.*"'), via_prom.ingest,
                              on_cycle=via_prom.tick).start()
    engine = ScrapeEngine([ScrapeTarget(t.name, t.url, t.kind) for t in setup.fleet.targets],
                          direct.ingest, on_cycle=direct.tick).start()
    try:
        routes = {"/products/{id}", "/search"}

        def both() -> tuple[dict[str, float], dict[str, float]]:
            return _fleet_p95(via_prom), _fleet_p95(direct)

        def full_window(pair: tuple[dict[str, float], dict[str, float]]) -> bool:
            # The collector back-fills from Prometheus; the direct model needs a full window.
            oldest = direct.read(lambda m: min(
                (h[0][0] for h in m._history.values() if h), default=math.inf))
            return routes <= set(pair[0]) and routes <= set(pair[1]) and (
                time.time() - oldest > 20)
        a, b = _poll(both, full_window, timeout=90)
    finally:
        collector.stop()
        engine.stop()
    assert routes <= set(a) and routes <= set(b), (a, b)
    for route in routes:
        # Same counters, windows a scrape apart: the estimates agree closely.
        assert a[route] == pytest.approx(b[route], rel=0.25), (route, a, b)
    health = via_prom.read(lambda m: {h.name: (h.kind, h.ok_scrapes) for h in m.health.values()})
    kinds = sorted(kind for kind, ok in health.values() if ok)
    assert kinds == ["balancer", "instance", "instance", "instance", "prometheus"], health


def test_dead_target_reports_prometheus_last_error(setup: Setup) -> None:
    source = PromSource(setup.prom)

    def dead(results: list[ScrapeResult]) -> list[ScrapeResult]:
        return [r for r in results if not r.up and r.target.kind != "prometheus"]
    found = _poll(lambda: dead(_poll_once(source)), bool)
    assert found and all("connection refused" in r.error for r in found), found
    assert _poll_once(source)[-1].up  # the server itself is fine


def test_foreign_instrumentation_comes_through_the_mapping(setup: Setup) -> None:
    with httpx.Client(base_url=setup.app, timeout=10.0) as client:
        for i in range(6):
            assert client.get(f"/users/{i}").status_code == 200
    custom = load_tables({"mapping": [{
        "source": "starlette_exporter", "detect": ["starlette_requests_total"],
        "metric": [{"from": "starlette_requests_total", "to": "trimtab_http_requests_total",
                    "labels": {"route": "app{path}", "status": "{status_code}"}}]}]}, "user")
    for tables, route in ((None, "/users/{uid}"), (merge(builtin_tables(), custom),
                                                   "app/users/{uid}")):
        source = PromSource(setup.prom, tables=tables, matchers='job="foreign"')

        def count(src: PromSource = source, route: str = route) -> float:
            found = [s.value for r in _poll_once(src) if r.exposition is not None
                     for s in r.exposition.samples
                     if s.name == "trimtab_http_requests_total" and dict(s.labels)["route"] == route]
            return found[-1] if found else -1.0
        assert _poll(count, lambda n: n >= 6) >= 6


def test_history_cycles_stay_under_the_point_limit(setup: Setup) -> None:
    source = PromSource(setup.prom, matchers='job=~"demo.*"')
    _poll(lambda: len(_poll_once(source)), lambda n: n > 1)  # Prometheus has some data

    def recent() -> list:
        end = time.time()
        return list(source.cycles(end - 40, end, points=20))

    # Run first in the module (fresh Prometheus), the 40 s range holds only the first
    # seconds of scrapes: the replayed model's 10 s rates need several 2 s cycles of data.
    cycles = _poll(recent, lambda found: sum(1 for _, results in found if results) >= 8)
    assert source.last_step is not None and source.last_step.step == 2.0
    assert cycles and all(t % 2.0 == 0 for t, _ in cycles)
    assert all(t == r.timestamp for t, results in cycles for r in results)
    replayed = FleetModel()
    for t, results in cycles:
        for r in results:
            replayed.ingest(r)
        replayed.tick(t)
    assert {"/products/{id}", "/search"} <= set(replayed.read(lambda m: set(m.routes)))
    now = time.time()
    month = list(source.cycles(now - 86_400 * 30, now, points=10**9))
    assert source.last_step.points <= MAX_POINTS and source.last_step.step >= 236
    assert len(month) <= MAX_POINTS


def test_query_error_is_the_server_row_error(setup: Setup) -> None:
    results = _poll_once(PromSource(setup.prom, matchers='job=="x"'))
    assert len(results) == 1 and not results[0].up
    assert "bad_data" in results[0].error and "parse error" in results[0].error


def test_a_failing_sink_does_not_end_polling() -> None:
    """One exception in the model (a bad series) must not silently stop a Prometheus source."""
    calls: list[str] = []

    def sink(result) -> None:
        calls.append(result.error)
        raise KeyError("le")

    source = PromSource(f"http://127.0.0.1:{free_port()}", name="gone", interval=0.1, timeout=1.0)
    collector = PromCollector(source, sink).start()
    try:
        deadline = time.monotonic() + 30
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        collector.stop()
    assert len(calls) >= 3 and all(calls), calls  # still polling, each poll reporting the error


def test_two_sources_never_share_a_target_name() -> None:
    ts = np.array([10.0, 11.0])
    up = Series({"__name__": "up", "job": "api", "instance": "10.0.0.5:8000"}, ts, np.ones(2))
    names = []
    for name in ("prom-a", "prom-b"):
        source = PromSource("http://prom:9090", name=name)
        grouped = source._live.group([up])
        names.append(source._live.result(("api", "10.0.0.5:8000"), 11.0,
                                         grouped[("api", "10.0.0.5:8000")][11.0], None).target.name)
    assert names == ["prom-a/10.0.0.5:8000", "prom-b/10.0.0.5:8000"]
