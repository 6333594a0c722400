"""Prometheus HTTP API source against a real Prometheus scraping a real demo instance."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.collectors.prometheus.api import (
    MAX_POINTS,
    PromAPI,
    PromHTTPError,
    PromQueryError,
    RangeResult,
    SyncPromAPI,
    Target,
    choose_step,
)
from trimtab.demo.fleet import spawn_demo

from tests.collectors.prometheus.prom_server import running_prometheus
from tests.support import poll

_T = TypeVar("_T")

P95 = ("histogram_quantile(0.95, sum by (le, route) "
       "(rate(trimtab_http_request_duration_seconds_bucket[30s])))")


# ---------------------------------------------------------------- step sizing (pure)

@pytest.mark.parametrize(("start", "end", "points", "min_step", "step"), [
    (1000.0, 1600.0, 600, 1.0, 1.0),
    (1000.0, 1600.0, 100, 1.0, 6.0),
    (1000.0, 1600.0, 100, 15.0, 15.0),
    (1001.0, 1002.0, 1000, 1.0, 1.0),
])
def test_step_is_the_larger_of_min_step_and_range_over_points(
        start: float, end: float, points: int, min_step: float, step: float) -> None:
    grid = choose_step(start, end, points, min_step)
    assert grid.step == step
    assert grid.start <= start and grid.start % step == 0 and grid.start > start - step


def test_step_never_exceeds_the_point_limit() -> None:
    for span in (11_000.0, 11_001.0, 86_400.0 * 30, 86_400.0 * 365 * 5):
        grid = choose_step(1_700_000_123.0, 1_700_000_123.0 + span, 10**9)
        assert grid.points <= MAX_POINTS
        slid = choose_step(1_700_000_123.0 + 7, 1_700_000_123.0 + span + 7, 10**9)
        assert slid.step == grid.step and slid.points <= MAX_POINTS  # a sliding window keeps it


@pytest.mark.parametrize(("start", "end", "points", "min_step"), [
    (10.0, 10.0, 10, 1.0), (10.0, 5.0, 10, 1.0), (0.0, math.inf, 10, 1.0),
    (0.0, 10.0, 0, 1.0), (0.0, 10.0, 10, 0.0), (math.nan, 10.0, 10, 1.0)])
def test_bad_ranges_are_refused(start: float, end: float, points: int, min_step: float) -> None:
    with pytest.raises(ValueError):
        choose_step(start, end, points, min_step)


# ---------------------------------------------------------------- answers that are not data

def test_unreachable_server_is_a_clear_http_error() -> None:
    """In the plain words of a failed scrape (collectors/errors.py), with the URL asked."""
    base = f"http://127.0.0.1:{free_port()}"
    api = SyncPromAPI(base, timeout=2.0)
    with pytest.raises(PromHTTPError) as caught:
        api.targets()
    assert str(caught.value) == f"connection refused ({base}/api/v1/targets)"
    assert caught.value.status is None


def test_a_server_that_never_answers_times_out_in_plain_words() -> None:
    with socket.socket() as listener:  # listening, never accepting: the request hangs
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(PromHTTPError) as caught:
            SyncPromAPI(base, timeout=0.5).targets()
    assert str(caught.value) == f"timed out ({base}/api/v1/targets)"


def test_malformed_answers_are_reported() -> None:
    """A proxy or wrong server answering 200 with something else (MockTransport unit test)."""
    bodies = iter([b"<html>login</html>",
                   b'{"status":"success","data":{"resultType":"vector","result":[]}}',
                   (b'{"status":"success","data":{"resultType":"matrix","result":'
                   b'[{"metric":{},"values":[[1,"x"]]}]}}')])
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, content=next(bodies)))

    async def run(expect: str) -> None:
        api = PromAPI("http://prom", client=httpx.AsyncClient(transport=transport))
        with pytest.raises(PromHTTPError, match=expect):
            await api.query_range("up", 0.0, 60.0)

    for expect in ("not a Prometheus API answer", "expected a matrix", "malformed series"):
        asyncio.run(run(expect))


# ---------------------------------------------------------------- a real Prometheus

@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Prometheus scraping a demo instance every second: (prometheus url, api url)."""
    work: Path = tmp_path_factory.mktemp("prometheus")
    api_port = free_port()
    procs = [spawn_demo(["instance", "--name", "api-1", "--port", str(api_port)],
                   str(work / "api.log"))]
    try:
        api = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api}/metrics", procs[0])
        jobs = {"demo": [f"{api}/metrics"], "dead": [f"http://127.0.0.1:{free_port()}/metrics"]}
        with running_prometheus(work, jobs) as prom:
            yield prom, api
    finally:
        stop_all(procs)


