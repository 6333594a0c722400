"""Re-aggregation in replays (other percentiles from the raw buckets) and the compare windows."""

from __future__ import annotations

import math

import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.compare import change_windows
from trimtab.app.replay.model import ReplayModel, level_name, parse_levels
from trimtab.collectors.promql import Quantile

from ..model.test_model import API, API2, exposition, scrape


@pytest.mark.parametrize(("text", "reason"), [
    ("", "at least one"), ("p101", "outside"), ("p0", "outside"), ("p50, fast", "'fast'"),
    ("nan", "outside"), ("p1,p2,p3,p4,p5,p6,p7", "at most 6")])
def test_bad_percentile_lists_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_levels(text)


def test_percentile_lists_parse_and_name_like_the_live_model() -> None:
    assert parse_levels("p99.9, 90; P50, 90") == (0.5, 0.9, 0.999)
    assert [level_name(q) for q in (0.5, 0.95, 0.99, 0.999, 0.9)] == \
        ["p50", "p95", "p99", "p99.9", "p90"]


def test_extra_percentiles_follow_histogram_quantile() -> None:
    """Buckets 0.2 / 0.3 / 0.45, every observation at 0.22 s: p90 = 0.2 + 0.9 × 0.1 = 0.29,
    p99.9 = 0.2999 — and the live three stay exactly what the live model derives."""
    replay, live = ReplayModel(quantiles=(0.5, 0.9, 0.999)), FleetModel()
    for model in (replay, live):
        scrape(model, API, 100.0, exposition(0))
        scrape(model, API2, 100.0, exposition(0))
        scrape(model, API, 101.0, exposition(100, at=0.22))
        scrape(model, API2, 101.0, exposition(50, at=0.32))
        model.tick(101.0)
    q = replay.routes["/r"].quantiles
    # 150 requests: 100 in (0.2, 0.3], 50 in (0.3, 0.45]; rank 0.9 × 150 = 135 lies in the third
    assert q[0.9] == Quantile(pytest.approx(0.3 + 0.15 * 35 / 50), 0.3, 0.45)
    assert q[0.999].value == pytest.approx(0.3 + 0.15 * (149.85 - 100) / 50)
    for level in (0.5, 0.95, 0.99):
        assert q[level] == live.routes["/r"].quantiles[level]
    assert replay.snapshot("p90")["/r"][1].tolist() == [pytest.approx(q[0.9].value)]
    assert "p90" not in {m for m, _ in live.series}  # the live model is untouched


def test_an_idle_route_gets_a_gap_in_extra_percentiles_too() -> None:
    model = ReplayModel(quantiles=(0.9,))
    scrape(model, API, 100.0, exposition(0))
    scrape(model, API, 101.0, exposition(100))
    model.tick(101.0)
    scrape(model, API, 102.0, exposition(100))  # no new requests: no quantile
    model.tick(102.0)
    values = model.snapshot("p90")["/r"][1]
    assert len(values) == 2 and math.isnan(values[1]) == math.isnan(model.snapshot("p95")["/r"][1][1])


@pytest.mark.parametrize(("t", "reason"), [
    (50.0, "outside"), (100.0, "no room"), (190.0, "no room"), (float("nan"), "outside")])
def test_change_windows_refuse_changes_without_room(t: float, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        change_windows(t, 100.0, 200.0, settle=15.0)


def test_change_windows_are_equal_length_with_the_settle_time_left_out() -> None:
    assert change_windows(130.0, 100.0, 200.0, settle=15.0) == ((100.0, 130.0), (145.0, 175.0))
    assert change_windows(160.0, 100.0, 200.0, settle=15.0) == ((135.0, 160.0), (175.0, 200.0))
    assert change_windows(5000.0, 0.0, 10000.0, longest=600.0) == \
        ((4400.0, 5000.0), (5015.0, 5615.0))
    with pytest.raises(ValueError, match="after its end"):
        change_windows(150.0, 200.0, 100.0)
