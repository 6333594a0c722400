"""Compare: per-route figures of two windows of a real store (and of snapshots exported from it)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from trimtab.app.replay.compare import compare, compare_sources, p95_overlay, window_figures
from trimtab.app.replay.replayer import ReplayError
from trimtab.app.snapshot.export import export_snapshot, open_snapshot
from trimtab.app.store.store import Store
from trimtab.collectors.promql import histogram_quantile

T0 = 1_700_000_000.0
TARGETS = ("api-1", "api-2")
ROUTES = ("/fast", "/slow")
LES = (0.01, 0.05, 0.1, 0.5, 1.0, math.inf)
HIST = "trimtab_http_request_duration_seconds_bucket"
REQS = "trimtab_http_requests_total"
CACHE = "trimtab_cache_requests_total"
FAST = np.array([50, 30, 10, 5, 4, 1])  # requests per bucket per cycle, not cumulative
SLOW = np.array([5, 10, 20, 40, 20, 5])


def _le(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def fill(store: Store, cycles: int = 200) -> None:
    """Routes get slower and the cache colder after cycle 100; 2 % errors, then 10 %."""
    counts = {(t, r): np.zeros(len(LES)) for t in TARGETS for r in ROUTES}
    cache = {(t, r, x): 0.0 for t in TARGETS for r in ROUTES for x in ("hit", "miss")}
    for i in range(cycles):
        after = i >= 100
        rows = []
        for target in TARGETS:
            for r, route in enumerate(ROUTES):
                shape = SLOW if after and r == 1 else FAST
                counts[(target, route)] += np.cumsum(shape)
                total = counts[(target, route)][-1]
                for le, v in zip(LES, counts[(target, route)], strict=True):
                    rows.append((target, HIST, (("route", route), ("le", _le(le))), float(v)))
                errors = total * (0.1 if after else 0.02)
                rows.append((target, REQS, (("route", route), ("status", "200")), total - errors))
                rows.append((target, REQS, (("route", route), ("status", "500")), errors))
                cache[(target, route, "hit")] += 6 if after else 9
                cache[(target, route, "miss")] += 4 if after else 1
                for x in ("hit", "miss"):
                    rows.append((target, CACHE, (("route", route), ("result", x)),
                                 cache[(target, route, x)]))
        store.write_cycle(T0 + i, rows)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "history.sqlite", chunk_cycles=32)
    try:
        fill(s)
        yield s
    finally:
        s.close()


def expected_p95(store: Store, route: str, start: float, end: float) -> float:
    """histogram_quantile over bucket deltas (last − first sample) summed across instances."""
    summed: dict[float, float] = {}
    for key, (_, v) in store.query(HIST, {"route": route}, start=start, end=end,
                                   max_points=10**6).items():
        le = float(dict(key.labels)["le"])
        summed[le] = summed.get(le, 0.0) + float(v[-1] - v[0])
    q = histogram_quantile(0.95, sorted(summed.items()))
    assert q is not None
    return q.value


def test_two_ranges_of_one_store(store: Store) -> None:
    a = window_figures(store, T0, T0 + 99, "before")
    b = window_figures(store, T0 + 100, T0 + 199, "after")
    rows = {row.route: row for row in compare(a, b)}
    assert set(rows) == set(ROUTES)
    slow, fast = rows["/slow"], rows["/fast"]
    for row, start, end in ((slow, T0, T0 + 99), (slow, T0 + 100, T0 + 199)):
        side = row.a if start == T0 else row.b
        assert side is not None
        assert side.value("p95") == pytest.approx(expected_p95(store, row.route, start, end))
    assert slow.delta("p95") > 0.1 and slow.ratio("p95") >= 2  # the slow route got slower
    assert fast.delta("p95") == pytest.approx(0.0, abs=1e-12)
    # 100 req/cycle/instance × 2 instances, at 1 cycle per second
    assert fast.a is not None and fast.a.rate == pytest.approx(200.0)
    assert fast.a.error_ratio == pytest.approx(0.02) and fast.b.error_ratio == pytest.approx(0.1)
    assert fast.a.hit_ratio == pytest.approx(0.9) and fast.b.hit_ratio == pytest.approx(0.6)
    assert fast.delta("hit_ratio") == pytest.approx(-0.3)
    assert slow.b is not None and slow.b.value("p95") > fast.b.value("p95")


def test_two_snapshots_compare_like_the_store(store: Store, tmp_path: Path) -> None:
    first = export_snapshot(store, tmp_path / "a.trimtab", T0, T0 + 99)
    second = export_snapshot(store, tmp_path / "b.trimtab", T0 + 100, T0 + 199)
    with open_snapshot(first.path) as sa, open_snapshot(second.path) as sb:
        got = compare(window_figures(sa, *sa.window), window_figures(sb, *sb.window))
    want = compare(window_figures(store, T0, T0 + 99), window_figures(store, T0 + 100, T0 + 199))
    assert [r.route for r in got] == [r.route for r in want]
    for g, w in zip(got, want, strict=True):
        for figure in ("p50", "p95", "p99", "rate", "error_ratio", "hit_ratio"):
            assert g.delta(figure) == pytest.approx(w.delta(figure), nan_ok=True)


def test_overlay_is_aligned_on_each_window_start(store: Store) -> None:
    a = p95_overlay(store, T0, T0 + 99)
    b = p95_overlay(store, T0 + 100, T0 + 199)
    assert set(a) == set(b) == set(ROUTES)
    assert a["/slow"][0][0] == pytest.approx(1.0) and b["/slow"][0][0] == pytest.approx(1.0)
    assert np.nanmax(a["/slow"][1]) < np.nanmin(b["/slow"][1][15:])  # after the rate window


def test_bad_windows(store: Store) -> None:
    with pytest.raises(ReplayError, match="after its end"):
        window_figures(store, T0 + 50, T0)
    with pytest.raises(ReplayError, match="no raw samples"):
        window_figures(store, T0 + 10_000, T0 + 20_000)


def test_compare_sources_holds_both_windows(store: Store) -> None:
    seen: list[float] = []
    result = compare_sources(store, (T0, T0 + 99), store, (T0 + 100, T0 + 199), ("before", "after"),
                             progress=seen.append)
    assert (result.a.label, result.b.label) == ("before", "after")
    assert [r.route for r in result.rows] == [r.route for r in compare(result.a, result.b)]
    assert set(result.overlay_a) == set(result.overlay_b) == set(ROUTES)
    assert seen and 0 <= seen[0] <= 0.5 < max(seen) and seen[-1] == pytest.approx(1.0)


def test_a_restart_inside_the_window_loses_nothing(tmp_path: Path) -> None:
    """Steady 100 req/s for 120 s, the instance restarting at 60 s (a rollout): the window's
    rate stays ~100 (first and last scrape alone gave 50)."""
    bucket, requests = "trimtab_http_request_duration_seconds_bucket", "trimtab_http_requests_total"
    t0 = 1_700_000_000.0
    with Store(tmp_path / "h.sqlite") as store:
        for k in range(121):
            restarted = k >= 60
            n = 100.0 * (k - 60 if restarted else k)  # the counter starts from 0 again at 60 s
            store.write_cycle(t0 + k, [
                ("api", "process_start_time_seconds", (), t0 + 60 if restarted else t0 - 1000),
                ("api", requests, (("method", "GET"), ("route", "/a"), ("status", "200")), n),
                ("api", bucket, (("le", "0.1"), ("route", "/a")), n),
                ("api", bucket, (("le", "+Inf"), ("route", "/a")), n)])
        figures = window_figures(store, t0, t0 + 120)
    assert figures.routes["/a"].rate == pytest.approx(100.0, rel=0.02)
