"""Staleness markers end a series: one of two instances dies, the cockpit keeps the other.

A real Prometheus and a real single-node VictoriaMetrics each scrape two real demo
instances (each with its own traffic generator); one instance is killed. Over 24
half-second readings the model's routes are never empty, and once the dead instance
is stale the fleet's request rate is the survivor's alone.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.prometheus.api import Series
from trimtab.collectors.prometheus.source import PromCollector, PromSource
from trimtab.demo.fleet import spawn_demo

from tests.collectors.prometheus.prom_server import running_prometheus, running_victoria_metrics

RPS = 20.0  # per instance: light on a shared 2-core machine, yet a clear rate

SERVERS: dict[str, Callable[..., AbstractContextManager[str]]] = {
    "prometheus": running_prometheus, "victoria-metrics": running_victoria_metrics}


class Fleet(NamedTuple):
    server: str  # base URL of the Prometheus-compatible server
    instances: list[subprocess.Popen[bytes]]  # the two demo API instances


@pytest.fixture(params=sorted(SERVERS))
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """Two demo instances with 20 rps each, scraped every second by the server under test."""
    work = Path(tempfile.mkdtemp(prefix=f"trimtab-test-{request.param}-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls = []
        for n in (1, 2):
            port = free_port()
            procs.append(spawn_demo(["instance", "--name", f"api-{n}", "--port", str(port)],
                                    str(work / f"api-{n}.log")))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs):
            wait_http(f"{url}/metrics", proc)
        instances = list(procs)
        procs += [spawn_demo(["loadgen", "--url", url, "--rps", str(RPS)]) for url in urls]
        with SERVERS[request.param](work, {"demo": [f"{u}/metrics" for u in urls]}) as server:
            yield Fleet(server, instances)
    finally:
        stop_all(procs)


def _total_rate(model: FleetModel) -> float:
    """Requests per second over all routes, as the cockpit shows them."""
    return float(model.read(lambda m: sum(s.rate for s in m.routes.values())))


@pytest.mark.slow
def test_a_dead_instance_leaves_the_survivor_on_screen(fleet: Fleet) -> None:
    model = FleetModel()
    collector = PromCollector(PromSource(fleet.server, matchers='job="demo"'), model.ingest,
                              on_cycle=model.tick).start()
    try:
        # Both instances in a full rate window first (the total is then about 2 * RPS).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not 1.6 * RPS < _total_rate(model) < 2.4 * RPS:
            time.sleep(0.5)
        before = _total_rate(model)
        assert 1.6 * RPS < before < 2.4 * RPS, before
        stop_all([fleet.instances[0]])
        killed = time.time()
        readings: list[tuple[float, dict[str, float]]] = []
        for _ in range(24):
            time.sleep(0.5)
            routes = model.read(lambda m: {r: s.rate for r, s in m.routes.items()})
            readings.append((time.time() - killed, routes))
        # A further stretch, so that the rate window holds only post-kill scrapes.
        time.sleep(max(0.0, killed + 16.0 - time.time()))
        after = _total_rate(model)
    finally:
        collector.stop()
    empty = [round(t, 1) for t, routes in readings if not routes]
    assert not empty, f"model.routes empty at {empty} s after the kill: {readings}"
    nan = [(round(t, 1), routes) for t, routes in readings
           if any(not np.isfinite(rate) for rate in routes.values())]
    assert not nan, nan
    # The dead instance is stale 5 s after its last good scrape: then only the survivor counts.
    late = [sum(routes.values()) for t, routes in readings if t > 8.0]
    assert late and all(0.6 * RPS < rate < 1.4 * RPS for rate in late), late
    assert 0.6 * RPS < after < 1.4 * RPS, after


def test_nan_markers_after_a_failed_scrape_are_no_scrape() -> None:
    """VictoriaMetrics stamps staleness markers 1 ms after the failed scrape's ``up = 0``.

    Those NaNs are no successful scrape: the target's last row stays the failed one.
    """
    source = PromSource("http://prom:9090")
    key = {"job": "demo", "instance": "a:1"}
    series = [
        Series({"__name__": "up", **key}, np.array([10.0, 11.0]), np.array([1.0, 0.0])),
        Series({"__name__": "trimtab_http_requests_total", **key, "route": "/x", "status": "200"},
               np.array([10.0, 11.001]), np.array([5.0, np.nan])),
    ]
    grouped = source._live.group(series)[("demo", "a:1")]
    results = [source._live.result(("demo", "a:1"), t, grouped[t], None) for t in sorted(grouped)]
    assert [(r.timestamp, r.up) for r in results] == [(10.0, True), (11.0, False)], results


def test_markers_of_a_removed_target_and_a_vanished_series_are_no_samples() -> None:
    """``up`` ending (target removed) is no failed scrape; a series' marker beside a good
    scrape drops only that series (it ended), the rest of the scrape stands."""
    source = PromSource("http://prom:9090")
    key = {"job": "demo", "instance": "a:1"}
    ts = np.array([10.0, 11.0])
    series = [
        Series({"__name__": "up", **key}, np.array([10.0, 11.0, 12.0]),
               np.array([1.0, 1.0, np.nan])),
        Series({"__name__": "trimtab_http_requests_total", **key, "route": "/x", "status": "200"},
               ts, np.array([5.0, 6.0])),
        Series({"__name__": "trimtab_http_requests_total", **key, "route": "/y", "status": "200"},
               ts, np.array([3.0, np.nan])),
    ]
    grouped = source._live.group(series)[("demo", "a:1")]
    assert sorted(grouped) == [10.0, 11.0]
    last = source._live.result(("demo", "a:1"), 11.0, grouped[11.0], None)
    assert last.up and last.exposition is not None
    assert [(dict(s.labels)["route"], s.value) for s in last.exposition.samples] == [("/x", 6.0)]
