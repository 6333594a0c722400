"""Snapshots: round trip against a real store, redaction canaries, bad files, schema v1.

Run ``python tests/app/snapshot/test_snapshot.py`` to regenerate the committed schema
version 1 fixture (``fixtures/snapshot_v1.trimtab``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from trimtab.app.cli.snapshot import add_snapshot_commands, cli_export, cli_report, parse_time
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model.fleet import TargetHealth
from trimtab.app.snapshot.export import (
    RedactionRules,
    SnapshotError,
    export_snapshot,
    open_snapshot,
)
from trimtab.app.store.store import Store
from trimtab.collectors.scrape import ScrapeTarget

FIXTURE = Path(__file__).parent / "fixtures" / "snapshot_v1.trimtab"
T0 = 1_700_000_000.0
ROUTES = ("/users/{id}", "/orders", "/health")
TARGETS = ("api-1", "api-2", "api-3")
LES = ("0.005", "0.025", "0.1", "0.25", "1.0", "+Inf")
HIST = "trimtab_http_request_duration_seconds_bucket"
REQS = "trimtab_http_requests_total"


def fleet_rows(rng: np.random.Generator, state: dict[tuple[str, str], np.ndarray],
               cycle: int, reset_at: int | None = None
               ) -> list[tuple[str, str, tuple[tuple[str, str], ...], float]]:
    """One cycle of a realistic scrape: cumulative buckets and counters, a gauge with gaps."""
    rows = []
    for target in TARGETS:
        for r, route in enumerate(ROUTES):
            counts = state.setdefault((target, route), np.zeros(len(LES)))
            if reset_at == cycle and target == "api-2":
                counts[:] = 0  # the instance restarted: counters start again
            # Most requests fast, a tail; /orders (r=1) slower, /health (r=2) fastest.
            shape = np.array([40, 120, 60, 15, 4, 1]) if r != 1 else np.array([2, 10, 40, 80, 30, 2])
            new = rng.poisson(shape / (1 + r % 2 * 0.5 + (r == 2) * 2))
            counts += np.cumsum(new)  # cumulative per bucket, as `le` grows
            for le, value in zip(LES, counts, strict=True):
                rows.append((target, HIST, (("route", route), ("le", le)), float(value)))
            rows.append((target, REQS, (("route", route), ("status", "200")), float(counts[-1])))
        gauge = math.nan if cycle % 17 == 0 else float(rng.integers(0, 40))
        rows.append((target, "trimtab_in_flight", (), gauge))
    return rows


def fill(store: Store, cycles: int, every: float = 1.0, reset_at: int | None = None) -> None:
    rng = np.random.default_rng(8)
    state: dict[tuple[str, str], np.ndarray] = {}
    for i in range(cycles):
        store.write_cycle(T0 + i * every, fleet_rows(rng, state, i, reset_at))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "history.db", chunk_cycles=64)  # folded chunks and an unfolded head
    try:
        fill(s, 300, reset_at=150)
        yield s
    finally:
        s.close()


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key][0], b[key][0])
        np.testing.assert_array_equal(a[key][1], b[key][1])  # NaN == NaN here


def test_round_trip_sample_for_sample(store: Store, tmp_path: Path) -> None:
    start, end = T0 + 40, T0 + 260
    seen: list[tuple[int, int]] = []
    info = export_snapshot(store, tmp_path / "incident.trimtab", start, end,
                           progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)  # the total first, then per metric
    with open_snapshot(info.path) as snap:
        assert snap.targets() == store.targets()
        assert snap.series() == store.series()
        assert snap.window == (start, end)
        total = 0
        for name in sorted({k.name for k in store.series()}):
            want = store.query(name, start=start, end=end, max_points=10**9)
            got = snap.query(name, start=start, end=end, max_points=10**9)
            _same(want, got)
            total += sum(len(t) for t, _ in want.values())
            for agg in ("last", "mean", "max", "min"):  # downsampled the same way
                _same(store.query(name, start=start, end=end, max_points=17, agg=agg),
                      snap.query(name, start=start, end=end, max_points=17, agg=agg))
        assert info.samples == total == 221 * len(store.series())
        sub = snap.query(HIST, {"route": "/orders"}, start=start, end=end, max_points=50,
                         target="api-2")
        assert {k.target for k in sub} == {"api-2"} and len(sub) == len(LES)
        assert any(np.isnan(v).any() for _, v in snap.query(
            "trimtab_in_flight", start=start, end=end, max_points=10**9).values())
        assert snap.meta["schema_version"] == "2" and snap.meta["app_version"]
    readable = sqlite_utils.Database(info.path)  # without trimtab: plain tables and columns
    assert readable.table("samples").count == info.samples
    assert {c.type for c in readable.table("samples").columns} == {"INTEGER", "REAL"}
    readable.close()


def test_long_window_gets_rollups_that_answer_like_the_store(tmp_path: Path) -> None:
    with Store(tmp_path / "long.db", chunk_cycles=128) as store:
        fill(store, 800, every=10.0)  # 2 h 13 min at 10 s
        start = math.ceil(T0 / 600) * 600.0  # steps aligned with the rollups' 60 s grid
        end = start + 7200.0
        info = export_snapshot(store, tmp_path / "long.trimtab", start, end)
        rows = sqlite3.connect(info.path).execute(
            "SELECT step, COUNT(*) FROM rollups GROUP BY step").fetchall()
        assert rows and rows[0][0] == 60.0
        with open_snapshot(info.path) as snap:
            for agg in ("last", "max"):  # steps of 600 s, aligned: rollups give the raw answer
                want = store.query(REQS, start=start, end=end, max_points=12, agg=agg)
                _same(want, snap.query(REQS, start=start, end=end, max_points=12, agg=agg))


CANARY = "canary7Q"  # every planted secret contains it; redacted output must not


def _planted() -> dict:
    targets = [ScrapeTarget("api-1", f"http://ops:{CANARY}pw@127.0.0.1:9001/metrics"
                            f"?token={CANARY}tok&view=all", token=f"{CANARY}token1")]
    traces = [{"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_id": None,
               "name": "GET /users/{id}", "route": "/users/{id}", "method": "GET",
               "status": 200, "instance": "api-1", "cache": "miss", "start": T0 + 100,
               "duration_ms": 12.5, "cursor": 3,
               "headers": {"Authorization": f"Bearer {CANARY}hdr"},
               "children": [{"span_id": "ef" * 8, "name": "db", "start": T0 + 100,
                             "duration_ms": 4.0,
                             "tags": {"http.request.header.cookie": f"sid={CANARY}cookie",
                                      "db.statement": f"SELECT 1 -- {CANARY}token1",
                                      "http.url": f"https://x.test/a?api_key={CANARY}q"}}]}]
    journal = [JournalRow(Agent("api-1", "http://127.0.0.1:9001"), 7, T0 + 120, "ops",
                          "api-1", "config", {"routes": {"/users/{id}": {"ttl": 5}}},
                          {"routes": {"/users/{id}": {"ttl": 30}}},
                          f"raise TTL; curl -H 'Authorization: Bearer {CANARY}jr'",
                          "accepted", f"see http://u:{CANARY}d@h/x?secret={CANARY}s")]
    health = {"api-1": TargetHealth("api-1", "instance", up=False,
                                    error=f"GET http://ops:{CANARY}e@127.0.0.1:9001 failed")}
    return {"targets": targets, "traces": traces, "journal": journal, "health": health,
            "notes": f"pager note: password={CANARY}note, token {CANARY}token1",
            "annotations": [(T0 + 130, f"deploy with key={CANARY}ann")],
            "redaction": RedactionRules(label_names=("^tenant_secret$",),
                                        value_patterns=(r"sk_live_\w+",))}


def test_no_canary_byte_anywhere_in_the_file(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=16) as store:
        for i in range(40):
            store.write_cycle(T0 + 90 + i, [
                ("api-1", REQS, (("route", f"/pay?sig={CANARY}sig"), ("status", "200")), 1.0 + i),
                ("api-1", "tenant_up", (("tenant_secret", f"{CANARY}lab"),), 1.0),
                ("api-1", "tenant_up", (("tenant", f"sk_live_{CANARY}"),), 1.0)])
        info = export_snapshot(store, tmp_path / "out.trimtab", T0, T0 + 200, **_planted())
    raw = info.path.read_bytes()
    assert CANARY.encode() not in raw and CANARY.encode("utf-16-le") not in raw
    assert b"REDACTED" in raw
    assert sorted(os.listdir(tmp_path)) == ["h.db", "out.trimtab"]  # no WAL, journal, partial
    conn = sqlite3.connect(info.path)  # a checkpoint (were there a WAL) changes nothing
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert CANARY.encode() not in info.path.read_bytes()
    with open_snapshot(info.path) as snap:  # what was kept is still useful
        trace = snap.traces()[0]
        assert trace["route"] == "/users/{id}" and trace["children"][0]["name"] == "db"
        row = snap.journal()[0]
        assert row.new == {"routes": {"/users/{id}": {"ttl": 30}}} and "raise TTL" in row.reason
        assert snap.target_info()[0].url == "http://127.0.0.1:9001/metrics?token=REDACTED&view=all"
        assert snap.annotations()[0]["text"] == "deploy with key=REDACTED"


def test_export_failure_leaves_no_file_and_keeps_the_old_one(store: Store,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "incident.trimtab"
    out.write_bytes(b"previous export")

    def crash(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_snapshot(store, out, T0, T0 + 100, progress=crash)
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "history.db", "history.db-shm", "history.db-wal", "incident.trimtab"]


@pytest.mark.parametrize("start,end", [(T0 + 10, T0), (T0, T0), (math.nan, T0), (T0, "x")])
def test_bad_window_is_refused_and_writes_nothing(store: Store, tmp_path: Path,
                                                  start: object, end: object) -> None:
    with pytest.raises(ValueError, match="window|finite"):
        export_snapshot(store, tmp_path / "x.trimtab", start, end)
    assert not (tmp_path / "x.trimtab").exists()


def test_export_never_overwrites_the_history_or_a_folder(store: Store, tmp_path: Path) -> None:
    before = len(store.query(REQS, start=T0, end=T0 + 300, max_points=10**9))
    for target in (store.path, tmp_path):
        with pytest.raises(ValueError, match="choose a new file name"):
            export_snapshot(store, target, T0, T0 + 100)
    assert len(store.query(REQS, start=T0, end=T0 + 300, max_points=10**9)) == before == 9
    with pytest.raises(ValueError, match="no such folder"):
        export_snapshot(store, tmp_path / "nope" / "x.trimtab", T0, T0 + 100)


@pytest.fixture
def good(store: Store, tmp_path: Path) -> Path:
    return export_snapshot(store, tmp_path / "good.trimtab", T0, T0 + 200).path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_closing_while_another_thread_reads_is_an_error_not_a_crash(good: Path) -> None:
    """A replay or compare thread can outlive its window; closing under it used to segfault."""
    import threading

    snap = open_snapshot(good)
    name = snap.series()[0].name
    errors: list[BaseException] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        try:
            while True:
                snap.query(name, start=T0, end=T0 + 200, max_points=10_000)
                reads += 1
        except sqlite3.ProgrammingError as exc:  # closed: a clear error, the thread ends
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    while reads < 3:
        threading.Event().wait(0.01)
    snap.close()
    thread.join(30)
    assert not thread.is_alive() and errors and "closed" in str(errors[0])


def test_truncated_file(good: Path) -> None:
    data = good.read_bytes()
    for size in (len(data) - 4096, len(data) // 2, 50):
        good.write_bytes(data[:size])
        with pytest.raises(SnapshotError, match="truncated.*copy the file again"):
            open_snapshot(good)


def test_corrupt_file(good: Path) -> None:
    data = bytearray(good.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for i in range(2 * page, len(data) - page, page):  # scribble over the body of every page
        data[i + 8:i + page - 8] = b"\xa5" * (page - 16)
    good.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="corrupt snapshot"):
        open_snapshot(good)


def test_future_schema_version(good: Path) -> None:
    conn = sqlite3.connect(good)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SnapshotError, match="newer trimtab.*schema 99.*upgrade"):
        open_snapshot(good)


def test_sqlite_file_that_is_not_a_snapshot(store: Store, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="not a trimtab snapshot.*history store"):
        open_snapshot(store.path)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    before = _digest(other)
    with pytest.raises(SnapshotError, match="not a trimtab snapshot"):
        open_snapshot(other)
    assert _digest(other) == before


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip file" * 100, b"hello\n"])
def test_not_sqlite_at_all(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.trimtab"
    path.write_bytes(content)
    with pytest.raises(SnapshotError, match="not an SQLite file"):
        open_snapshot(path)
    with pytest.raises(SnapshotError, match="no such snapshot"):
        open_snapshot(tmp_path / "missing.trimtab")


def test_open_is_read_only(good: Path) -> None:
    before = _digest(good)
    with open_snapshot(good) as snap:
        snap.query(HIST, start=T0, end=T0 + 200, max_points=10)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            snap._conn.execute("DELETE FROM samples")
    assert _digest(good) == before
    assert sorted(p.name for p in good.parent.iterdir() if p.name.startswith("good")) == [
        "good.trimtab"]


# --- schema version 1: the previous layout, kept readable ---------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE series (id INTEGER PRIMARY KEY, target TEXT NOT NULL, name TEXT NOT NULL,
    labels_json TEXT NOT NULL);
CREATE TABLE samples (series_id INTEGER NOT NULL, t REAL NOT NULL, value REAL,
    PRIMARY KEY (series_id, t)) WITHOUT ROWID;
CREATE TABLE targets (name TEXT PRIMARY KEY, url TEXT NOT NULL, kind TEXT NOT NULL,
    interval REAL, timeout REAL, up INTEGER, error TEXT);
CREATE TABLE traces (id INTEGER PRIMARY KEY, trace_id TEXT, span_id TEXT, parent_id TEXT,
    name TEXT, route TEXT, method TEXT, status INTEGER, instance TEXT, cache TEXT,
    start REAL, duration_ms REAL);
CREATE TABLE spans (id INTEGER PRIMARY KEY, trace_row INTEGER NOT NULL, span_id TEXT,
    name TEXT, start REAL, duration_ms REAL, tags_json TEXT NOT NULL);
CREATE TABLE journal (id INTEGER PRIMARY KEY, source TEXT NOT NULL, source_kind TEXT NOT NULL,
    entry_id INTEGER NOT NULL, time REAL NOT NULL, who TEXT, target TEXT, what TEXT,
    old_json TEXT, new_json TEXT, reason TEXT, result TEXT, detail TEXT);
"""


