"""A balancer's own rate limits survive an incident snapshot (issue 18), on real components: a
real built-in balancer process (``python -m trimtab.agent balance --limit ...``, one limit in
shadow) in front of a real upstream, scraped by a real engine into a model that keeps a real
history store. The limit is enforced and a second one (keyed by an API-key header) created
through the balancer's control API; the window is exported by the cockpit's export job and
reopened in a real snapshot window: its Limits page shows the balancer's limits as they were
at the replay clock, the HTML report lists them, and the file holds no token. A copy whose
balancer-limits part is damaged opens nothing and says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from trimtab.app.cli.snapshot import add_snapshot_commands
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import APPLIED, Agent, JournalRow
from trimtab.app.snapshot.open import open_snapshot
from trimtab.app.snapshot.report import render_html
from trimtab.app.store.store import Store
from trimtab.app.targets import file as targets_file
from trimtab.app.ui.replay.window import ReplayLauncher, SnapshotWindow

from tests.app.ui.test_balancer_limits_gui import BALANCER, KEY, LIMIT, WRITE_TOKEN, Setup
from tests.support import wait_for

NEW = "per-key"
NEW_FIELDS = {"route": "*", "key": "header:x-api-key", "rate": 50.0, "burst": 100,
              "mode": "shadow"}
REASON = "greedy client at the edge"
CYCLES = 6  # store cycles recorded before and after the change


def _cycles(store: Store) -> int:
    return (store.last_cycle() or (0, 0))[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Shadow decisions recorded, then the limit enforced and another created; exported."""
    folder = tmp_path_factory.mktemp("balancer-snapshot")
    store = Store(folder / "history.sqlite", chunk_cycles=8)
    setup = Setup(store)
    try:
        model, agent = setup.model, Agent.from_target(setup.target)

        def last(metric: str) -> float:
            found = model.snapshot(metric, keys=[KEY]).get(KEY)
            return float(found[1][-1]) if found is not None and len(found[1]) else 0.0

        def cycles_on(n: int) -> None:  # n more cycles in the history store
            first = _cycles(store)
            wait_for(lambda: _cycles(store) >= first + n, timeout=60, what=f"{n} cycles")

        start = time.time()
        wait_for(lambda: last("limit_shadow") > 0 and BALANCER in model.balancer_limits,
                 timeout=60, what="the balancer's shadow decisions")
        cycles_on(CYCLES)  # a stretch of shadow decisions before the change
        with ControlClient(WRITE_TOKEN) as client:
            etag = client.read_balancer_limits(agent).etag
            enforced = client.set_balancer_limit(agent, LIMIT, {"mode": "enforce"}, REASON,
                                                 etag).outcomes[agent]
            assert enforced.status == APPLIED, enforced
            created = client.set_balancer_limit(agent, NEW, NEW_FIELDS, "per API key too",
                                                enforced.etag).outcomes[agent]
            assert created.status == APPLIED, created
            wait_for(lambda: last("limit_limited") > 0
                     and NEW in model.balancer_limits.get(BALANCER, {}),
                     timeout=60, what="the enforced limit's refusals and the new limit")
            cycles_on(CYCLES)  # and of refusals after it, in the store too
            rows, errors = client.journal([agent], since=start)
            assert not errors
        change = next(r.time for r in rows if r.reason == REASON)
        end = time.time()
        out = _gui_export(model, rows, setup.target, start, end, folder / "edge.trimtab")
        yield {"path": out, "start": start, "end": end, "change": change, "rows": rows,
               "store": store, "target": setup.target}
    finally:
        setup.close()
        store.close()


def _gui_export(model: Any, rows: list[JournalRow], target: Any, start: float, end: float,
                out: Path) -> Path:
    """The cockpit's File → Export job, given what the window holds."""
    from PySide6.QtWidgets import QApplication
    from trimtab.app.ui.export import ExportJob

    window = SimpleNamespace(model=model, journal_rows=dict(enumerate(rows)),
                             export_targets=[target])
    job = ExportJob(window, start, end, "edge limits", out)
    done: list[object] = []
    job.done.connect(done.append)
    job.failed.connect(done.append)
    job.progressed.connect(lambda *_: None)  # release() disconnects every signal
    job.start()
    wait_for(lambda: (QApplication.processEvents(), bool(done))[1], timeout=120, what="export")
    job.release()
    assert not isinstance(done[0], str), done[0]
    return out


@pytest.fixture
def launcher(qtbot) -> Iterator[ReplayLauncher]:
    launcher = ReplayLauncher(None)
    try:
        yield launcher
    finally:
        launcher.stop()


def _balancer_rows(window: SnapshotWindow) -> dict[str, tuple[str, ...]]:
    page = window.limits
    return {line.name: (line.where, line.route, line.key, f"{line.rate:g}", str(line.burst),
                        line.mode) for line in page.lines if line.at_balancer}


