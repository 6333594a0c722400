"""Store: exact round trips, bounded queries, rollups that keep histogram_quantile, bad input."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trimtab.app.store.codec import decode, encode_times, encode_values
from trimtab.app.store.store import Retention, RetentionReport, SeriesKey, Store, StoreError
from trimtab.collectors.promql import counter_delta, histogram_quantile, sum_buckets

BASE = 1_700_000_000.0
LES = ("0.1", "0.25", "0.5", "1.0", "+Inf")


def _rows(i: int) -> list[tuple]:
    """Cycle ``i``: integer counters, random floats, NaN/±Inf/-0.0, a series that comes and
    goes, and now and then an empty cycle."""
    rng = np.random.default_rng(i)
    if i % 10 == 9:
        return []  # an empty cycle (every target down) is still a cycle
    rows = [("a", "req_total", (("code", "200"),), float(i * 3)),
            ("a", "temp", (), float(rng.normal())),
            ("b", "temp", (), [math.nan, math.inf, -math.inf, -0.0, 1e-310][i % 5])]
    if i % 3:
        rows.append(("b", "flaky", (("x", "1"),), float(i) / 7))
    return rows


def _truth(cycles: int) -> dict[SeriesKey, tuple[list[float], list[float]]]:
    out: dict[SeriesKey, tuple[list[float], list[float]]] = {}
    for i in range(cycles):
        for target, name, labels, value in _rows(i):
            t, v = out.setdefault(SeriesKey(target, name, labels), ([], []))
            t.append(BASE + i + 0.001 * (i % 4))
            v.append(value)
    return out


def _write(store: Store, first: int, last: int) -> None:
    for i in range(first, last):
        store.write_cycle(BASE + i + 0.001 * (i % 4), _rows(i))


def _everything(store: Store, name: str) -> dict:
    return store.query(name, start=0.0, end=BASE * 2, max_points=10**9)


def _assert_exact(got: dict, truth: dict, name: str) -> None:
    expected = {k: v for k, v in truth.items() if k.name == name}
    assert got.keys() == expected.keys()
    for key, (t, v) in expected.items():
        assert got[key][0].tobytes() == np.array(t).tobytes(), key
        assert got[key][1].tobytes() == np.array(v).tobytes(), key  # bit-exact: NaN, -0.0


def test_round_trip_is_bit_exact_across_chunks_head_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with Store(path, chunk_cycles=8) as store:
        _write(store, 0, 45)  # 5 folded blocks + 5 cycles still in the head
        for name in ("req_total", "temp", "flaky"):
            _assert_exact(_everything(store, name), _truth(45), name)
    with Store(path, chunk_cycles=8) as store:
        assert store.last_cycle() == (45, BASE + 44 + 0.001 * 0)
        _write(store, 45, 60)
        for name in ("req_total", "temp", "flaky"):
            _assert_exact(_everything(store, name), _truth(60), name)
        assert store.targets() == ["a", "b"]
        assert store.series("te") == [SeriesKey("a", "temp", ()), SeriesKey("b", "temp", ())]


def test_label_order_does_not_split_a_series_and_matchers_filter(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db") as store:
        store.write_cycle(BASE, [("a", "m", (("x", "1"), ("y", "2")), 1.0),
                                 ("a", "m", (("x", "9"),), 5.0)])
        store.write_cycle(BASE + 1, [("a", "m", (("y", "2"), ("x", "1")), 2.0)])
        got = store.query("m", {"x": "1"}, start=BASE, end=BASE + 1, max_points=10)
        assert list(got) == [SeriesKey("a", "m", (("x", "1"), ("y", "2")))]
        assert got[SeriesKey("a", "m", (("x", "1"), ("y", "2")))][1].tolist() == [1.0, 2.0]
        assert store.query("m", target="b", start=BASE, end=BASE + 1, max_points=10) == {}


@pytest.mark.parametrize("max_points", [1, 2, 7, 64, 500])
def test_query_returns_at_most_max_points_of_real_samples(tmp_path: Path, max_points: int) -> None:
    truth = _truth(300)
    with Store(tmp_path / "h.db", chunk_cycles=16) as store:
        _write(store, 0, 300)
        for agg in ("last", "min", "max", "mean"):
            got = store.query("req_total", start=BASE, end=BASE + 299.5, max_points=max_points,
                              agg=agg)
            t, v = got[SeriesKey("a", "req_total", (("code", "200"),))]
            assert 0 < len(t) <= max_points and len(t) == len(v)
        for key, (t, v) in store.query("temp", start=BASE, end=BASE + 300,
                                       max_points=max_points).items():
            assert len(t) <= max_points
            raw = dict(zip(truth[key][0], truth[key][1]))
            # "last" returns real samples: each point is a stored (t, v) pair
            assert all(np.array(raw[ti]).tobytes() == np.array(vi).tobytes()
                       for ti, vi in zip(t.tolist(), v.tolist()))


def test_one_point_aggregates_match_numpy(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=16) as store:
        _write(store, 0, 100)
        key = SeriesKey("a", "temp", ())
        t_true, v_true = np.array(_truth(100)[key][0]), np.array(_truth(100)[key][1])
        q = {agg: store.query("temp", target="a", start=BASE, end=BASE + 200, max_points=1,
                              agg=agg)[key] for agg in ("last", "min", "max", "mean")}
    assert q["last"][0].tolist() == [t_true[-1]] and q["last"][1].tolist() == [v_true[-1]]
    assert q["min"][1][0] == v_true.min() and q["max"][1][0] == v_true.max()
    assert q["mean"][1][0] == pytest.approx(v_true.mean(), rel=1e-12)


def _hist_rows(i: int) -> list[tuple]:
    """Two instances, one histogram each; observations drift from fast to slow."""
    rows = []
    for target, scale in (("api-1", 1), ("api-2", 3)):
        counts = np.cumsum([i * scale, i * (i % 5), i * 2, i * scale * (1 + i % 3), i])
        rows += [(target, "lat_bucket", (("le", le),), float(c)) for le, c in zip(LES, counts)]
    return rows


def _quantile(buckets_at: dict[str, dict[float, float]], a: float, b: float) -> float | None:
    """p95 across instances of the bucket increases between times a and b."""
    per_target = []
    for target in ("api-1", "api-2"):
        old, new = buckets_at[target, a], buckets_at[target, b]
        per_target.append({float(le): counter_delta(old[le], new[le]) for le in new})
    q = histogram_quantile(0.95, sum_buckets(per_target))
    return None if q is None else q.value


def _buckets_at(result: dict) -> dict:
    out: dict = {}
    for key, (t, v) in result.items():
        for ti, vi in zip(t.tolist(), v.tolist()):
            out.setdefault((key.target, ti), {})[dict(key.labels)["le"]] = vi
    return out


def test_rollups_keep_histogram_quantile_exact_at_their_resolution(tmp_path: Path) -> None:
    step, cycles = 30.0, 6000  # 50 h of 30 s scrapes: 49 hour pieces, 2 day pieces
    times = [BASE - BASE % 86400 + step * i + 0.25 * (i % 3) for i in range(cycles)]
    truth = {}
    with Store(tmp_path / "h.db", chunk_cycles=100, retention=Retention(raw=7200)) as store:
        for i, t in enumerate(times):
            store.write_cycle(t, _hist_rows(i))
            truth.update({(k[0], t, dict(k[2])["le"]): k[3] for k in _hist_rows(i)})
        report = store.apply_retention(times[-1])
        assert report.rolled[1] == 49 and report.rolled[2] == 2 and report.deleted[0] > 0
        for span, tier_step in ((86400.0, 600.0), (6 * 3600.0, 60.0)):
            start = times[0] + 3600
            got = store.query("lat_bucket", start=start, end=start + span,
                              max_points=int(span // tier_step))
            at = _buckets_at(got)
            points = sorted({t for _, t in at})
            assert len(points) >= span // tier_step - 1  # one point per rollup step
            # each point is the newest raw sample of its rollup step, with its exact value
            assert all(truth[target, t, le] == v for (target, t), b in at.items()
                       for le, v in b.items())
            steps = np.diff(np.floor(np.array(points) / tier_step))
            assert (steps >= 1).all()
            for a, b in zip(points, points[1:]):
                raw = {(tg, x): {le: truth[tg, x, le] for le in LES}
                       for tg in ("api-1", "api-2") for x in (a, b)}
                expected = _quantile(raw, a, b)
                assert expected is not None and _quantile(at, a, b) == expected


def test_retention_deletes_raw_only_after_rollup(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=50, retention=Retention(raw=600)) as store:
        for i in range(400):
            store.write_cycle(BASE + 10.0 * i, [("a", "c_total", (), float(i))])
        before = store.query("c_total", start=BASE, end=BASE + 4000, max_points=10**6)
        report = store.apply_retention(BASE + 4000)
        assert report.rolled[1] >= 1 and report.deleted[0] >= 1
        after = store.query("c_total", start=BASE, end=BASE + 4000, max_points=10**6)
        (t_before, v_before), (t_after, v_after) = [next(iter(r.values())) for r in (before,
                                                                                     after)]
        assert t_after[-1] == t_before[-1] and v_after[-1] == v_before[-1]
        assert len(t_after) < len(t_before)  # old raw replaced by one point per minute
        assert set(t_after.tolist()) <= set(t_before.tolist())
        assert store.apply_retention(BASE + 4000).rolled == {1: 0, 2: 0}  # idempotent


@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, "1", None, True])
def test_bad_cycle_time_is_refused(tmp_path: Path, t: object) -> None:
    with Store(tmp_path / "h.db") as store:
        with pytest.raises(ValueError, match="cycle time"):
            store.write_cycle(t, [("a", "m", (), 1.0)])
        assert store.last_cycle() is None and store.series() == []


@pytest.mark.parametrize("bad_row", [
    ("a", "m", (), "1.0"), ("a", "m", (), None), ("a", "m", (), [1.0]),
    ("a", "m", [("x", "1")], 1.0), ("a", "m", (("x", 1),), 1.0), (1, "m", (), 1.0),
    ("a", "", (), 1.0), ("a", "m", (("x", "1"), ("x", "2")), 1.0), ("a", "m", ()),
    ("a", "ok", (), 2.0),  # duplicate of the first row: a series twice in one cycle
])
def test_bad_rows_are_refused_and_nothing_is_written(tmp_path: Path, bad_row: tuple) -> None:
    path = tmp_path / "h.db"
    with Store(path, chunk_cycles=2) as store:
        store.write_cycle(BASE, [("a", "ok", (), 1.0)])
        with pytest.raises(ValueError):
            store.write_cycle(BASE + 1, [("a", "ok", (), 1.0), ("z", "new", (), 1.0), bad_row])
        assert store.last_cycle() == (1, BASE)
        assert store.series() == [SeriesKey("a", "ok", ())]
        store.write_cycle(BASE + 2, [("a", "ok", (), 3.0)])  # still writable, ids consistent
    with Store(path) as store:
        got = store.query("ok", start=BASE, end=BASE + 9, max_points=9)
        assert got[SeriesKey("a", "ok", ())][1].tolist() == [1.0, 3.0]
        assert store.series() == [SeriesKey("a", "ok", ())]


def test_time_must_increase(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db") as store:
        store.write_cycle(BASE, [])
        with pytest.raises(ValueError, match="not after"):
            store.write_cycle(BASE, [("a", "m", (), 1.0)])
        assert store.last_cycle() == (1, BASE)
        store.write_cycle(np.float64(BASE + 1), [("a", "m", (), np.float32(0.5))])
        store.write_cycle(np.int64(BASE + 2), [("a", "m", (), np.int64(7))])
        got = store.query("m", start=np.int64(BASE), end=BASE + 2, max_points=np.int64(5))
        assert got[SeriesKey("a", "m", ())][1].tolist() == [0.5, 7.0]


@pytest.mark.parametrize("kwargs", [
    {"max_points": 0}, {"max_points": 2.5}, {"start": math.nan}, {"end": BASE - 1},
    {"agg": "median"}, {"matchers": {"x": 1}}, {"matchers": [("x", "1")]}])
def test_bad_query_arguments(tmp_path: Path, kwargs: dict) -> None:
    args = {"start": BASE, "end": BASE + 10, "max_points": 10, **kwargs}
    with Store(tmp_path / "h.db") as store:
        store.write_cycle(BASE, [("a", "m", (), 1.0)])
        with pytest.raises(ValueError):
            store.query("m", **args)


def test_corrupt_or_foreign_files_give_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 200)
    with pytest.raises(StoreError, match="corrupt or not a SQLite database"):
        Store(garbage)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE notes (x)").connection.close()
    with pytest.raises(StoreError, match="not a trimtab store"):
        Store(foreign)
    wrecked = tmp_path / "wrecked.db"
    with Store(wrecked) as store:
        _write(store, 0, 10)
    data = bytearray(wrecked.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # smash the schema page after the header
    wrecked.write_bytes(bytes(data))
    with pytest.raises(StoreError):
        Store(wrecked)
    newer = tmp_path / "newer.db"
    Store(newer).close()
    conn = sqlite3.connect(newer)
    with conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="schema_version"):
        Store(newer)


def test_corruption_found_by_a_query_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with Store(path, chunk_cycles=4) as store:
        for i in range(400):
            store.write_cycle(BASE + i, [("a", f"m{k}", (), float(i * k)) for k in range(50)])
    data = bytearray(path.read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="h.db"):
        store = Store(path)  # may already notice; if not, reading the chunks will
        try:
            for k in range(50):
                store.query(f"m{k}", start=BASE, end=BASE + 400, max_points=10)
        finally:
            store.close()


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    store.close()
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.write_cycle(BASE, [])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64)
                | st.integers(-2**60, 2**60).map(float), max_size=300))
def test_codec_round_trips_any_floats(values: list[float]) -> None:
    v = np.array(values, dtype=np.float64)
    assert decode(encode_values(v)).tobytes() == v.tobytes()
    assert decode(encode_times(v)).tobytes() == v.tobytes()


def _counter_and_gauge(i: int) -> list[tuple]:
    return [("a", "c_total", (), float(i)), ("a", "g", (), float(i * 5 % 7))]


def test_retention_in_another_thread_while_writing_and_querying(tmp_path: Path) -> None:
    hour = BASE - BASE % 3600
    with Store(tmp_path / "h.db", chunk_cycles=20, retention=Retention(raw=600)) as store:
        for i in range(800):  # 10 s cycles for 2 h 13 min: two complete hour pieces
            store.write_cycle(hour + 10.0 * i, _counter_and_gauge(i))
        outcome: list[object] = []
        worker = threading.Thread(target=lambda: outcome.append(store.apply_retention(hour + 8000)))
        worker.start()
        i = 800
        # keep writing and querying during the rollup; stop before a third hour completes
        while (worker.is_alive() or i < 850) and i < 1070:
            store.write_cycle(hour + 10.0 * i, _counter_and_gauge(i))
            assert store.query("g", start=hour, end=hour + 10.0 * i, max_points=50)
            i += 1
        worker.join()
        assert isinstance(outcome[0], RetentionReport) and outcome[0].rolled[1] == 2
        t, v = store.query("c_total", start=hour, end=hour + 10.0 * i, max_points=10**6)[
            SeriesKey("a", "c_total", ())]
        assert v.tolist() == ((t - hour) / 10).tolist() and v[-1] == i - 1
        assert set(v.tolist()) >= set(range(720, i))  # everything after the rollups stays raw
        for agg, fn in (("min", min), ("max", max), ("mean", lambda x: sum(x) / len(x))):
            t, v = store.query("g", start=hour, end=hour + 7199.0, max_points=120, agg=agg)[
                SeriesKey("a", "g", ())]
            assert len(t) == 120
            expected = [fn([j * 5 % 7 for j in range(6 * k, 6 * k + 6)]) for k in range(120)]
            assert v.tolist() == pytest.approx(expected)
