"""The Balancer page on HAProxy's own exporter (issue 21.5): the table fills, and the p95
chart says that HAProxy exports no latency histogram instead of "No balancer data yet"."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages.balancer import NO_DATA, NO_LATENCY_HISTOGRAM, BalancerPage
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

from tests.conftest import require_binary
from tests.support import haproxy_config, start_uvicorn

SERVERS = ("s1", "s2", "s10")  # natural order: s10 after s2


@pytest.fixture
def haproxy_metrics(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """HAProxy (exporter on) before three real uvicorn backends: (front URL, metrics URL)."""
    binary = require_binary("haproxy")
    ports = {k: free_port() for k in ("port", "prom", *SERVERS)}
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(ports["port"], {s: f"127.0.0.1:{ports[s]}" for s in SERVERS},
                                  prom=ports["prom"]))
    log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 - closed below
    procs = [start_uvicorn("tests.collectors.apps.starlette_app:app", tmp_path / f"{s}.log",
                           port=ports[s])[0] for s in SERVERS]
    try:
        for s, proc in zip(SERVERS, procs, strict=True):
            wait_http(f"http://127.0.0.1:{ports[s]}/metrics", proc)
        procs.append(subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log,
                                      stderr=subprocess.STDOUT))
        metrics = f"http://127.0.0.1:{ports['prom']}/metrics"
        wait_http(metrics, procs[-1])
        yield f"http://127.0.0.1:{ports['port']}", metrics
    finally:
        stop_all(procs)
        log.close()


def test_haproxy_balancer_page_says_why_there_is_no_latency(qtbot, haproxy_metrics) -> None:
    front, metrics = haproxy_metrics
    model = FleetModel()
    page = BalancerPage(model)
    qtbot.addWidget(page)
    page.refresh(0.0)
    assert page.latency_empty_text() == NO_DATA  # nothing scraped yet: nothing to explain
    engine = ScrapeEngine([ScrapeTarget("haproxy", metrics, "balancer")],
                          model.ingest, on_cycle=model.tick).start()
    try:
        def filled() -> None:
            with httpx.Client(base_url=front, timeout=10.0) as client:
                for i in range(12):
                    assert client.get(f"/users/{i}").status_code == 200
            page.refresh(0.0)
            assert page.table.rowCount() == 3
            assert all(t != "–" for t in page.table.column_texts(5))  # observed share

        qtbot.waitUntil(filled, timeout=30_000)
    finally:
        engine.stop()
    assert page.table.column_texts(0) == ["be/s1", "be/s2", "be/s10"]
    assert [r[0] for r in page.bars.rows] == ["be/s1", "be/s2", "be/s10"]
    assert page.latency.point_count() == 0
    assert page.latency_empty_text() == NO_LATENCY_HISTOGRAM