def test_a_damaged_balancer_limits_part_opens_no_window_and_says_why(
        qtbot, recorded, launcher: ReplayLauncher, tmp_path: Path) -> None:
    for what, sql in (("text", "UPDATE balancer_limits SET rate = 'fast'"),
                      ("column", "ALTER TABLE balancer_limits DROP COLUMN key")):
        bad = tmp_path / f"damaged-{what}.trimtab"
        shutil.copy(recorded["path"], bad)
        with sqlite3.connect(bad) as conn:
            conn.execute(sql)
        conn.close()
        launcher.last_error = ""
        launcher.open_file(bad)
        qtbot.waitUntil(lambda: bool(launcher.last_error), timeout=30_000)
        assert not launcher.windows, what
        text = launcher.error_box.text() if launcher.error_box is not None else ""
        assert launcher.error_box is not None and launcher.error_box.isVisible(), what
        assert "balancer" in launcher.last_error and bad.name in launcher.last_error, \
            launcher.last_error
        assert "Traceback" not in text
        launcher.error_box.close()


def test_the_file_holds_the_balancers_limits_at_the_end_and_no_token(recorded) -> None:
    path: Path = recorded["path"]
    with open_snapshot(path) as snap:
        assert snap.balancer_limits_by_name() == {BALANCER: {
            LIMIT: {"route": "*", "key": "ip", "rate": 1.0, "burst": 2, "mode": "enforce"},
            NEW: NEW_FIELDS}}
        created = next(r for r in snap.journal() if r.what == f"limits.{NEW}")
        assert created.new == NEW_FIELDS  # the key spec kept in the journal too
        page = render_html(snap)
    assert WRITE_TOKEN.encode() not in path.read_bytes()
    section = page[page.index("<h2>Rate limits</h2>"):page.index("<h2>Change timeline</h2>")]
    assert f"<td>{BALANCER} (balancer)</td><td>{LIMIT}</td><td>*</td><td>ip</td>" \
           "<td>1/s</td><td>2</td><td>enforce</td>" in section, section
    assert f"<td>{BALANCER} (balancer)</td><td>{NEW}</td><td>*</td>" \
           "<td>header:x-api-key</td>" in section, section
    assert "limited (429)" in section


def test_the_reopened_limits_page_shows_them_as_at_the_replay_clock(
        qtbot, recorded, launcher: ReplayLauncher, tmp_path: Path) -> None:
    launcher.open_file(recorded["path"])
    qtbot.waitUntil(lambda: bool(launcher.windows) or bool(launcher.last_error),
                    timeout=60_000)
    assert not launcher.last_error, launcher.last_error
    window = launcher.windows[-1]
    window.resize(1366, 768)
    window.tabs.setCurrentWidget(window.limits)
    start = window.session.replayer.start
    window.scrubber.slider.setValue(window.scrubber.slider.maximum())
    where = f"{BALANCER} (balancer)"
    qtbot.waitUntil(lambda: _balancer_rows(window).get(LIMIT, ("",) * 6)[5] == "enforce"
                    and NEW in _balancer_rows(window), timeout=30_000)
    assert _balancer_rows(window) == {
        LIMIT: (where, "*", "ip", "1", "2", "enforce"),
        NEW: (where, "*", "header:x-api-key", "50", "100", "shadow")}
    assert where in window.limits.table.column_texts(0)
    # The decisions came back too: the enforced limit's refusals are charted.
    qtbot.waitUntil(lambda: f"* {LIMIT} limited/s" in window.limits.limited.data,
                    timeout=30_000)
    _t, limited = window.limits.limited.data[f"* {LIMIT} limited/s"]
    assert np.nanmax(limited) > 0
    assert window.limits.grab().save(str(tmp_path / "limits-end.png"))  # to look at
    # Before the change: in shadow, and the other limit not created yet.
    window.scrubber.slider.setValue(int(recorded["change"] - start) - 1)
    qtbot.waitUntil(lambda: _balancer_rows(window).get(LIMIT, ("",) * 6)[5] == "shadow",
                    timeout=30_000)
    assert set(_balancer_rows(window)) == {LIMIT}
    qtbot.waitUntil(lambda: f"* {LIMIT} would-be-limited/s" in window.limits.limited.data,
                    timeout=30_000)
    assert not window.limits.change_button.isEnabled()  # a snapshot is read-only
    assert window.limits.grab().save(str(tmp_path / "limits-before.png"))


def test_the_headless_export_reads_them_from_the_balancer(
        recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``trimtab snapshot export``: the balancer's limits read from its control API."""
    monkeypatch.setenv("TRIMTAB_TOKEN", WRITE_TOKEN)
    toml = tmp_path / "targets.toml"
    targets_file.save(toml, [dataclasses.replace(recorded["target"], token="")])
    parser = argparse.ArgumentParser(prog="trimtab")
    add_snapshot_commands(parser.add_subparsers(dest="command"))
    out, log = tmp_path / "cli.trimtab", io.StringIO()
    args = parser.parse_args(["snapshot", "export", "--from", repr(recorded["start"]),
                              "--to", repr(recorded["end"]), "--out", str(out),
                              "--store", str(recorded["store"].path), "--targets", str(toml)])
    assert args.func(args, log) == 0, log.getvalue()
    assert "balancer limits" not in log.getvalue(), log.getvalue()
    with open_snapshot(out) as snap, open_snapshot(recorded["path"]) as gui:
        assert snap.balancer_limits() == gui.balancer_limits() != []
    assert WRITE_TOKEN.encode() not in out.read_bytes()
