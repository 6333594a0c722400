"""Store under concurrency: readers see an exact snapshot and never hold up the writer.

Real SQLite files; threads do the real work. ``Store._read_hook`` (a private
test seam) runs inside a read after its snapshot is pinned and the store's lock
released, so a test can write, fold, expire or close exactly then.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from trimtab.app.store.codec import encode_times
from trimtab.app.store.read import BlockTimes
from trimtab.app.store.store import Retention, SeriesKey, Store, StoreError

BASE = 1_700_002_800.0  # an hour boundary: rollup steps line up with the cycles
DEADLOCK = 60.0  # only to end a hung test; no test asserts how long anything takes
EVERYTHING = {"start": 0.0, "end": BASE * 2, "max_points": 10**9}


def _g(i: int) -> float:
    """A gauge that is bit-checkable, NaN now and then."""
    return math.nan if i % 17 == 5 else math.sin(i) * 1e3


def _rows(i: int) -> list[tuple]:
    """Cycle ``i``: counters and gauges on two targets, a series that comes and goes,
    one that starts late, and now and then an empty cycle."""
    if i % 23 == 22:
        return []
    rows = []
    for target in ("a", "b"):
        rows += [(target, "m", (("k", "c"),), float(i)), (target, "m", (("k", "g"),), _g(i))]
    if i % 3:
        rows.append(("a", "m", (("k", "flaky"),), float(i) / 7))
    if i >= 50:
        rows.append(("b", "m", (("k", "late"), ("z", "1")), float(-i)))
    return rows


def _t(i: int) -> float:
    return BASE + 10.0 * i


class Truth:
    """The exact answer of an everything-query after the first ``k`` of ``n`` cycles."""

    def __init__(self, n: int) -> None:
        pts: dict[SeriesKey, tuple[list[float], list[float]]] = {}
        for i in range(n):
            for target, name, labels, value in _rows(i):
                t, v = pts.setdefault(SeriesKey(target, name, labels), ([], []))
                t.append(_t(i))
                v.append(value)
        self.points = {k: (np.array(t), np.array(v)) for k, (t, v) in pts.items()}
        self.n = n

    def upto(self, k: int) -> dict[SeriesKey, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for key, (t, v) in self.points.items():
            m = int(np.searchsorted(t, _t(k)))
            if m:
                out[key] = (t[:m], v[:m])
        return out

    def check(self, got: dict, lo: int, hi: int) -> int:
        """``got`` equals ``upto(k)`` for some ``lo <= k <= hi``; return that k."""
        newest = max((float(t[-1]) for t, _ in got.values()), default=None)
        k = 0 if newest is None else round((newest - BASE) / 10.0) + 1
        while k < lo and not _rows(k):
            k += 1  # trailing empty cycles add nothing
        assert lo <= k <= hi, (lo, k, hi)
        _same(got, self.upto(k))
        return k


def _same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, (t, v) in expected.items():
        assert got[key][0].tobytes() == t.tobytes(), key  # no gap, no duplicate, same order
        assert got[key][1].tobytes() == v.tobytes(), key  # bit-exact, NaN included


def _in_thread(fn: Callable[[], object]) -> object:
    """Run ``fn`` in another thread; its result, or its exception re-raised here.

    A call that never returns (it waits for a lock held by a paused read) fails
    the test after DEADLOCK seconds instead of hanging it.
    """
    out: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLOCK)
    assert not thread.is_alive(), "call blocked: a read is holding the store's lock"
    if errors:
        raise errors[0]
    return out[0]


class Writer(threading.Thread):
    """Writes cycles first..last-1; ``started``/``acked`` bound what a read may see.

    Every 100 cycles it waits until three more reads have ended (``done`` is their
    count), so some reads are sure to see a store in mid-writing however the
    threads get scheduled.
    """

    def __init__(self, store: Store, first: int, last: int, done: list[int],
                 retention_every: int = 0) -> None:
        super().__init__(daemon=True)
        self.store, self.first, self.last, self.done = store, first, last, done
        self.retention_every = retention_every
        self.started = self.acked = first
        self.errors: list[BaseException] = []

    def _let_reads_in(self) -> None:
        # two reading threads: the third read to end began after the wait did
        target, give_up = len(self.done) + 3, time.monotonic() + DEADLOCK
        while len(self.done) < target and time.monotonic() < give_up:
            threading.Event().wait(0.001)

    def run(self) -> None:
        try:
            for i in range(self.first, self.last):
                if i % 100 == 50:
                    self._let_reads_in()
                self.started = i + 1
                self.store.write_cycle(_t(i), _rows(i))
                self.acked = i + 1
                if self.retention_every and i % self.retention_every == 0:
                    self.store.apply_retention(_t(i))
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(exc)


def _query_while(store: Store, writer: Writer, check: Callable[[dict, int, int], int]) -> None:
    """Query everything until the writer is done; check each; count them in writer.done."""
    while writer.is_alive() or len(writer.done) < 5:
        lo = writer.acked
        got = store.query("m", **EVERYTHING)
        writer.done.append(check(got, lo, writer.started))


def test_queries_during_writes_and_folds_see_an_exact_prefix(tmp_path: Path) -> None:
    n = 700
    truth = Truth(n)
    with Store(tmp_path / "h.db", chunk_cycles=4) as store:
        seen: list[int] = []  # the k each read saw
        writer = Writer(store, 0, n, seen)
        other: list[BaseException] = []

        def second_reader() -> None:  # two reading threads: two read connections
            try:
                _query_while(store, writer, truth.check)
            except BaseException as exc:  # noqa: BLE001
                other.append(exc)

        reader = threading.Thread(target=second_reader, daemon=True)
        writer.start()
        reader.start()
        _query_while(store, writer, truth.check)
        writer.join()
        reader.join(DEADLOCK)
        assert not writer.errors and not other and not reader.is_alive()
        assert {150, 350, 650} <= set(seen)  # reads did see the store in mid-writing
        truth.check(store.query("m", **EVERYTHING), n, n)


_PRESENT = np.array([bool(_rows(i)) for i in range(2000)])
_RANK = np.cumsum(_PRESENT) - 1  # index of a non-empty cycle among the non-empty ones
_MINUTE_NEWEST = np.array([max(i for i in range(m, m + 6) if _PRESENT[i])
                           for m in range(0, 1998, 6)])  # what a 60 s rollup keeps


def _check_rolled(got: dict, lo: int, hi: int) -> int:
    """Counter and gauge of one target after retention: minute rollups (the newest sample
    of each minute), then every raw cycle up to some k in [lo, hi]; every point real."""
    if not got:  # read before the writer's first cycle (a busy machine can do that)
        assert lo == 0, lo
        return 0
    (tc, vc), (tg, vg) = got[SeriesKey("a", "m", (("k", "c"),))], \
        got[SeriesKey("a", "m", (("k", "g"),))]
    assert tc.tobytes() == tg.tobytes()
    idx = (tc - BASE) / 10.0
    assert idx.tobytes() == np.round(idx).tobytes()
    cycles = idx.astype(np.int64)
    assert _PRESENT[cycles].all() and (np.diff(cycles) > 0).all()
    assert vc.tolist() == cycles.astype(float).tolist()
    assert vg.tobytes() == np.array([_g(int(i)) for i in cycles]).tobytes()
    # the raw part: the longest tail of consecutive non-empty cycles; before it, rollups
    breaks = np.flatnonzero(np.diff(_RANK[cycles]) != 1)
    raw_from = int(cycles[breaks[-1] + 1]) if len(breaks) else int(cycles[0])
    rolled = _MINUTE_NEWEST[_MINUTE_NEWEST < raw_from]
    assert cycles[:len(cycles) - len(cycles[cycles >= raw_from])].tolist() == rolled.tolist()
    k = int(cycles[-1]) + 1
    while k < lo and not _PRESENT[k]:
        k += 1
    assert lo <= k <= hi, (lo, k, hi)
    return k


def test_queries_during_writes_and_retention_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    n = 1300  # 10 s cycles for 3.6 h: three hours roll up, raw older than 10 min goes
    with Store(tmp_path / "h.db", chunk_cycles=4, retention=Retention(raw=600)) as store:
        seen: list[int] = []
        writer = Writer(store, 0, n, seen, retention_every=97)
        writer.start()
        _query_while(store, writer, _check_rolled)
        writer.join()
        assert not writer.errors and {550, 1050} <= set(seen)
        _check_rolled(store.query("m", **EVERYTHING), n, n)
        assert store.query("m", **EVERYTHING)[SeriesKey("a", "m", (("k", "c"),))][0][0] \
            == _t(5)  # retention did drop raw data during the run


def test_a_read_sees_its_snapshot_through_folds_and_retention(tmp_path: Path) -> None:
    """Deterministic: cycles folded and blocks deleted in the middle of a read change nothing."""
    with Store(tmp_path / "h.db", chunk_cycles=4, retention=Retention(raw=600)) as store:
        for i in range(402):  # 100 folded blocks and 2 cycles in the head
            store.write_cycle(_t(i), _rows(i))
        before = store.query("m", **EVERYTHING)
        calls: list[int] = []

        def meanwhile() -> None:  # another thread, as the collector would
            calls.append(1)
            store._read_hook = None
            for i in range(402, 410):  # two folds, one of them of the cycles in the head
                store.write_cycle(_t(i), _rows(i))
            report = store.apply_retention(_t(409))
            assert report.deleted[0] > 0 and report.rolled[1] > 0

        store._read_hook = lambda: _in_thread(meanwhile)
        during = store.query("m", **EVERYTHING)
        assert calls == [1]
        _same(during, before)
        after = store.query("m", **EVERYTHING)
        assert after[SeriesKey("a", "m", (("k", "c"),))][0][-1] == _t(409)
        assert after[SeriesKey("a", "m", (("k", "c"),))][0][0] == _t(5)  # raw went


def test_writes_and_catalog_calls_complete_while_a_read_is_paused(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=4) as store:
        for i in range(60):
            store.write_cycle(_t(i), _rows(i))
        expected = Truth(60).upto(60)
        inside, release = threading.Event(), threading.Event()

        def pause() -> None:
            inside.set()
            release.wait(DEADLOCK)

        store._read_hook = pause
        results: list[dict] = []
        query = threading.Thread(target=lambda: results.append(
            store.query("m", **EVERYTHING)), daemon=True)
        query.start()
        try:
            assert inside.wait(DEADLOCK)
            for i in range(60, 70):  # folds included
                assert _in_thread(lambda i=i: store.write_cycle(_t(i), _rows(i))) == i + 1
            assert _in_thread(store.last_cycle) == (70, _t(69))
            assert SeriesKey("b", "m", (("k", "late"), ("z", "1"))) in _in_thread(store.series)
            assert _in_thread(store.targets) == ["a", "b"]
            assert query.is_alive() and not results  # the read is still in its slow part
        finally:
            release.set()
            query.join(DEADLOCK)
        store._read_hook = None
        _same(results[0], expected)  # as of when it started, not what came after
        _same(store.query("m", **EVERYTHING), Truth(70).upto(70))


def test_close_waits_for_a_paused_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db", chunk_cycles=4)
    for i in range(40):
        store.write_cycle(_t(i), _rows(i))
    inside, release = threading.Event(), threading.Event()

    def pause() -> None:
        inside.set()
        release.wait(DEADLOCK)

    store._read_hook = pause
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(store.query("m", **EVERYTHING))
        except ValueError as exc:
            outcome.append(exc)

    query = threading.Thread(target=read, daemon=True)
    query.start()
    assert inside.wait(DEADLOCK)
    closer = threading.Thread(target=store.close, daemon=True)
    closer.start()
    release.set()
    query.join(DEADLOCK)
    closer.join(DEADLOCK)
    assert not query.is_alive() and not closer.is_alive()
    if isinstance(outcome[0], dict):
        _same(outcome[0], Truth(40).upto(40))
    else:
        assert "closed" in str(outcome[0])
    with pytest.raises(ValueError, match="closed"):
        store.query("m", **EVERYTHING)
    with Store(tmp_path / "h.db") as again:  # closed cleanly: everything is there
        _same(again.query("m", **EVERYTHING), Truth(40).upto(40))


def _read_until_closed(store: Store, running: threading.Barrier, out: list[object]) -> None:
    """Query everything again and again; the first exception ends it (kept in ``out``)."""
    running.wait(DEADLOCK)
    while True:
        try:
            out.append(store.query("m", **EVERYTHING))
        except BaseException as exc:  # noqa: BLE001 - checked by the test thread
            out.append(exc)
            return


def test_close_during_reads_is_a_clear_error_or_a_full_result(tmp_path: Path) -> None:
    template = tmp_path / "template.db"
    with Store(template, chunk_cycles=8) as store:
        for i in range(400):
            store.write_cycle(_t(i), _rows(i) + [("c", "m", (("s", str(s)),), float(i * s))
                                                 for s in range(60)])
    for attempt in range(25):
        path = tmp_path / f"h{attempt}.db"
        shutil.copyfile(template, path)
        store = Store(path, chunk_cycles=8)
        expected = store.query("m", **EVERYTHING)
        running = threading.Barrier(3)
        outcomes: list[list[object]] = [[], []]
        threads = [threading.Thread(target=_read_until_closed, args=(store, running, out),
                                    daemon=True) for out in outcomes]
        for thread in threads:
            thread.start()
        running.wait(DEADLOCK)
        threading.Event().wait(0.002 * (attempt % 5))  # vary where close lands
        store.close()
        for thread, out in zip(threads, outcomes):
            thread.join(DEADLOCK)
            assert not thread.is_alive()
            *results, last = out
            # a plain ValueError: not a StoreError, not sqlite3's ProgrammingError
            assert type(last) is ValueError and str(last) == "store is closed", repr(last)
            for got in results:
                _same(got, expected)


def test_a_read_that_fails_midway_leaves_the_store_usable(tmp_path: Path) -> None:
    """An exception inside a read (bad arguments, or anything in its slow part) gives
    back its connection: later reads work and close does not wait for it."""
    store = Store(tmp_path / "h.db", chunk_cycles=4)
    for i in range(20):
        store.write_cycle(_t(i), _rows(i))

    def fail() -> None:
        store._read_hook = None
        raise RuntimeError("midway")

    store._read_hook = fail
    with pytest.raises(RuntimeError, match="midway"):
        store.query("m", **EVERYTHING)
    for _ in range(3):
        with pytest.raises(ValueError, match="finite"):
            store.query("m", start=math.nan, end=BASE, max_points=5)
    _same(store.query("m", **EVERYTHING), Truth(20).upto(20))
    _in_thread(store.close)
    with pytest.raises(ValueError, match="closed"):
        store.targets()


def test_cached_block_times_follow_the_blob_not_the_id() -> None:
    """Block ids are rowids: a deleted newest block's id comes back for another block,
    and readers on older snapshots may still see the old one. Both must read right."""
    old, new = np.array([1.0, 2.0, 3.0]), np.array([7.0, 8.0, 9.5])
    cache = BlockTimes()
    assert cache.get(5, encode_times(old)).tobytes() == old.tobytes()
    assert cache.get(5, encode_times(new)).tobytes() == new.tobytes()  # same id, new block
    assert cache.get(5, encode_times(old)).tobytes() == old.tobytes()  # an older snapshot
    cache.forget([5, 6])
    assert cache.get(5, encode_times(new)).tobytes() == new.tobytes()


def test_a_read_failing_mid_iteration_leaves_no_stale_snapshot(tmp_path: Path) -> None:
    """A read that raises while chunk rows are still being read must not hand its
    connection back with the old snapshot pinned (later reads would miss every fold)."""
    with Store(tmp_path / "h.db", chunk_cycles=4) as store:
        for i in range(40):
            store.write_cycle(1000.0 + i, [("a", "bad", (), float(i)), ("a", "good", (), float(i))])
        sid = store._conn.execute("SELECT id FROM series WHERE name = 'bad'").fetchone()[0]
        raw = sqlite3.connect(tmp_path / "h.db")  # damage one chunk in the middle of the series
        with raw:
            raw.execute("UPDATE chunks SET blob = x'00' WHERE series_id = ? AND block_id = "
                        "(SELECT MIN(block_id) + 2 FROM chunks WHERE series_id = ?)", (sid, sid))
        raw.close()
        with pytest.raises(StoreError, match="h.db: chunk") as failed:  # kept, as a caller
            store.query("bad", **EVERYTHING)  # showing the error would; it names the file
        for i in range(40, 80):  # ten more folds
            store.write_cycle(1000.0 + i, [("a", "bad", (), float(i)), ("a", "good", (), float(i))])
        got = store.query("good", **EVERYTHING)[SeriesKey("a", "good", ())]
        assert len(got[0]) == 80
        del failed


@pytest.mark.parametrize("bad", [":memory:", ""])
def test_a_store_without_a_file_is_refused(bad: str) -> None:
    """Readers open the file again by its path: an in-memory store would read as empty."""
    with pytest.raises(ValueError, match="a store needs a file"):
        Store(bad)


def test_readers_find_a_store_opened_by_a_relative_path_after_a_chdir(tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store("h.db", chunk_cycles=4) as store:
        for i in range(10):
            store.write_cycle(1000.0 + i, [("a", "m", (), float(i))])
        monkeypatch.chdir(tmp_path.parent)
        got = store.query("m", **EVERYTHING)[SeriesKey("a", "m", ())]
        assert len(got[0]) == 10
    assert not (tmp_path.parent / "h.db").exists()  # no stray empty file made
