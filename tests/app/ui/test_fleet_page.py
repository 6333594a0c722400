"""The Fleet page tells the truth (issue 20.12), driven through real widgets on real sockets.

- a web page at the target URL reads "HTTP 404 Not Found — not a Prometheus /metrics
  endpoint (got text/html)", in the table and the status bar, never its HTML;
- a dead port reads "connection refused";
- every row shows the URL scraped;
- a first run (no targets file) is greeted with Add target… and the demo, not an empty table;
- a configuration error stops the start with exit status 2, on stderr and in a dialog.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from trimtab.agent.procs import free_port
from trimtab.app.cli.main import build_parser
from trimtab.app.model.fleet import FleetModel
from trimtab.app.targets.manager import TargetManager
from trimtab.app.ui.pages.fleet import FLEET_HEADERS, FleetPage, config_error_box
from trimtab.app.ui.window import MainWindow
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

from tests.collectors.test_scrape_errors_plain import _HtmlHandler

SHOTS = Path("/tmp/shots")
HTML_ERROR = "HTTP 404 Not Found — not a Prometheus /metrics endpoint (got text/html)"


@pytest.fixture
def html_server() -> Iterator[str]:
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _rows(page: FleetPage) -> dict[str, dict[str, str]]:
    columns = {h: page.table.column_texts(i) for i, h in enumerate(FLEET_HEADERS)}
    return {name: {h: columns[h][row] for h in FLEET_HEADERS}
            for row, name in enumerate(columns["target"])}


def test_html_page_and_dead_port_read_as_one_line_each(qtbot, html_server: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    targets = [ScrapeTarget("web-ui", f"{html_server}/metrics"), ScrapeTarget("dead", dead)]
    model = FleetModel()
    engine = ScrapeEngine(targets, model.ingest, on_cycle=model.tick).start()
    window = MainWindow(model)
    qtbot.addWidget(window)
    try:
        window.tabs.setCurrentWidget(window.fleet)

        def both_failed() -> bool:
            rows = _rows(window.fleet)
            return (rows.get("web-ui", {}).get("error", "").startswith(HTML_ERROR)
                    and rows.get("dead", {}).get("error", "").startswith("connection refused"))

        qtbot.waitUntil(both_failed, timeout=30_000)
        rows = _rows(window.fleet)
        assert rows["web-ui"]["url"] == f"{html_server}/metrics" and rows["dead"]["url"] == dead
        assert {r["state"] for r in rows.values()} == {"DOWN"}
        qtbot.waitUntil(lambda: "0/2 targets up" in window.status.text(), timeout=10_000)
        status = window.status.text()
        assert f"web-ui: {HTML_ERROR}" in status and "dead: connection refused" in status
        assert "<" not in status and "lorem" not in status
    finally:
        engine.stop()
        window.close()


def test_a_first_run_is_greeted_with_add_target_and_the_demo(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "conf" / "targets.toml"  # no file yet: a first run
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(path, engine, model)
    window = MainWindow(model, targets=manager)
    qtbot.addWidget(window)
    started: list[str] = []
    try:
        page = window.fleet
        page.greet_first_run(lambda: started.append("demo"))
        window.tabs.setCurrentWidget(page)
        window.resize(1366, 768)
        window.show()
        qtbot.waitUntil(lambda: page.greeting.isVisible(), timeout=10_000)
        assert str(path) in page.greeting.text.text()
        assert page.greeting.add_button.text() == "Add target…"
        assert not page.hint.isVisible()
        SHOTS.mkdir(exist_ok=True)
        assert window.grab().save(str(SHOTS / "F_first_run_greeting.png"))
        page.greeting.demo_button.click()
        assert started == ["demo"] and not page.greeting.demo_button.isEnabled()
        # the first target ends the greeting
        manager.add("api-1", f"http://127.0.0.1:{free_port()}/metrics")
        qtbot.waitUntil(lambda: page.table.rowCount() == 1 and not page.greeting.isVisible(),
                        timeout=30_000)
        assert path.exists()
    finally:
        manager.close()
        engine.stop()
        window.close()


def test_no_greeting_without_a_targets_manager(qtbot) -> None:
    page = FleetPage(FleetModel())  # the demo: targets come from it
    qtbot.addWidget(page)
    page.greet_first_run(None)
    assert not page.first_run and page.greeting.isHidden()


def test_a_config_error_stops_the_start_on_stderr_and_in_a_dialog(
        qtbot, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "targets.toml"
    path.write_text('# mine\n[[discovery]]\nkind = "dns"\nnames = ["api.internal"]\ntype = "A"\n')
    store = tmp_path / "history.sqlite"
    args = build_parser().parse_args(["cockpit", "--targets", str(path), "--store", str(store)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "discovery 'dns-1': dns port: an A lookup needs the port" in err and str(path) in err
    assert not store.exists()  # nothing started
    message = err.strip().removeprefix("trimtab: ")
    box = config_error_box(message)
    qtbot.addWidget(box)
    box.show()
    assert box.informativeText() == message
    assert box.grab().save(str(SHOTS / "F_config_error_dialog.png"))
    box.close()


def test_departures_are_one_marker_per_moment_on_every_chart(qtbot) -> None:
    """The model's "gone" events become chart markers (grouped by second, naming each
    target); a click on one opens no change card (it is no change)."""
    from trimtab.app.model.fleet import TargetHealth
    from trimtab.app.ui.pages.fleet import gone_markers

    model = FleetModel()
    with model.lock:
        for name in ("a:1", "b:1", "c:1"):
            model.health[name] = TargetHealth(name, "instance", up=True)
    model.depart("a:1", 1000.2)
    model.depart("b:1", 1000.7)
    model.depart("c:1", 1031.0)
    assert gone_markers(model.departures) == [
        ("gone@1000", 1000.2, "gone: a:1, b:1"), ("gone@1031", 1031.0, "gone: c:1")]
    window = MainWindow(model)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: all(set(c.markers) == {"gone@1000", "gone@1031"}
                                    for c in window.charts), timeout=10_000)
        window.charts[0].marker_clicked.emit("gone@1000")
        assert getattr(window, "change_card", None) is None
    finally:
        window.close()


def test_the_cockpit_greets_a_first_run_end_to_end(tmp_path: Path) -> None:
    """``trimtab`` with no targets file opens on the Fleet page's greeting (a real process)."""
    import os
    import subprocess
    import sys

    shot = tmp_path / "first-run.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    proc = subprocess.run(
        [sys.executable, "-m", "trimtab.app.cli.main", "cockpit", "--screenshot", str(shot),
         "--after", "1"], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "no targets file yet: the Fleet page offers Add target… and the demo" in proc.stdout
    assert shot.stat().st_size > 0
    assert not (tmp_path / "cfg" / "trimtab" / "targets.toml").exists()  # nothing written