def _traffic(api_url: str, stop: threading.Event) -> None:
    """Steady demo traffic so rate() over the last 30 s has increases to see."""
    with httpx.Client(base_url=api_url, timeout=5.0) as client:
        i = 0
        while not stop.is_set() and i < 5000:  # bounded, stops by itself
            client.get(f"/products/{i % 7}")
            client.get("/search", params={"q": str(i)})
            i += 1
            stop.wait(0.02)


def _poll(fn: Callable[[], _T], ok: Callable[[_T], object], timeout: float = 40.0) -> _T:
    return poll(fn, ok, timeout, interval=0.5)


def test_p95_by_route_comes_back_from_a_real_prometheus(prometheus: tuple[str, str]) -> None:
    prom_url, api_url = prometheus
    api = SyncPromAPI(prom_url)
    stop = threading.Event()
    worker = threading.Thread(target=_traffic, args=(api_url, stop), daemon=True)
    worker.start()
    try:
        def routes_with_data() -> RangeResult:
            now = time.time()
            return api.query_range(P95, now - 60, now, points=120)

        def ready(result: RangeResult) -> bool:
            found = {s.metric.get("route") for s in result.series
                     if any(math.isfinite(v) for v in s.values)}
            return {"/products/{id}", "/search"} <= found
        result = _poll(routes_with_data, ready)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert isinstance(result, RangeResult) and ready(result), result
    assert result.step.step == 1.0 and result.step.points <= 121
    for series in result.series:
        assert set(series.metric) == {"route"}
        assert len(series.timestamps) == len(series.values) > 0
        assert all(t % 1.0 == 0 for t in series.timestamps)  # on the aligned grid
        finite = series.values[~np.isnan(series.values)]  # NaN (0/0) before traffic arrived
        assert ((finite > 0) & (finite < 5.0)).all(), series.values


def test_long_range_stays_under_the_point_limit(prometheus: tuple[str, str]) -> None:
    prom_url, _ = prometheus
    now = time.time()
    start = now - 86_400 * 30
    # What the guard avoids: Prometheus refuses a 1 s step over 30 days.
    raw = httpx.get(f"{prom_url}/api/v1/query_range", timeout=10.0,
                    params={"query": "up", "start": start, "end": now, "step": 1})
    assert raw.status_code == 400 and "11,000 points" in raw.json()["error"]
    result = SyncPromAPI(prom_url).query_range("up", start, now, points=10**9)
    assert result.step.points <= MAX_POINTS
    assert result.step.step >= math.ceil(86_400 * 30 / MAX_POINTS)
    assert {s.metric["job"] for s in result.series} <= {"demo", "dead"}


def test_query_errors_and_special_values(prometheus: tuple[str, str]) -> None:
    prom_url, _ = prometheus
    api = SyncPromAPI(prom_url)
    now = time.time()
    with pytest.raises(PromQueryError) as bad:
        api.query_range("sum(", now - 60, now)
    assert bad.value.error_type == "bad_data" and bad.value.status == 400
    assert "parse error" in str(bad.value)
    with pytest.raises(PromHTTPError) as missing:
        SyncPromAPI(prom_url + "/no/such/prefix").targets()
    assert missing.value.status == 404
    nan, inf = (api.query_range(q, now - 10, now).series[0].values for q in ("0/0", "-1/0"))
    assert np.isnan(nan).all() and (inf == -math.inf).all()


def test_targets_report_health(prometheus: tuple[str, str]) -> None:
    prom_url, api_url = prometheus
    api = SyncPromAPI(prom_url)

    def both_scraped(targets: list[Target]) -> bool:
        return len(targets) == 2 and all(t.last_scrape is not None for t in targets) and {
            t.health for t in targets} == {"up", "down"}
    targets = _poll(api.targets, both_scraped)
    assert isinstance(targets, list) and both_scraped(targets), targets
    by_job = {t.labels["job"]: t for t in targets}
    assert by_job["demo"].scrape_url == f"{api_url}/metrics"
    assert by_job["demo"].health == "up" and by_job["demo"].last_error == ""
    assert by_job["dead"].health == "down" and "connection refused" in by_job["dead"].last_error
    assert by_job["demo"].last_scrape.tzinfo is not None
    assert abs(by_job["demo"].last_scrape.timestamp() - time.time()) < 120


def test_instant_query_answers_vector_matrix_and_scalar(prometheus: tuple[str, str]) -> None:
    prom_url, _ = prometheus
    api = SyncPromAPI(prom_url)
    assert _poll(lambda: api.query('up{job="demo"}'), bool)  # scraped at least once
    now = time.time()
    vector = api.query('up{job="demo"}', now)
    assert len(vector) == 1
    assert vector[0].metric["job"] == "demo" and list(vector[0].timestamps) == [round(now, 3)]
    raw = api.query('up{job="demo"}[5s]', now)[0]  # raw samples at the times they were scraped
    assert 1 <= len(raw.timestamps) <= 6 and (raw.timestamps <= now).all()
    (scalar,) = api.query("1 + 1")
    assert scalar.metric == {} and list(scalar.values) == [2.0]
