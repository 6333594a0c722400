"""The targets file: validation first, atomic saves, and adding/removing from the Fleet page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from trimtab.app.targets import file as tf
from trimtab.collectors.scrape import ScrapeTarget

GOOD = ScrapeTarget("api-1", "http://127.0.0.1:8000/metrics")


@pytest.mark.parametrize(("target", "complaint"), [
    (ScrapeTarget("", "http://127.0.0.1:1/metrics"), "name"),
    (ScrapeTarget("x", "ftp://host/metrics"), "url"),
    (ScrapeTarget("x", "not a url"), "url"),
    (ScrapeTarget("x", "http://user:secret@host:1/metrics"), "credentials"),
    (ScrapeTarget("x", "http://h:1/m", kind="database"), "kind"),
    (ScrapeTarget("x", "http://h:1/m", interval=1.0, timeout=2.0), "timeout"),
    (ScrapeTarget("x", "http://h:1/m", interval=-5.0, timeout=-6.0), "timeout"),
    (ScrapeTarget("api-1", "http://h:1/m"), "already used"),
])
def test_bad_targets_are_refused_and_the_file_is_unchanged(tmp_path: Path, target: ScrapeTarget,
                                                           complaint: str) -> None:
    path = tmp_path / "targets.toml"
    tf.add(path, GOOD)
    before = path.read_bytes()
    with pytest.raises(tf.TargetsError, match=complaint):
        tf.add(path, target)
    assert path.read_bytes() == before


def test_round_trip_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    assert tf.load(path) == []
    tf.add(path, GOOD)
    tf.add(path, ScrapeTarget("lb", "http://127.0.0.1:9000/_trimtab/metrics", "balancer", 2.0, 1.5))
    assert [t.name for t in tf.load(path)] == ["api-1", "lb"]
    assert tf.load(path)[1].interval == 2.0
    tf.remove(path, "api-1")
    assert [t.name for t in tf.load(path)] == ["lb"]
    with pytest.raises(tf.TargetsError, match="no such target"):
        tf.remove(path, "api-1")


@pytest.mark.parametrize("content", ["[[target]]\nname = 'a'\n", "target = 3\n", "[[target\n",
                                     "[[target]]\nname='a'\nurl='http://h:1/m'\ninterval='x'\n"])
def test_a_broken_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(content)
    with pytest.raises(tf.TargetsError, match=str(path)):
        tf.load(path)


def test_cli_reports_a_broken_file_without_opening_a_window(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text("[[target\n")
    proc = subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", "--targets", str(path)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not valid TOML" in proc.stderr


def test_fleet_page_adds_and_removes_targets(qtbot, tmp_path: Path) -> None:
    from trimtab.agent.procs import free_port, stop_all, wait_http
    from trimtab.app.model.fleet import FleetModel
    from trimtab.app.targets.manager import TargetManager
    from trimtab.app.ui.pages.fleet import FLEET_HEADERS
    from trimtab.app.ui.window import MainWindow
    from trimtab.collectors.scrape import ScrapeEngine
    from trimtab.demo.fleet import spawn_demo

    port = free_port()
    api = spawn_demo(["instance", "--name", "api-x", "--port", str(port)])
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", api)
        path = tmp_path / "targets.toml"
        window = MainWindow(model, targets=TargetManager(path, engine, model))
        qtbot.addWidget(window)
        window.show()
        window.tabs.setCurrentWidget(window.fleet)
        assert str(path) in window.fleet.config_label.text()
        with pytest.raises(tf.TargetsError):
            window.fleet.manager.add("bad", "nope")
        window.fleet.manager.add("api-x", f"http://127.0.0.1:{port}/metrics")
        state = FLEET_HEADERS.index("state")
        qtbot.waitUntil(lambda: window.fleet.table.column_texts(state) == ["up"], timeout=10_000)
        assert [t.name for t in tf.load(path)] == ["api-x"]
        assert window.fleet.table.select_key("api-x")
        window.fleet.remove_selected()
        qtbot.waitUntil(lambda: window.fleet.table.rowCount() == 0, timeout=10_000)
        assert tf.load(path) == []
        window.close()
    finally:
        engine.stop()
        stop_all([api])


def test_cockpit_opens_with_a_control_token_and_no_targets(tmp_path: Path) -> None:
    import os

    png = tmp_path / "empty.png"
    env = {**os.environ, "TRIMTAB_TOKEN": "some-token", "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", "--targets",
                           str(tmp_path / "targets.toml"), "--store", str(tmp_path / "h.sqlite"),
                           "--screenshot", str(png), "--after", "1"],
                          check=False, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 0
    assert "some-token" not in proc.stdout + proc.stderr


def test_fleet_page_says_when_a_dead_target_is_retried(qtbot, tmp_path: Path) -> None:
    """A dead target is backed off (1, 1, 2, 4 … intervals): the page says when it is tried next."""
    from trimtab.agent.procs import free_port
    from trimtab.app.model.fleet import FleetModel
    from trimtab.app.targets.manager import TargetManager
    from trimtab.app.ui.pages.fleet import FLEET_HEADERS
    from trimtab.app.ui.window import MainWindow
    from trimtab.collectors.scrape import ScrapeEngine

    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    try:
        window = MainWindow(model, targets=TargetManager(tmp_path / "targets.toml", engine, model))
        qtbot.addWidget(window)
        window.show()
        window.tabs.setCurrentWidget(window.fleet)
        window.fleet.manager.add("gone", f"http://127.0.0.1:{free_port()}/metrics",
                                 interval=0.5)
        error = FLEET_HEADERS.index("error")
        qtbot.waitUntil(lambda: any("retrying in" in text
                                    for text in window.fleet.table.column_texts(error)),
                        timeout=30_000)
        health = model.read(lambda m: m.health["gone"])
        assert not health.up and health.failed_scrapes >= 3
        assert health.next_attempt > health.last_scrape + 1.0
        window.close()
    finally:
        engine.stop()
