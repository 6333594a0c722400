"""Replay: a window of stored raw samples (store or snapshot) rebuilds the model the live one was.

The demo fleet is scraped by the real engine. Each cycle's newest scrape per
target, stamped with the cycle time, goes into a model with a store (what the
store can hold of a cycle); replaying the store, or a snapshot exported from
it, must give the same derived series as that model, point for point.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.replayer import Replayer, ReplayError, cycles_from, replay
from trimtab.app.snapshot.export import export_snapshot, open_snapshot
from trimtab.app.store.store import Store
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget
from trimtab.demo.fleet import DemoFleet

METRICS = ("p50", "p95", "p99", "rate", "error_ratio", "hit_ratio", "share", "p95_instance")
CYCLES = 16  # more than a full 10 s rate window


@dataclasses.dataclass
class Recorded:
    store: Store
    model: FleetModel  # fed the same cycles the store holds
    live: FleetModel  # fed straight by the engine, as the cockpit is
    traces: list[dict]


def _record(fleet: DemoFleet, store: Store) -> Recorded:
    """Scrape the fleet with the real engine until CYCLES cycles are stored."""
    model, live = FleetModel(store=store), FleetModel()
    pending: dict[str, ScrapeResult] = {}
    traces: list[dict] = []
    lock, done = threading.Lock(), threading.Event()

    def sink(result: ScrapeResult) -> None:
        live.ingest(result)
        with lock:
            pending[result.target.name] = result  # a second scrape in one cycle replaces the first

    def on_cycle(t: float) -> None:
        live.tick(t)
        with lock:
            results = list(pending.values())
            pending.clear()
        if not results:  # nothing scraped in this cycle: nothing stored, so no tick either
            return
        for result in results:
            model.ingest(dataclasses.replace(result, timestamp=t))
        model.tick(t)
        if (store.last_cycle() or (0, 0))[0] >= CYCLES:
            done.set()

    def on_traces(target: str, batch: list[dict], error: str = "") -> None:
        traces.extend(dict(tr) for tr in batch)

    targets = [ScrapeTarget(t.name, t.url, t.kind, token=t.token) for t in fleet.targets]
    engine = ScrapeEngine(targets, sink, on_cycle=on_cycle, on_traces=on_traces).start()
    try:
        assert done.wait(120), "the demo fleet was not scraped"
    finally:
        engine.stop()
    return Recorded(store, model, live, traces)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Our own demo fleet, stopped once recorded: the replays then have the CPU to themselves."""
    folder = tmp_path_factory.mktemp("replay")
    store = Store(folder / "history.sqlite", chunk_cycles=8)
    fleet = DemoFleet(rps=100.0, log_dir=str(folder))
    try:
        fleet.start()
        try:
            rec = _record(fleet, store)
        finally:
            fleet.stop()
        yield rec
    finally:
        store.close()


def _window(rec: Recorded) -> tuple[float, float]:
    """From a minute before the first stored cycle to the last: every stored cycle."""
    t = next(iter(rec.model.snapshot("p95").values()))[0]
    return float(t[0]) - 60.0, float(t[-1])


def assert_same_series(want: FleetModel, got: FleetModel, since: float = -math.inf) -> int:
    """Every derived series of ``want`` from ``since`` on is in ``got``, point for point."""
    compared = 0
    for metric in METRICS:
        expected, actual = want.snapshot(metric, since), got.snapshot(metric, since)
        assert expected.keys() == actual.keys(), metric
        for key, (t, v) in expected.items():
            np.testing.assert_array_equal(actual[key][0], t, err_msg=f"{metric} {key}")
            np.testing.assert_allclose(actual[key][1], v, rtol=1e-12, equal_nan=True,
                                       err_msg=f"{metric} {key}")
            compared += len(t)
    return compared


def test_store_replay_equals_the_model_fed_live(recorded: Recorded) -> None:
    start, end = _window(recorded)
    model = FleetModel(capacity=4 * CYCLES)
    assert replay(cycles_from(recorded.store, start, end), model) >= CYCLES - 1
    assert assert_same_series(recorded.model, model) > 100
    assert {r.route for r in model.routes.values()} == set(recorded.model.routes)
    assert model.snapshot("hit_ratio") and model.snapshot("share")  # the demo caches and balances


