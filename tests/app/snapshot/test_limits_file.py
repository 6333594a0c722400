"""Rate limits in the snapshot file (issue 18): redaction keeps a limit's key spec and drops
anything else in its place; the limits at the window's end are worked back from the journal;
files written before limits were kept open with none; a damaged limits row is refused."""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.replay.limits import RecordedLimits
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.snapshot.limits import limits_at, limits_of
from trimtab.app.snapshot.open import open_snapshot
from trimtab.app.snapshot.redact import MASK, Redactor
from trimtab.app.snapshot.schema import SnapshotError
from trimtab.app.store.store import Store

T0 = 1_700_000_000.0
FIXTURE = Path(__file__).parent / "fixtures" / "snapshot_v1.trimtab"
LIMIT = {"route": "/search", "key": "header:x-api-key", "rate": 2.0, "burst": 10,
         "mode": "enforce"}


def row(agent: str, i: int, t: float, old: object, new: object,
        result: str = "accepted") -> JournalRow:
    return JournalRow(Agent(agent, f"http://{agent}"), i, t, "op", agent, "config", old, new,
                      "why", result)


# A limit created at T0+10 (shadow), enforced at T0+20, its rate lowered at T0+30; another
# removed at T0+40; a refused change at T0+25 that changed nothing.
JOURNAL = [
    row("api-1", 1, T0 + 10, {"limits": {"pk": None}},
        {"limits": {"pk": {**LIMIT, "mode": "shadow"}}}),
    row("api-1", 2, T0 + 20, {"limits": {"pk": {"mode": "shadow"}}},
        {"limits": {"pk": {"mode": "enforce"}}}),
    row("api-1", 3, T0 + 25, None, {"limits": {"pk": {"rate": -1}}}, result="refused"),
    row("api-1", 4, T0 + 30, {"limits": {"pk": {"rate": 5.0}}},
        {"limits": {"pk": {"rate": 2.0}}}),
    row("api-1", 5, T0 + 40, {"limits": {"old": {**LIMIT, "route": "*", "key": "ip"}}},
        {"limits": {"old": None}}),
]
AT_END = {"api-1": {"pk": dict(LIMIT)}}


def test_a_limits_key_spec_is_kept_and_anything_else_in_its_place_masked() -> None:
    red = Redactor()
    assert Redactor().value({"key": "header:x-api-key"}) == {"key": MASK}  # the generic rule
    for spec in ("ip", "global", "header:x-api-key", "jwt:sub"):
        assert red.limit({**LIMIT, "key": spec})["key"] == spec
    # A key value (or a token) where a spec belongs is not a spec: masked.
    for value in ("greedy-bot", "header:x api key", "Bearer abc123XYZ", "jwt:"):
        assert red.limit({**LIMIT, "key": value})["key"] == MASK
    assert red.limit(LIMIT) == LIMIT
    doc = {"limits": {"pk": LIMIT, "gone": None},
           "routes": {"/a": {"ttl": 1.0, "token": "s3cret"}}}
    assert red.config(doc) == {"limits": {"pk": LIMIT, "gone": None},
                               "routes": {"/a": {"ttl": 1.0, "token": MASK}}}
    # A literal secret that happens to read as a spec is still a secret.
    assert Redactor(red.rules.with_secrets(["jwt:sub"])).limit({"key": "jwt:sub"}) == \
        {"key": MASK}


def test_the_limits_at_any_time_undo_the_later_changes() -> None:
    assert limits_at(AT_END, JOURNAL, T0 + 50) == AT_END
    assert limits_at(AT_END, JOURNAL, T0 + 35) == {
        "api-1": {"pk": LIMIT, "old": {**LIMIT, "route": "*", "key": "ip"}}}
    assert limits_at(AT_END, JOURNAL, T0 + 22)["api-1"]["pk"] == {**LIMIT, "rate": 5.0}
    assert limits_at(AT_END, JOURNAL, T0 + 15)["api-1"]["pk"] == {**LIMIT, "rate": 5.0,
                                                                  "mode": "shadow"}
    assert "pk" not in limits_at(AT_END, JOURNAL, T0 + 5)["api-1"]
    assert AT_END == {"api-1": {"pk": dict(LIMIT)}}  # not changed in place
    assert limits_of({"api-1": {"limits": {"pk": LIMIT}}, "lb": {"servers": {}}}) == AT_END


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "history.sqlite")
    for i in range(5):
        store.write_cycle(T0 + 10.0 * i, [("api-1", "trimtab_http_requests_total",
                                           (("route", "/search"), ("status", "200")),
                                           float(i))])
    yield store
    store.close()


def test_export_writes_the_limits_at_the_windows_end(store: Store, tmp_path: Path) -> None:
    """Read after a change past the window's end: the file holds them as before it."""
    configs = {"api-1": {"limits": {"pk": {**LIMIT, "rate": 9.0}}, "routes": {}}}
    late = row("api-1", 6, T0 + 90, {"limits": {"pk": {"rate": 2.0}}},
               {"limits": {"pk": {"rate": 9.0}}})
    out = tmp_path / "w.trimtab"
    info = export_snapshot(store, out, T0, T0 + 45, journal=[*JOURNAL, late], configs=configs)
    assert info.journal == 5  # the late change is not in the window
    with open_snapshot(out) as snap:
        assert snap.limits() == [{"agent": "api-1", "name": "pk", **LIMIT}]
        assert snap.limits_by_agent() == AT_END
        # The journal's limit settings keep their key spec (cards and labels read it).
        assert snap.journal()[0].new == {"limits": {"pk": {**LIMIT, "mode": "shadow"}}}
        recorded = RecordedLimits.from_source(snap, snap.journal())
    assert recorded is not None and recorded.at_end == AT_END


def test_a_file_without_limits_opens_with_none(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "none.trimtab"
    export_snapshot(store, out, T0, T0 + 45)
    older = tmp_path / "older.trimtab"  # written before the limits table existed
    shutil.copy(out, older)
    with sqlite3.connect(older) as conn:
        conn.execute("DROP TABLE limits")
    conn.close()
    for path in (out, older, FIXTURE):
        with open_snapshot(path) as snap:
            assert snap.limits() == [] and snap.limits_by_agent() == {}
            assert RecordedLimits.from_source(snap, snap.journal()) is None


def test_a_damaged_limits_row_is_refused_on_open(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "bad.trimtab"
    export_snapshot(store, out, T0, T0 + 45, configs={"api-1": {"limits": {"pk": LIMIT}}})
    with sqlite3.connect(out) as conn:
        conn.execute("UPDATE limits SET rate = 'fast'")
    conn.close()
    with pytest.raises(SnapshotError, match=r"limits\.rate holds text"):
        open_snapshot(out)


def test_odd_settings_are_left_out_not_written_as_text(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "odd.trimtab"
    odd = {"route": "/search", "key": "greedy-bot", "rate": math.nan, "burst": "ten",
           "mode": "shadow"}
    export_snapshot(store, out, T0, T0 + 45, configs={"api-1": {"limits": {"pk": odd}}})
    with open_snapshot(out) as snap:
        assert snap.limits_by_agent() == {"api-1": {"pk": {"route": "/search", "key": MASK,
                                                           "mode": "shadow"}}}
    assert b"greedy-bot" not in out.read_bytes()
