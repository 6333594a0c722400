"""Replay windows beyond the basics: recorded target health at the replay clock, annotations as
markers, other percentiles from the raw buckets, two-range and before/after-a-change compares.

The snapshot comes from the real demo fleet: one instance is stopped part way through the
recording (its scrapes fail, its samples end), and one exported target was never reachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from trimtab.app.cli.main import start_collection
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model import format as fmt
from trimtab.app.model.fleet import FleetModel, TargetHealth
from trimtab.app.replay.health import NEVER
from trimtab.app.replay.replayer import Replayer
from trimtab.app.snapshot.export import export_snapshot, open_snapshot
from trimtab.app.store.store import Store
from trimtab.app.ui.replay.window import ReplayLauncher, SnapshotWindow
from trimtab.collectors.scrape import ScrapeTarget
from trimtab.demo.fleet import DemoFleet

NOTE = "deploy 1.2.3 began {canary}"
SHOTS = Path("/tmp")


@dataclass
class Recording:
    path: Path
    window: tuple[float, float]
    dead: str  # the instance stopped part way
    dead_last: float  # its last recorded sample
    dead_error: str
    change: JournalRow
    note_time: float


def _cycles(store: Store) -> int:
    return (store.last_cycle() or (0, 0.0))[0]


def _wait_cycles(store: Store, n: int) -> None:
    deadline = time.monotonic() + 120.0
    while _cycles(store) < n:
        assert time.monotonic() < deadline, "the demo fleet was not scraped"
        threading.Event().wait(0.2)  # the engine scrapes on its own thread


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    folder = tmp_path_factory.mktemp("extras")
    store = Store(folder / "history.sqlite", chunk_cycles=8)
    model = FleetModel(store=store)
    fleet = DemoFleet(rps=100.0, log_dir=str(folder))
    try:
        fleet.start()
        engine = start_collection(fleet, model)
        try:
            _wait_cycles(store, 24)
            dead = fleet.targets[0].name
            fleet.procs[0].terminate()  # the first instance, started first
            fleet.procs[0].wait(10)
            deadline = time.monotonic() + 60.0
            while model.read(lambda m: m.health[dead].up):
                assert time.monotonic() < deadline, "the stopped instance still answers"
                threading.Event().wait(0.2)
            _wait_cycles(store, _cycles(store) + 8)
        finally:
            engine.stop()
    finally:
        fleet.stop()
    try:
        yield _export(folder, store, model, fleet, dead)
    finally:
        store.close()


def _export(folder: Path, store: Store, model: FleetModel, fleet: DemoFleet,
            dead: str) -> Recording:
    times = sorted(t for series in model.snapshot("p95").values() for t in series[0])
    start, end = times[0] - 2.0, times[-1]
    change = JournalRow(Agent("api-2", "http://127.0.0.1:1"), 3, start + 10.0,
                        "operator", "/products/{id}", "config",
                        {"routes": {"/products/{id}": {"ttl": 10}}},
                        {"routes": {"/products/{id}": {"ttl": 300}}}, "warm the cache", "accepted")
    targets = [ScrapeTarget(t.name, t.url, t.kind, token=t.token) for t in fleet.targets]
    targets.append(ScrapeTarget("ghost", "http://127.0.0.1:9/metrics"))
    health = dict(model.health)
    health["ghost"] = TargetHealth("ghost", "instance", False, end - 0.5, 0.003,
                                   "connection refused", 0, 0, len(times))
    note_time = start + (end - start) / 2
    path = folder / "extras.trimtab"
    export_snapshot(store, path, start, end, traces=list(model.traces), journal=[change],
                    targets=targets, health=health,
                    annotations=[{"time": note_time, "text": NOTE}])
    with open_snapshot(path) as snap:
        keys = [k for k in snap.series() if k.target == dead]
        dead_last = max(float(snap.query(k.name, dict(k.labels), start=start, end=end,
                                         max_points=10**6, target=dead)[k][0][-1]) for k in keys)
    return Recording(path, (start, end), dead, dead_last, health[dead].error, change, note_time)


def test_health_is_the_recorded_one_at_the_replay_clock(recording: Recording) -> None:
    start, end = recording.window
    with open_snapshot(recording.path) as snap:
        replayer = Replayer.for_window(snap, start, end)
        replayer.seek(recording.dead_last - 1.0)
        health = replayer.model.health
        assert health[recording.dead].up and health[recording.dead].error == ""
        assert not health["ghost"].up and health["ghost"].error == NEVER
        assert replayer.recorded is not None
        limit = replayer.recorded.stale_limit(replayer.model, recording.dead)
        assert recording.dead_last + limit + 1.0 < end
        replayer.seek(recording.dead_last + limit + 1.0)  # past its stale limit
        assert not health[recording.dead].up
        assert "no samples recorded since" in health[recording.dead].error
        replayer.seek(end)  # the snapshot's own record, as it was exported
        dead = health[recording.dead]
        assert not dead.up and dead.error == recording.dead_error and dead.error
        assert dead.failed_scrapes >= 1
        assert (health["ghost"].error, health["ghost"].duration) == ("connection refused", 0.003)
        assert all(h.up for name, h in health.items() if name not in (recording.dead, "ghost"))
        replayer.seek(start + 3.0)  # back again (a rewind: a new dict): derived, not the end state
        health = replayer.model.health
        assert health[recording.dead].up and health["ghost"].error == NEVER


@pytest.fixture
def window(qtbot, recording: Recording) -> Iterator[SnapshotWindow]:
    launcher = ReplayLauncher(None, quiet=True)
    launcher.open_file(recording.path)
    try:
        qtbot.waitUntil(lambda: bool(launcher.windows) or bool(launcher.last_error),
                        timeout=60_000)
        assert not launcher.last_error, launcher.last_error
        yield launcher.windows[-1]
    finally:
        for opened in list(launcher.windows):
            opened.close()


def _fleet_row(window: SnapshotWindow, name: str) -> dict[str, str]:
    table = window.fleet.table
    names = table.column_texts(0)
    headers = table.source.headers
    row = names.index(name)
    return {h: table.column_texts(c)[row] for c, h in enumerate(headers)}


def test_fleet_page_shows_recorded_health_and_replay_clock_ages(qtbot, window: SnapshotWindow,
                                                                recording: Recording) -> None:
    window.tabs.setCurrentWidget(window.fleet)
    window._force_refresh()
    dead = _fleet_row(window, recording.dead)
    assert dead["state"] == "DOWN" and dead["error"] == recording.dead_error
    assert _fleet_row(window, "ghost")["error"] == "connection refused"
    assert window.fleet.table.grab().save(str(SHOTS / "trimtab-replay-fleet-table.png"))
    assert window.grab().save(str(SHOTS / "trimtab-replay-fleet.png"))
    start, _ = recording.window
    window.scrubber.slider.setValue(6)
    qtbot.waitUntil(lambda: window.scrubber.clock == start + 6, timeout=20_000)
    window._force_refresh()
    alive = next(n for n in window.fleet.table.column_texts(0)
                 if n not in (recording.dead, "ghost"))
    h = window.model.health[alive]
    assert h.last_scrape <= start + 6
    assert _fleet_row(window, alive)["last scrape"] == fmt.ago(start + 6 - h.last_scrape)
    assert _fleet_row(window, alive)["state"] == "up"
    assert _fleet_row(window, "ghost") == {**_fleet_row(window, "ghost"), "state": "DOWN",
                                           "last scrape": "never", "error": NEVER}


def test_annotations_are_markers_with_their_text(qtbot, window: SnapshotWindow,
                                                 recording: Recording) -> None:
    for chart in window.charts:
        assert set(chart.markers) == {"api-2#3", "note#0"}
        line = chart.markers["note#0"]
        assert line.value() == pytest.approx(recording.note_time)
        assert NOTE in line.toolTip()
    window.show_change_card("note#0")
    assert NOTE in window.statusBar().currentMessage()


def _headers(window: SnapshotWindow) -> list[str]:
    return list(window.routes.table.source.headers)


def test_other_percentiles_are_recomputed_from_the_buckets(qtbot, window: SnapshotWindow) -> None:
    window.tabs.setCurrentWidget(window.routes)
    window._force_refresh()
    before = _headers(window)
    for bad in ("p150", "p50, slow", ""):
        assert not window.set_levels_text(bad)
        assert "not changed" in window.statusBar().currentMessage()
    assert _headers(window) == before and window.model.quantiles == (0.5, 0.95, 0.99)
    window.levels_edit.setText("p90, p99.9, p50")
    qtbot.keyClick(window.levels_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "p99.9 (bucket)" in _headers(window), timeout=60_000)
    assert _headers(window)[1:4] == ["p50 (bucket)", "p90 (bucket)", "p99.9 (bucket)"]
    window._force_refresh()
    assert window.routes.table.rowCount() >= 3
    stats = window.model.routes
    for route in stats.values():
        q = route.quantiles
        if {0.5, 0.9, 0.95, 0.999} <= set(q):
            assert q[0.5].value <= q[0.9].value <= q[0.95].value <= q[0.999].value
    texts = dict(zip(window.routes.table.column_texts(0), window.routes.table.column_texts(2),
                     strict=True))
    for name, route in stats.items():
        assert texts[name] == fmt.quantile(route.quantiles.get(0.9))
    selected = window.routes.selected
    assert selected is not None
    assert set(window.routes.percentiles.data) == {"p50", "p90", "p99.9"}
    assert set(window.routes.percentiles.curves) == {"p50", "p90", "p99.9"}  # legend too
    assert len(window.model.snapshot("p90", None, [selected])[selected][0]) > 5
    assert window.grab().save(str(SHOTS / "trimtab-replay-percentiles.png"))


def test_select_route_fills_the_charts_at_the_replay_clock(qtbot, window: SnapshotWindow) -> None:
    window.tabs.setCurrentWidget(window.routes)
    window._force_refresh()
    routes = window.routes.table.column_texts(0)
    window.routes.select_route(routes[-1])  # no refresh tick between: charts filled at once
    assert window.routes.percentiles.point_count() > 0


def test_compare_two_ranges_refuses_bad_ranges_then_compares(qtbot, window: SnapshotWindow,
                                                            recording: Recording) -> None:
    start, end = recording.window
    dialog = window.ask_ranges()
    dialog.set_ranges((start + 20, start + 10), (start, end))
    assert "Range A" in dialog.problem()
    dialog.set_ranges((start, start + 10), (end, end + 600))
    assert "Range B must lie inside" in dialog.problem()
    dialog._check()
    assert dialog.isVisible() and "Range B" in dialog.error.text()
    bad = window.compare_ranges((start + 5, start + 5), (start, end))
    qtbot.waitUntil(lambda: bool(bad.error) or bad.view is not None, timeout=30_000)
    assert "empty" in bad.error and bad.view is None
    bad.error_box.close()
    a, b = (start, start + 10), (end - 10, end)
    dialog.set_ranges(a, b)
    assert dialog.problem() == ""
    dialog._check()
    qtbot.waitUntil(lambda: window.compare_job.view is not None or bool(window.compare_job.error),
                    timeout=60_000)
    job = window.compare_job
    assert job.result is not None, job.error
    assert (job.result.a.start, job.result.a.end) == pytest.approx((round(a[0]), round(a[1])))
    assert (job.result.b.start, job.result.b.end) == pytest.approx((round(b[0]), round(b[1])))
    assert job.view is not None and job.view.table.rowCount() >= 3
    job.view.close()


def test_compare_before_after_a_change_from_its_card(qtbot, window: SnapshotWindow,
                                                     recording: Recording) -> None:
    window.show_change_card("api-2#3")
    buttons = [b for b in window.change_card.buttons.buttons()
               if b.text() == "Compare before / after this change"]
    assert len(buttons) == 1
    buttons[0].click()
    qtbot.waitUntil(lambda: window.compare_job.view is not None or bool(window.compare_job.error),
                    timeout=60_000)
    job = window.compare_job
    assert job.result is not None, job.error
    t = recording.change.time
    a, b = job.result.a, job.result.b
    assert a.end == t and b.start == t + 15.0
    assert a.end - a.start == pytest.approx(b.end - b.start) and a.start >= recording.window[0]
    assert a.label == "before api-2#3"
    job.show_route(job.view.table.column_texts(0)[0])
    assert job.view.grab().save(str(SHOTS / "trimtab-compare-change.png"))
    job.view.close()
    window.change_card.close()
    late = JournalRow(Agent("api-2", "http://127.0.0.1:1"), 4, recording.window[1] - 3.0,
                      "operator", "/x", "config", {}, {}, "", "accepted")
    bad = window.compare_change(late)  # 3 s before the end: no room after it
    qtbot.waitUntil(lambda: bool(bad.error), timeout=30_000)
    assert "no room" in bad.error and bad.view is None
    bad.error_box.close()