def test_replay_is_close_to_the_engine_fed_model(recorded: Recorded) -> None:
    """Against the engine-fed model, scrape jitter moves rate windows by a scrape now and then."""
    start, end = _window(recorded)
    model = FleetModel(capacity=4 * CYCLES)
    replay(cycles_from(recorded.store, start, end), model)
    for metric in ("p95", "hit_ratio", "share"):
        live, got = recorded.live.snapshot(metric, start), model.snapshot(metric, start)
        assert got.keys() == live.keys()
        for key, (t, v) in got.items():
            lv = live[key][1][np.isin(live[key][0], t)]
            gv = v[np.isin(t, live[key][0])]
            close = np.isclose(gv, lv, rtol=0.25, equal_nan=True)
            assert close.mean() >= 0.8, (metric, key, gv, lv)


def test_snapshot_replay_equals_the_store(recorded: Recorded, tmp_path: Path) -> None:
    start, end = _window(recorded)
    info = export_snapshot(recorded.store, tmp_path / "w.trimtab", start, end,
                           traces=recorded.traces, notes="replay test")
    with open_snapshot(info.path) as snap:
        replayer = Replayer.for_window(snap, *snap.window, traces=snap.traces())
        assert replayer.seek(end) == end
        assert assert_same_series(recorded.model, replayer.model) > 100
        assert len(replayer.model.traces) == info.traces > 0


def test_seek_back_and_forward_gives_the_same_model(recorded: Recorded) -> None:
    start, end = _window(recorded)
    replayer = Replayer.for_window(recorded.store, start, end, traces=recorded.traces)
    replayer.checkpoint_every = 4
    replayer.seek(end)
    assert len(replayer.checkpoints) >= CYCLES // 4
    full = {m: replayer.model.snapshot(m) for m in METRICS}
    first = min(float(t[0]) for t, _ in full["p95"].values())
    middle = first + (end - first) / 2
    replayer.seek(middle)
    newest = max(float(t[-1]) for t, _ in replayer.model.snapshot("p95").values())
    assert middle - 2.0 < newest <= middle  # the model's newest point follows the clock
    assert all(float(tr["start"]) <= middle for tr in replayer.model.traces)
    # what the headline compares is rewound too: as a replay that never went further
    fresh = Replayer.for_window(recorded.store, start, end, traces=recorded.traces)
    fresh.seek(middle)
    routes = list(fresh.model.routes)
    assert replayer.model.instance_latest(routes) == fresh.model.instance_latest(routes) != {}
    replayer.seek(first + 3)
    replayer.step(5.0)
    assert replayer.clock == first + 8
    replayer.seek(end + 100)  # clamped to the window
    assert replayer.clock == end and replayer.at_end
    for metric, series in full.items():
        again = replayer.model.snapshot(metric)
        assert again.keys() == series.keys()
        for key, (t, v) in series.items():
            np.testing.assert_array_equal(again[key][0], t)
            np.testing.assert_array_equal(again[key][1], v)


def test_bad_windows_are_clear_errors(recorded: Recorded) -> None:
    start, end = _window(recorded)
    with pytest.raises(ReplayError, match="after its end"):
        cycles_from(recorded.store, end, start)
    with pytest.raises(ReplayError, match="empty"):
        cycles_from(recorded.store, start, start)
    with pytest.raises(ReplayError, match="no raw samples"):
        cycles_from(recorded.store, end + 3600, end + 7200)
    with pytest.raises(ReplayError, match="finite"):
        Replayer.for_window(recorded.store, math.nan, end)


def test_snapshot_without_samples_is_a_clear_error(recorded: Recorded, tmp_path: Path) -> None:
    """A window of the store with nothing in it exports fine, and then refuses to replay."""
    _start, end = _window(recorded)
    info = export_snapshot(recorded.store, tmp_path / "empty.trimtab", end + 10, end + 20)
    with open_snapshot(info.path) as snap:
        assert info.samples == 0
        with pytest.raises(ReplayError, match="no raw samples"):
            Replayer.for_window(snap, *snap.window)


def test_long_window_is_replayed_at_a_coarser_step(recorded: Recorded) -> None:
    """Above max_cycles the replay keeps one cycle per step; rates come from longer deltas."""
    start, end = _window(recorded)
    replayer = Replayer.for_window(recorded.store, start, end, max_cycles=12)
    assert replayer.resolution == pytest.approx((end - start) / 12)
    assert replayer.model.rate_window >= 2 * replayer.resolution
    replayer.seek(end)
    p95 = replayer.model.snapshot("p95")
    assert p95 and all(len(t) <= 13 for t, _ in p95.values())
    assert all(np.diff(t).min() > 1.5 for t, _ in p95.values() if len(t) > 1), p95
    full = recorded.model.snapshot("hit_ratio")
    for key, (t, v) in replayer.model.snapshot("hit_ratio").items():
        finite = v[np.isfinite(v)]
        assert len(finite) and 0.0 <= finite.min() and finite.max() <= 1.0
        assert key in full
