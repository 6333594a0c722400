"""History… from a Prometheus server: a real Prometheus scraping the demo fleet's instances,
its query_range answer replayed like a snapshot; a server that is down, a bad range, a coarse
grid (rate window and stale limit widened to the step)."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from trimtab.agent.procs import free_port
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.prom_history import MAX_POINTS, MemorySource, chart_points, prom_session
from trimtab.app.replay.replayer import Replayer, ReplayError
from trimtab.app.targets.manager import TargetManager
from trimtab.app.ui.file_actions import history_sources, install_file_actions
from trimtab.app.ui.replay.window import ReplayLauncher
from trimtab.app.ui.window import MainWindow
from trimtab.collectors.exposition import parse
from trimtab.collectors.prometheus.source import PromSource
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget
from trimtab.demo.fleet import DemoFleet

from tests.collectors.prometheus.prom_server import running_prometheus

from ..model.test_model import exposition

RANGE = 20.0  # seconds of history asked for


@pytest.fixture(scope="module")
def prom_url() -> Iterator[str]:
    """A real Prometheus scraping the demo fleet's instances every second, ~RANGE s of data."""
    work = Path(tempfile.mkdtemp(prefix="trimtab-test-prom-history-"))
    fleet = DemoFleet(rps=100.0, log_dir=str(work))
    try:
        fleet.start()
        urls = [t.url for t in fleet.targets if t.kind == "instance"]
        with running_prometheus(work, {"demo": urls}) as url:
            deadline = time.monotonic() + 90.0
            while not _has_history(url, RANGE):
                assert time.monotonic() < deadline, "Prometheus gathered no history"
                threading.Event().wait(0.5)
            yield url
    finally:
        fleet.stop()


def _has_history(url: str, seconds: float) -> bool:
    """Prometheus has scraped every instance for ``seconds`` (counts its ``up`` points)."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": f"count_over_time(up[{seconds:.0f}s])"},
                       timeout=5.0).json()
    counts = [float(r["value"][1]) for r in answer.get("data", {}).get("result", [])]
    return len(counts) == 3 and min(counts) >= seconds - 2


def test_a_prometheus_that_is_down_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    now = time.time()
    with pytest.raises(ReplayError, match=f"Prometheus down-one \\({url}\\)"):
        prom_session(PromSource(url, name="down-one", timeout=2.0), now - 60, now, 300)


def test_a_bad_range_is_refused_before_asking(prom_url: str) -> None:
    source = PromSource(prom_url)
    now = time.time()
    for start, end in ((now, now - 10), (now, now), (float("nan"), now)):
        with pytest.raises(ReplayError):
            prom_session(source, start, end, 300)
    assert source.last_step is None  # nothing was asked
    with pytest.raises(ReplayError, match="no raw samples"):  # a range Prometheus holds nothing for
        prom_session(source, now - 86400 * 30, now - 86400 * 29, 300)


def test_history_from_prometheus_replays_routes_and_health(prom_url: str) -> None:
    source = PromSource(prom_url)
    now = time.time()
    session = prom_session(source, now - RANGE, now, 400)
    try:
        replayer = session.replayer
        replayer.seek(replayer.end)  # what the replay window's worker does first
        assert "Prometheus prometheus" in session.title
        assert source.last_step is not None and source.last_step.step == 1.0
        model = replayer.model
        assert len(model.routes) >= 3  # the demo's routes, rates from Prometheus' counters
        assert all(s.rate > 0 for s in model.routes.values())
        health = model.health
        assert len(health) == 3 and all(h.up for h in health.values())
        assert model.rate_window >= 2 * source.last_step.step
        p95 = model.snapshot("p95")
        assert all(len(t) >= RANGE / 2 for t, _ in p95.values())
        replayer.set_quantiles((0.5, 0.9, 0.95, 0.99))  # re-aggregation works here too
        assert any(0.9 in s.quantiles for s in model.routes.values())
    finally:
        session.close()


def test_points_follow_the_chart_width_within_the_limit() -> None:
    assert chart_points(1400) == 1400
    assert chart_points(10) == 50
    assert chart_points(10**6) == MAX_POINTS


def test_a_coarse_grid_widens_the_rate_window_and_stale_limit() -> None:
    """A 15 s step (a long range from Prometheus): with the live 10 s rate window and 5 s stale
    limit no point would ever be derived."""
    target = ScrapeTarget("api-1", "prom#demo/api-1")
    cycles = [(t, [ScrapeResult(target, t, True, 0.01, parse(exposition(n)))])
              for t, n in ((1000.0, 0), (1015.0, 150), (1030.0, 300), (1045.0, 450))]
    memory = MemorySource.from_cycles(cycles, "test grid")
    replayer = Replayer.for_window(memory, 1000.0, 1045.0)
    replayer.seek(1045.0)
    model = replayer.model
    assert (model.rate_window, model.stale_after) == (30.0, 22.5)
    assert model.routes["/r"].rate == pytest.approx(10.0)
    assert model.health["api-1"].up


def test_history_action_offers_the_prometheus_source(qtbot, prom_url: str,
                                                     tmp_path: Path) -> None:
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(tmp_path / "targets.toml", engine, model)
    launcher = ReplayLauncher(None, quiet=True)
    window = None
    try:
        manager.start_prometheus(ScrapeTarget("prom", prom_url, "prometheus"), saved=False)
        window = MainWindow(model, targets=manager)
        install_file_actions(window)
        assert window.history_action.isEnabled()  # no history database, but a Prometheus
        assert list(history_sources(window)) == ["Prometheus prom"]
        now = time.time()
        launcher.open_prometheus(manager.collectors["prom"].source, now - RANGE, now, 300, [])
        qtbot.waitUntil(lambda: bool(launcher.windows) or bool(launcher.last_error),
                        timeout=60_000)
        assert not launcher.last_error, launcher.last_error
        replay = launcher.windows[0]
        assert "Prometheus prom" in replay.windowTitle()
        replay.tabs.setCurrentWidget(replay.routes)
        replay._force_refresh()
        assert replay.routes.table.rowCount() >= 3
        down = PromSource(f"http://127.0.0.1:{free_port()}", name="gone", timeout=2.0)
        launcher.open_prometheus(down, now - RANGE, now, 300, [])
        qtbot.waitUntil(lambda: bool(launcher.last_error), timeout=30_000)
        assert "Prometheus gone" in launcher.last_error
    finally:
        for opened in list(launcher.windows):
            opened.close()
        if window is not None:
            window.close()
        manager.close()
        engine.stop()