def write_v1_fixture(path: Path) -> None:
    """A small version 1 snapshot: 2 series × 30 samples, a trace, a journal entry."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    meta = {"format": "trimtab-snapshot", "schema_version": "1", "app_version": "0.0.9",
            "created_at": repr(T0 + 3600), "window_start": repr(T0), "window_end": repr(T0 + 29),
            "notes": "v1 fixture"}
    conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    conn.execute("INSERT INTO series VALUES (1, 'api-1', ?, ?)",
                 (REQS, json.dumps({"route": "/orders", "status": "200"})))
    conn.execute("INSERT INTO series VALUES (2, 'api-1', 'trimtab_in_flight', '{}')")
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?)",
                     [(1, T0 + i, 10.0 * i) for i in range(30)]
                     + [(2, T0 + i, None if i == 5 else float(i % 4)) for i in range(30)])
    conn.execute("INSERT INTO targets VALUES ('api-1', 'http://127.0.0.1:9001/metrics', "
                 "'instance', 1.0, 0.8, 1, '')")
    conn.execute("INSERT INTO traces VALUES (1, 'aa', 'bb', NULL, 'GET /orders', '/orders', "
                 "'GET', 200, 'api-1', 'hit', ?, 3.5)", (T0 + 10,))
    conn.execute("INSERT INTO spans VALUES (1, 1, 'cc', 'redis', ?, 1.0, '{\"op\": \"get\"}')",
                 (T0 + 10,))
    conn.execute("INSERT INTO journal VALUES (1, 'api-1', 'instance', 4, ?, 'ops', 'api-1', "
                 "'config', '{\"ttl\": 5}', '{\"ttl\": 30}', 'slow orders', 'accepted', '')",
                 (T0 + 15,))
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


def test_previous_schema_version_opens_without_being_changed(tmp_path: Path) -> None:
    assert FIXTURE.is_file(), "run python tests/app/snapshot/test_snapshot.py to write the fixture"
    before = _digest(FIXTURE)
    with open_snapshot(FIXTURE) as snap:
        assert snap.file_version == 1 and snap.notes == "v1 fixture"
        got = snap.query(REQS, start=T0, end=T0 + 29, max_points=100)
        (t, v), = got.values()
        assert list(t) == [T0 + i for i in range(30)] and v[-1] == 290.0
        (_, g), = snap.query("trimtab_in_flight", start=T0, end=T0 + 29,
                             max_points=100).values()
        assert math.isnan(g[5]) and g[6] == 2.0
        assert snap.traces()[0]["children"][0]["tags"] == {"op": "get"}
        assert snap.journal()[0].reason == "slow orders" and snap.journal()[0].new == {"ttl": 30}
        info, = snap.target_info()
        assert info.health["up"] == 1 and snap.annotations() == []
    assert _digest(FIXTURE) == before


# --- headless command line ---------------------------------------------------------------


def test_parse_time() -> None:
    assert parse_time("now", now=T0) == T0 and parse_time("-15m", now=T0) == T0 - 900
    assert parse_time("-2h", now=T0) == T0 - 7200 and parse_time(str(T0)) == T0
    assert parse_time("2023-11-14T22:13:20Z") == T0
    for bad in ("yesterday", "nan", "-5y", ""):
        with pytest.raises(ValueError, match="not a time"):
            parse_time(bad, now=T0)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trimtab")
    add_snapshot_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_export_and_report_beside_a_live_store(store: Store, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIMTAB_TOKEN", raising=False)  # no agents to ask for the journal
    toml = tmp_path / "targets.toml"
    toml.write_text('[[target]]\nname = "api-1"\nurl = "http://127.0.0.1:9001/metrics"\n')
    out, log = tmp_path / "cli.trimtab", io.StringIO()
    args = _parse(["snapshot", "export", "--from", str(T0 + 10), "--to", str(T0 + 100),
                   "--out", str(out), "--store", str(store.path), "--targets", str(toml),
                   "--notes", "from the CLI", "--redact-label", "^route$"])
    assert args.func(args, log) == 0
    assert "exporting metrics 3/3" in log.getvalue() and "wrote" in log.getvalue()
    with open_snapshot(out) as snap:
        assert snap.notes == "from the CLI" and snap.target_info()[0].name == "api-1"
        assert {dict(k.labels).get("route") for k in snap.series(REQS)} == {"REDACTED"}
        assert snap.window == (T0 + 10, T0 + 100)
    # The live store was only read: it keeps writing and reading as before.
    store.write_cycle(T0 + 1000, [("api-1", REQS, (("route", "/x"), ("status", "200")), 1.0)])
    assert len(store.query(REQS, start=T0, end=T0 + 1000, max_points=10**9)) == 10
    report = tmp_path / "r.html"
    args = _parse(["snapshot", "report", str(out), "--out", str(report)])
    assert args.func(args, log) == 0 and "<h1>" in report.read_text(encoding="utf-8")


def test_cli_bad_input_is_a_message_and_exit_code_2(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIMTAB_TOKEN", raising=False)
    log = io.StringIO()
    args = _parse(["snapshot", "export", "--from=-15m", "--out", str(tmp_path / "x.trimtab"),
                   "--store", str(tmp_path / "missing.db")])
    assert cli_export(args, log) == 2 and "no history database" in log.getvalue()
    args = _parse(["snapshot", "export", "--from", "soon", "--out", str(tmp_path / "x.trimtab")])
    assert cli_export(args, log) == 2 and "not a time" in log.getvalue()
    bad = tmp_path / "bad.trimtab"
    bad.write_bytes(b"not sqlite")
    args = _parse(["snapshot", "report", str(bad), "--out", str(tmp_path / "r.html")])
    assert cli_report(args, log) == 2 and "not an SQLite file" in log.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.trimtab"]


if __name__ == "__main__":
    write_v1_fixture(FIXTURE)
    sys.stdout.write(f"wrote {FIXTURE}\n")
