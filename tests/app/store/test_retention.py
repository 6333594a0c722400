"""History retention in bounded steps: one short transaction each, the cap, the Fleet line."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trimtab.app.model.fleet import FleetModel
from trimtab.app.store.codec import Points, encode_raw_chunk, encode_times
from trimtab.app.store.keeper import HistoryKeeper
from trimtab.app.store.rollup import _VICTIMS, STEP_ROWS
from trimtab.app.store.settings import Settings, human_size
from trimtab.app.store.store import Retention, SeriesKey, Store
from trimtab.app.ui.pages.fleet import FleetPage

HOUR = 1_700_000_000.0 - 1_700_000_000.0 % 86400  # midnight UTC: pieces start on it

floats = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2**60, 2**60).map(float)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 8).flatmap(lambda n: st.lists(
    st.lists(floats, min_size=n, max_size=n), min_size=6, max_size=6)), min_size=1, max_size=6))
def test_vectorised_rollup_encoding_gives_the_same_bytes(columns: list[list[list[float]]]) -> None:
    many = [Points(np.cumsum(np.abs(np.nan_to_num(np.array(c[0])))) + HOUR,
                   *(np.array(v) for v in c[1:])) for c in columns]
    assert Points.encode_many(many) == [p.encode() for p in many]


def _rows(i: int, n: int = 300) -> list[tuple]:
    return [("a", "m", (("k", str(k)),), float(i + k)) for k in range(n)]


def test_each_retention_step_is_one_bounded_transaction_with_writes_between(
        tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=10, retention=Retention(raw=600)) as store:
        for i in range(600):  # 100 min of 10 s cycles: 60 raw blocks of 300 chunks
            store.write_cycle(HOUR + 10.0 * i, _rows(i))
        commits: list[str] = []
        store._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else 0)
        steps, i = [], 600
        while True:
            seen, changed = len(commits), store._conn.total_changes
            step = store.maintain(HOUR + 6000.0)
            if step.kind == "idle":
                break
            # One transaction per step, of bounded size: a write waits for one step at most.
            assert len(commits) - seen == 1
            assert step.rows <= max(STEP_ROWS, 300)
            assert store._conn.total_changes - changed <= max(STEP_ROWS, 300) + _VICTIMS + 1
            steps.append(step)
            store.write_cycle(HOUR + 10.0 * i, _rows(i))  # the collector's cycle gets in
            i += 1
        kinds = [(s.kind, s.tier) for s in steps]
        assert kinds[0] == ("roll", 1)
        expired = [s for s in steps if s.kind == "expire"]
        assert sum(s.rows for s in expired) == 36 * 300  # the first hour's raw, 36 blocks
        assert len(expired) >= math.ceil(36 * 300 / STEP_ROWS) > 1  # split, not one big delete
        t, v = store.query("m", {"k": "0"}, start=HOUR, end=HOUR + 10.0 * i, max_points=10**6)[
            SeriesKey("a", "m", (("k", "0"),))]
        assert v[-1] == i - 1 and t[0] == HOUR + 50  # hour 0: one point a minute, then raw
        assert len(t) == 60 + (i - 360)


def test_over_the_cap_the_oldest_redundant_detail_goes_first_and_10_min_data_last(
        tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=30, retention=Retention(raw=1e9, minute=1e9,
                                                                     ten_minute=1e9)) as store:
        for i in range(2 * 1440 + 120):  # 2 days and 2 hours of 1 min cycles
            store.write_cycle(HOUR + 60.0 * i, _rows(i, 5))
        store.apply_retention(HOUR + 60.0 * 3000)
        before = store.footprint()
        assert before is not None
        store.retention = Retention(raw=1e9, minute=1e9, ten_minute=1e9, cap=1)
        conn = sqlite3.connect(tmp_path / "h.db")
        w1, w2 = (float(conn.execute(f"SELECT value FROM meta WHERE key = 'watermark_{k}'")
                        .fetchone()[0]) for k in (1, 2))
        blocks = {i: (tier, t1) for i, tier, t1 in conn.execute("SELECT id, tier, t1 FROM blocks")}

        def phase(block: int) -> str:  # redundant: the next tier holds its time
            tier, t1 = blocks[block]
            return "redundant" if tier < 2 and t1 < (w1, w2)[tier] else str(tier)

        order: list[str] = []
        while (step := store.maintain(HOUR + 60.0 * 3000)).kind != "idle":
            if step.kind != "cap" or not step.gone:
                continue
            oldest = min(blocks[b][1] for b in step.gone)
            kinds = {phase(b) for b in step.gone}
            assert len(kinds) == 1
            left = [t1 for b, (_, t1) in blocks.items() if phase(b) in kinds]
            assert oldest == min(left)  # the oldest of its kind goes first
            if not order or order[-1] != phase(step.gone[0]):
                order.append(phase(step.gone[0]))
            for b in step.gone:
                del blocks[b]
        assert order == ["redundant", "2", "1", "0"]  # coarsest (10 min) last but the newest
        assert w2 == HOUR + 2 * 86400 and w1 == HOUR + 2 * 86400 + 3600
        assert conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0
        after = store.footprint()
        assert after is not None and after.used < before.used


LES = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
       "+Inf")


def _demo_series() -> list[tuple[str, str, tuple]]:
    """The demo's shape: 3 instances × 10 routes of histograms, and the balancer's
    per-backend, per-route series (720; a running demo exposes ~760)."""
    out: list[tuple[str, str, tuple]] = []
    for inst in ("api-1", "api-2", "api-3"):
        for r in range(10):
            base = (("method", "GET"), ("route", f"/r{r}"), ("status", "200"))
            out += [(inst, "http_request_duration_seconds_bucket", base + (("le", le),))
                    for le in LES]
            out += [(inst, "http_request_duration_seconds_sum", base),
                    (inst, "http_request_duration_seconds_count", base)]
        for r in range(10):
            out += [("balancer", f"lb_{name}", (("backend", inst), ("route", f"/r{r}")))
                    for name in ("requests_total", "errors_total", "bytes_total", "inflight",
                                 "weight", "latency_sum", "latency_count", "retries_total",
                                 "active", "queue")]
    return out


def _hour_of_chunks(series: list[tuple[str, str, tuple]]) -> list[bytes]:
    """One hour of 1 s samples per series, encoded once (every simulated hour reuses it)."""
    rng = np.random.default_rng(1)
    blobs = []
    for _, name, _ in series:
        if name.endswith(("_bucket", "_count", "_total")):
            v = np.cumsum(rng.poisson(3.0, 3600)).astype(float)
        elif name.endswith("_sum"):
            v = np.cumsum(rng.gamma(2.0, 0.05, 3600))
        else:
            v = rng.integers(0, 20, 3600).astype(float)
        blobs.append(encode_raw_chunk(np.arange(3600), v, 3600))
    return blobs


@pytest.mark.slow
def test_a_week_of_demo_history_stays_under_the_cap(tmp_path: Path) -> None:
    """A week of 1 s scrapes of the demo's ~720 series, written hour by hour as raw blocks
    with synthetic times (writing 600 000 cycles one by one would take many minutes), the
    keeper running a pass after each simulated hour on an injected clock."""
    cap = 60 * 10**6  # a week at the default retention takes ~75 MB: the cap must act
    path = tmp_path / "h.db"
    series = _demo_series()
    store = Store(path, chunk_cycles=2, retention=Settings(cap=cap).retention())
    try:
        for k in (2, 1):  # registers the series (and folds: nothing left in the head)
            store.write_cycle(HOUR - k, [(t, n, labels, 0.0) for t, n, labels in series])
        canon = {(t, n, tuple(sorted(json.loads(labels).items()))): sid
                 for sid, t, n, labels in
                 sqlite3.connect(path).execute("SELECT id, target, name, labels FROM series")}
        ids = [canon[(t, n, tuple(sorted(labels)))] for t, n, labels in series]
        blobs = _hour_of_chunks(series)
        writer = sqlite3.connect(path, isolation_level=None)
        now = HOUR
        keeper = HistoryKeeper(store, clock=lambda: now, pause=0)
        for h in range(7 * 24):
            times = HOUR + h * 3600 + np.arange(3600.0)
            writer.execute("BEGIN IMMEDIATE")
            block = writer.execute(
                "INSERT INTO blocks (tier, t0, t1, n, times) VALUES (0, ?, ?, 3600, ?)",
                (times[0], times[-1], encode_times(times))).lastrowid
            writer.executemany("INSERT INTO chunks (series_id, block_id, blob) VALUES (?, ?, ?)",
                               [(sid, block, blob) for sid, blob in zip(ids, blobs)])
            writer.execute("COMMIT")
            now = HOUR + (h + 1) * 3600 + 61
            keeper.run_pending()
            size = store.footprint()
            assert size is not None and size.used <= cap, (h, size)
        tiers = {tier: (n, lo, hi) for tier, n, lo, hi in writer.execute(
            "SELECT tier, COUNT(*), MIN(t0), MAX(t1) FROM blocks GROUP BY tier")}
        end = HOUR + 7 * 86400
        assert tiers[0][1] == end - 6 * 3600 and tiers[0][2] == end - 1  # raw: the last 6 h
        assert tiers[1][2] == end and tiers[1][1] > HOUR + 86400  # old 1 min detail went
        assert tiers[2][1] <= HOUR and tiers[2][2] == end  # the whole week at 10 min
        got = store.query("http_request_duration_seconds_count", {"route": "/r3"},
                          target="api-2", start=HOUR, end=end, max_points=7 * 144)
        (t, _), = got.values()
        assert t[0] < HOUR + 600 and t[-1] == end - 1
        writer.close()
    finally:
        store.close()
    assert path.stat().st_size <= cap  # on disk once closed (the WAL checkpointed)


def test_fleet_page_shows_the_store_size_and_the_retention(qtbot, tmp_path: Path) -> None:
    retention = Settings(retention_raw=7200, retention_1m=86400, retention_10m=30 * 86400,
                         cap=50 * 10**6).retention()
    store = Store(tmp_path / "h.db", chunk_cycles=4, retention=retention)
    try:
        page = FleetPage(FleetModel(store=store))
        qtbot.addWidget(page)
        keeps = "keeps raw 2 h · 1 min steps 1 d · 10 min steps 30 d · cap 50 MB"
        assert page.history_label.text() == f"History: size not measured yet · {keeps}"
        for i in range(9):
            store.write_cycle(HOUR + i, _rows(i))
        store.apply_retention(HOUR + 10)
        page.refresh(0.0)
        size = store.footprint()
        assert size is not None
        assert size.file == (tmp_path / "h.db").stat().st_size > 0
        assert page.history_label.text() == (
            f"History: {human_size(size.file + size.wal)} on disk (file + WAL) · {keeps}")
        assert not page.history_label.isHidden()
    finally:
        store.close()
