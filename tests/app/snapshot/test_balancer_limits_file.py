"""A balancer's own rate limits in the snapshot file (issue 18): a damaged part is refused with
a message naming it and opens nothing; a file written before the part opens with none; the
limits are written as they were at the window's end (the balancer's later changes undone,
an HAProxy re-apply of map values skipped), redacted (the key spec kept, a secret not), and
its journaled changes keep their key spec; a replay puts them in the model at any clock; the
report lists them beside the instances' limits."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from trimtab.app.control.types import BALANCER, Agent, JournalRow
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.limits import RecordedLimits
from trimtab.app.replay.session import snapshot_session
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.snapshot.limits import balancer_limits_at
from trimtab.app.snapshot.open import open_snapshot
from trimtab.app.snapshot.redact import MASK
from trimtab.app.snapshot.report import render_html
from trimtab.app.snapshot.schema import SnapshotError
from trimtab.app.store.store import Store

T0 = 1_700_000_000.0
FIXTURE = Path(__file__).parent / "fixtures" / "snapshot_v1.trimtab"
LB = Agent("edge-lb", "http://127.0.0.1:1", BALANCER)
SECRET = "lb-token-do-not-leak"
PER_IP = {"route": "*", "key": "ip", "rate": 1.0, "burst": 2, "mode": "enforce"}
PER_KEY = {"route": "/search", "key": "header:x-api-key", "rate": 5.0, "burst": 10,
           "mode": "shadow"}


def row(i: int, t: float, what: str, old: object, new: object, who: str = "op",
        result: str = "accepted") -> JournalRow:
    return JournalRow(LB, i, t, who, "balancer", what, old, new, "why", result)


# per-ip: shadow → enforce at T0+20, then off by the operator at T0+30 and, after an HAProxy
# reload, re-applied by the agent with map values at T0+31; per-key created at T0+10;
# a third limit removed at T0+40; a refused change at T0+25.
JOURNAL = [
    row(1, T0 + 10, "limits.per-key", None, dict(PER_KEY)),
    row(2, T0 + 20, "limits.per-ip", {"mode": "shadow"}, {"mode": "enforce"}),
    row(3, T0 + 25, "limits", None, {"per-ip": {"rate": -1}}, result="refused"),
    row(4, T0 + 30, "limits.per-ip", {"mode": "enforce"}, {"mode": "off"}),
    row(5, T0 + 31, "limits.per-ip", {"mode": "2"}, {"mode": 0}, who="trimtab-agent"),
    row(6, T0 + 40, "limits.gone", {**PER_IP, "mode": "shadow"}, None),
]
LIVE = {"edge-lb": {"per-ip": {**PER_IP, "mode": "off"}, "per-key": dict(PER_KEY)}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "history.sqlite")
    for i in range(6):
        store.write_cycle(T0 + 10.0 * i, [("edge-lb", "trimtab_http_requests_total",
                                           (("route", "/search"), ("status", "200")),
                                           float(i))])
    yield store
    store.close()


def _export(store: Store, out: Path, end: float = T0 + 50, **kw: object) -> Path:
    export_snapshot(store, out, T0, end, journal=JOURNAL, balancer_limits=LIVE, **kw)
    return out


# -- bad input first ---------------------------------------------------------------------------

def test_a_damaged_balancer_limits_part_is_refused_and_opens_nothing(
        store: Store, tmp_path: Path) -> None:
    good = _export(store, tmp_path / "good.trimtab")
    damage = {
        "text rate": ("UPDATE balancer_limits SET rate = 'fast'",
                      r"balancer_limits\.rate holds text"),
        "text burst": ("UPDATE balancer_limits SET burst = 'lots'",
                       r"balancer_limits\.burst holds text"),
        "a column missing": ("ALTER TABLE balancer_limits DROP COLUMN mode",
                             r"its balancer limits cannot be read"),
        "bytes for a name": ("UPDATE balancer_limits SET name = x'07ff' WHERE name = 'per-ip'",
                             r"balancer_limits\.name holds blob"),
    }
    for what, (sql, message) in damage.items():
        bad = tmp_path / f"{what}.trimtab"
        shutil.copy(good, bad)
        with sqlite3.connect(bad) as conn:
            conn.execute(sql)
        conn.close()
        before = bad.read_bytes()
        with pytest.raises(SnapshotError, match=message) as err:
            snapshot_session(bad).close()  # what File → Open runs before any window
        assert bad.name in str(err.value) and "ask for a new export" in str(err.value), what
        assert bad.read_bytes() == before, what  # read-only: nothing written to the file


def test_a_file_without_the_part_opens_with_no_balancer_limits(store: Store,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "none.trimtab"
    export_snapshot(store, out, T0, T0 + 50)
    older = tmp_path / "older.trimtab"  # written before the balancer limits were kept
    shutil.copy(out, older)
    with sqlite3.connect(older) as conn:
        conn.execute("DROP TABLE balancer_limits")
    conn.close()
    for path in (out, older, FIXTURE):
        with open_snapshot(path) as snap:
            assert snap.balancer_limits() == [] and snap.balancer_limits_by_name() == {}
            assert RecordedLimits.from_source(snap, snap.journal()) is None


# -- what the file holds -----------------------------------------------------------------------

def test_the_balancer_limits_at_any_time_undo_its_later_changes() -> None:
    assert balancer_limits_at(LIVE, JOURNAL, T0 + 50) == LIVE
    at_35 = balancer_limits_at(LIVE, JOURNAL, T0 + 35)["edge-lb"]
    assert at_35["gone"] == {**PER_IP, "mode": "shadow"}
    # the re-apply's map values ({"mode": "2"}) are no settings: skipped, never written back
    assert at_35["per-ip"]["mode"] == "off"
    assert balancer_limits_at(LIVE, JOURNAL, T0 + 25)["edge-lb"]["per-ip"]["mode"] == "enforce"
    assert balancer_limits_at(LIVE, JOURNAL, T0 + 15)["edge-lb"]["per-ip"]["mode"] == "shadow"
    assert "per-key" not in balancer_limits_at(LIVE, JOURNAL, T0 + 5)["edge-lb"]
    # an instance's config changes are not the balancer's, and the reverse
    instance = JournalRow(Agent("api-1", "http://api-1"), 9, T0 + 45, "op", "api-1", "config",
                          {"limits": {"per-ip": {"mode": "shadow"}}},
                          {"limits": {"per-ip": {"mode": "off"}}}, "", "accepted")
    assert balancer_limits_at(LIVE, [instance], T0) == LIVE
    assert LIVE["edge-lb"]["per-ip"]["mode"] == "off"  # not changed in place


def test_export_writes_them_redacted_as_at_the_windows_end(store: Store, tmp_path: Path) -> None:
    live = {"edge-lb": {**LIVE["edge-lb"],
                        "leaky": {**PER_IP, "key": SECRET, "route": f"/t/{SECRET}"}}}
    late = row(7, T0 + 90, "limits.per-key", {"mode": "shadow"}, {"mode": "enforce"})
    out = tmp_path / "w.trimtab"
    target = SimpleNamespace(name="edge-lb", url="http://127.0.0.1:1/_trimtab/metrics",
                             kind="balancer", token=SECRET)
    export_snapshot(store, out, T0, T0 + 50, journal=[*JOURNAL, late], targets=[target],
                    balancer_limits={"edge-lb": {**live["edge-lb"],
                                                 "per-key": {**PER_KEY, "mode": "enforce"}}})
    with open_snapshot(out) as snap:
        by_name = snap.balancer_limits_by_name()
        assert by_name["edge-lb"]["per-ip"] == {**PER_IP, "mode": "off"}
        assert by_name["edge-lb"]["per-key"] == PER_KEY  # the late change undone
        assert by_name["edge-lb"]["leaky"]["key"] == MASK
        assert SECRET not in by_name["edge-lb"]["leaky"]["route"]
        assert snap.limits() == []  # an instance's table: the balancer's are apart
        # The balancer's journaled limit settings keep their key spec (labels read it).
        assert snap.journal()[0].new == PER_KEY
    assert SECRET.encode() not in out.read_bytes()


def test_a_replay_puts_them_in_the_model_at_the_clock(store: Store, tmp_path: Path) -> None:
    session = snapshot_session(_export(store, tmp_path / "r.trimtab"))
    try:
        model: FleetModel = session.replayer.model
        session.replayer.seek(T0 + 50)
        assert model.balancer_limits == LIVE and "edge-lb" not in model.configs
        session.replayer.seek(T0 + 22)
        assert model.balancer_limits["edge-lb"]["per-ip"]["mode"] == "enforce"
        assert set(model.balancer_limits["edge-lb"]) == {"per-ip", "per-key", "gone"}
        session.replayer.seek(T0 + 5)
        assert set(model.balancer_limits["edge-lb"]) == {"per-ip", "gone"}
    finally:
        session.close()


def test_the_report_lists_them_beside_the_instances_limits(store: Store,
                                                            tmp_path: Path) -> None:
    out = _export(store, tmp_path / "rep.trimtab",
                  configs={"api-1": {"limits": {"pk": dict(PER_KEY)}}})
    with open_snapshot(out) as snap:
        page = render_html(snap)
    section = page[page.index("<h2>Rate limits</h2>"):page.index("<h2>Change timeline</h2>")]
    assert "<td>edge-lb (balancer)</td><td>per-ip</td><td>*</td><td>ip</td><td>1/s</td>" \
           "<td>2</td><td>off</td>" in section, section
    assert "<td>api-1</td><td>pk</td>" in section
