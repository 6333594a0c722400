"""A target discovery saw leave (TargetHealth.gone) stays gone in a snapshot: in the file, in
a replay of it and in its report; a version 2 file written before the column existed still
opens, its targets read as present."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from trimtab.app.model.fleet import FleetModel, TargetHealth
from trimtab.app.replay.health import RecordedHealth
from trimtab.app.snapshot.export import export_snapshot, open_snapshot
from trimtab.app.snapshot.report import render_html
from trimtab.app.store.store import Store
from trimtab.collectors.scrape import ScrapeTarget

from tests.app.snapshot.test_snapshot import T0, fill

LEFT = T0 + 200.0  # when discovery saw api-3 leave


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    store = Store(tmp_path / "history.db", chunk_cycles=64)
    try:
        fill(store, 300)
        targets = [ScrapeTarget(n, f"http://127.0.0.1:{9000 + i}/metrics")
                   for i, n in enumerate(("api-1", "api-3"))]
        health = {"api-1": TargetHealth("api-1", "instance", up=True, last_scrape=T0 + 299,
                                        error=""),
                  "api-3": TargetHealth("api-3", "instance", up=False, last_scrape=T0 + 199,
                                        error="", gone=LEFT)}
        return export_snapshot(store, tmp_path / "incident.trimtab", T0 + 10, T0 + 290,
                               targets=targets, health=health).path
    finally:
        store.close()


def _replayed(path: Path) -> dict[str, TargetHealth]:
    model = FleetModel()
    with open_snapshot(path) as snap:
        start, end = snap.window
        recorded = RecordedHealth.from_source(snap)
    recorded.apply(model, end, start, end)  # at the recorded moment: the stored state
    return model.health


def test_a_gone_target_stays_gone_in_the_file_the_replay_and_the_report(exported: Path) -> None:
    with open_snapshot(exported) as snap:
        health = {t.name: t.health for t in snap.target_info()}
        page = render_html(snap)
    assert (health["api-3"]["gone"], health["api-1"]["gone"]) == (LEFT, 0.0)
    plain = sqlite_utils.Database(exported)  # readable without trimtab: a plain REAL column
    assert plain.table("health").columns_dict["gone"] is float
    plain.close()
    replayed = _replayed(exported)
    assert (replayed["api-3"].gone, replayed["api-3"].up) == (LEFT, False)
    assert replayed["api-1"].gone == 0.0 and replayed["api-1"].up
    # The report says gone, never down, for a target that left.
    assert "<td>api-3</td><td>instance</td><td>http://127.0.0.1:9001/metrics</td><td>gone</td>" \
        in page
    assert "<td>api-1</td><td>instance</td><td>http://127.0.0.1:9000/metrics</td><td>up</td>" \
        in page


def test_a_version_2_file_without_the_column_still_opens(exported: Path,
                                                         tmp_path: Path) -> None:
    older = tmp_path / "older.trimtab"
    shutil.copy(exported, older)
    conn = sqlite3.connect(older)
    conn.execute("ALTER TABLE health DROP COLUMN gone")  # as written before the column
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    with open_snapshot(older) as snap:
        health = {t.name: t.health for t in snap.target_info()}
        page = render_html(snap)
    assert "gone" not in health["api-3"] and health["api-3"]["up"] == 0
    replayed = _replayed(older)
    assert replayed["api-3"].gone == 0.0 and not replayed["api-3"].up  # down, as recorded
    assert "<td>api-3</td><td>instance</td><td>http://127.0.0.1:9001/metrics</td><td>down</td>" \
        in page
