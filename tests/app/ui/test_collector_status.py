"""The status bar says why no scrape arrives while the scrape process is started again.

The cockpit's own wiring (``app.cli.main.start_scraper``: a scrape process feeding a real
``FleetModel``), a real window and a real loopback target; the child is killed as the OOM
killer would.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from trimtab.app.cli.main import start_scraper
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.window import MainWindow
from trimtab.collectors.scrape import ScrapeTarget
from trimtab.collectors.scrape_process import COLLECTOR_ENV, ScrapeProcess

from tests.collectors.prometheus.static_exposition import serving_exposition

BODY = "# TYPE up_total counter\nup_total 1\n"


@pytest.fixture
def metrics_url() -> Iterator[str]:
    with serving_exposition(BODY) as url:
        yield url


def test_a_killed_scrape_process_shows_in_the_status_bar_until_it_is_back(
        qtbot, metrics_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(COLLECTOR_ENV, raising=False)  # the default: a process of its own
    model = FleetModel()
    engine = start_scraper([ScrapeTarget("api-1", metrics_url)], model)
    assert isinstance(engine, ScrapeProcess)
    window = MainWindow(model)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: "1/1 targets up" in window.status.text(), timeout=20_000)
        assert "scrape process" not in window.status.text()
        pid = engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: "scrape process killed by SIGKILL; starting it again in"
                        in window.status.text(), timeout=10_000)
        qtbot.waitUntil(lambda: "scrape process" not in window.status.text(), timeout=20_000)
        assert engine.restarts == 1 and engine.pid not in (None, pid)
        ok = model.read(lambda m: m.health["api-1"].ok_scrapes)
        qtbot.waitUntil(lambda: model.read(lambda m: m.health["api-1"].ok_scrapes) > ok,
                        timeout=10_000)
    finally:
        engine.stop()
        window.close()
