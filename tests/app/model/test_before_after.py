"""The one judge of a change, on deterministic series (a pure function of arrays)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from trimtab.app.model.before_after import (
    bounding_changes,
    change_scope,
    compare,
    compare_all,
    format_value,
    windows,
)

CHANGE = 10_000.0


def series(before_level: float, after_level: float, noise: float, settle_spike: float = 0.0,
           seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """One sample per second for 10 min around CHANGE; a spike may fill the settle period."""
    rng = np.random.default_rng(seed)
    times = np.arange(CHANGE - 600, CHANGE + 600, 1.0)
    values = np.where(times < CHANGE, before_level, after_level) + rng.normal(0, noise, times.size)
    values[(times >= CHANGE) & (times < CHANGE + 30)] += settle_spike
    return times, values


def test_windows_end_at_the_change_and_the_after_window_grows() -> None:
    assert windows(CHANGE, 300, 30) == ((CHANGE - 300, CHANGE), (CHANGE + 30, CHANGE + 330))
    # Only 14 s after the settle period: the after window holds 14 s, the before window
    # keeps its full length (the normal spread is estimated from all of it).
    assert windows(CHANGE, 120, 15, now=CHANGE + 29) == ((CHANGE - 120, CHANGE),
                                                          (CHANGE + 15, CHANGE + 29))
    # The previous change to the same target (and its settle period) bounds the start;
    # the next one bounds the end.
    assert windows(CHANGE, 120, 15, previous_change=CHANGE - 60, next_change=CHANGE + 90) == (
        (CHANGE - 45, CHANGE), (CHANGE + 15, CHANGE + 90))
    with pytest.raises(ValueError):
        windows(CHANGE, 0, 30)
    with pytest.raises(ValueError, match="previous change"):
        windows(CHANGE, 120, 15, previous_change=CHANGE + 1)
    with pytest.raises(ValueError, match="finite"):
        windows(math.nan, 120, 15)


def test_a_46_percent_p95_drop_is_better_on_a_named_route() -> None:
    t, v = series(0.2185, 0.118, noise=0.004)
    result = compare(t, v, CHANGE, window=120, settle=15, metric="/products/{id} p95")
    assert result.beyond is True and result.direction == "better"
    assert result.delta_pct == pytest.approx(-0.46, abs=0.02)
    assert result.label == "better (beyond the normal spread)"
    # In the app's units (ms), not seconds.
    assert re.match(r"/products/\{id\} p95: 21\d\.\d ms → 11\d\.\d ms \(-4\d\.\d %\)",
                    result.verdict), result.verdict
    assert "0.2" not in result.verdict


def test_latency_and_errors_up_are_worse() -> None:
    t, v = series(0.200, 0.260, noise=0.010)
    assert compare(t, v, CHANGE, window=300, settle=30, metric="/r p99").direction == "worse"
    t, v = series(0.01, 0.05, noise=0.001)
    errors = compare(t, v, CHANGE, window=300, settle=30, metric="/r error_ratio")
    assert errors.direction == "worse" and errors.change_text == "+4.0 pts"


def test_a_change_inside_the_noise_is_not_claimed() -> None:
    t, v = series(0.200, 0.201, noise=0.010)
    result = compare(t, v, CHANGE, window=300, settle=30, metric="p95")
    assert result.beyond is False and result.direction == "within spread"
    assert result.band[0] <= result.after <= result.band[1]
    assert "not shown to differ" in result.verdict


def test_settle_period_is_excluded() -> None:
    t, v = series(0.2, 0.2, noise=0.005, settle_spike=5.0)
    result = compare(t, v, CHANGE, window=300, settle=30, metric="p99")
    assert result.beyond is False and result.after == pytest.approx(0.2, abs=0.003)
    spiked = compare(t, v, CHANGE, window=300, settle=0, metric="p99")
    assert spiked.beyond is True  # the same data, settle not excluded: the spike shows


def test_hit_ratio_up_is_better_and_down_is_worse() -> None:
    t, v = series(0.30, 0.60, noise=0.02)
    up = compare(t, v, CHANGE, window=300, settle=30, metric="/r hit_ratio")
    assert up.direction == "better" and re.fullmatch(r"\+(29|30)\.\d pts", up.change_text)
    assert re.match(r"/r hit_ratio: (29|30)\.\d % → (59|60)\.\d %", up.verdict), up.verdict
    t, v = series(0.60, 0.30, noise=0.02)
    assert compare(t, v, CHANGE, window=300, settle=30, metric="/r hit_ratio").direction == "worse"


def test_share_toward_the_new_weights_is_as_intended_and_away_is_not() -> None:
    t, v = series(0.50, 0.73, noise=0.01)
    toward = compare(t, v, CHANGE, window=300, settle=30, metric="a share", expected=0.75)
    assert toward.direction == "as intended"
    assert toward.label == "as intended: moved toward the new weights' share 75.0 %"
    away = compare(t, v, CHANGE, window=300, settle=30, metric="a share", expected=0.25)
    assert away.direction == "away from the new weights"
    # Without the new weights known, a share only "changed".
    assert compare(t, v, CHANGE, window=300, settle=30, metric="a share").direction == "changed"


def test_the_before_window_stops_at_the_previous_change() -> None:
    """Warm-up and an earlier change before the window: the band is the settled level's."""
    t = np.arange(CHANGE - 600, CHANGE + 200, 1.0)
    v = np.full(t.size, 0.5)
    v[t < CHANGE - 300] = 0.05  # an earlier change (or warm-up) 300 s before
    v[t >= CHANGE] = 0.75
    unbounded = compare(t, v, CHANGE, window=600, settle=15, metric="a share")
    bounded = compare(t, v, CHANGE, window=600, settle=15, metric="a share",
                      previous_change=CHANGE - 300)
    assert unbounded.before < 0.5  # the old level leaks in without the bound
    assert bounded.before == pytest.approx(0.5) and bounded.before_span[0] == CHANGE - 285
    assert bounded.band == pytest.approx((0.5, 0.5))


def test_bands_are_clipped_to_what_the_metric_can_be() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(CHANGE - 120, CHANGE + 60, 1.0)
    share = np.clip(np.where(rng.random(t.size) < 0.5, 0.0, 0.9), 0, 1)  # wild, 0..0.9
    result = compare(t, share, CHANGE, window=120, settle=15, metric="a share")
    assert 0.0 <= result.band[0] <= result.band[1] <= 1.0
    latency = np.abs(rng.normal(0.01, 0.05, t.size))
    result = compare(t, latency, CHANGE, window=120, settle=15, metric="/r p95")
    assert result.band[0] >= 0.0
    assert "-" not in result.band_text.replace(" – ", "")  # no negative latency shown


def test_no_nan_text_ever() -> None:
    t = np.arange(CHANGE - 120, CHANGE + 60, 1.0)
    zeros = np.zeros(t.size)
    gaps = np.full(t.size, np.nan)
    for values in (zeros, gaps):
        for metric in ("/r p95", "/r hit_ratio", "a share", "requests/s", ""):
            for now in (CHANGE + 5, CHANGE + 20, CHANGE + 60):
                c = compare(t, values, CHANGE, window=120, settle=15, metric=metric, now=now)
                for text in (c.verdict, c.label, c.change_text, c.band_text, c.data_text):
                    assert "nan" not in text.lower() and "inf" not in text.lower(), text
    assert format_value("/r p95", math.nan) == "–"


def test_gaps_are_ignored_and_too_little_data_says_how_much() -> None:
    t, v = series(0.01, 0.05, noise=0.001)
    v[(t >= CHANGE - 300) & (t < CHANGE - 200)] = np.nan  # scrape gaps: 2 of 6 parts empty
    result = compare(t, v, CHANGE, window=300, settle=30, metric="error_rate")
    assert result.n_before == 200 and result.beyond is True and result.direction == "worse"
    empty = compare(t[t < CHANGE], v[t < CHANGE], CHANGE, window=300, settle=30,
                    metric="error_rate")
    assert empty.beyond is None and math.isnan(empty.after)
    assert ("; not enough data yet (0 of the 3 samples needed after the settle period); "
            in empty.verdict)  # the before side was fine: not named
    sparse = compare(np.array([CHANGE - 10, CHANGE + 40]), np.array([1.0, 2.0]), CHANGE,
                     window=300, settle=30)
    assert sparse.beyond is None
    assert "not enough data yet (only 1 of the 3 before-parts needed have samples; " in \
        sparse.verdict


def test_the_verdict_does_not_fade_as_the_after_window_grows() -> None:
    t, v = series(0.2185, 0.118, noise=0.004)
    seen = [compare(t, v, CHANGE, window=120, settle=15, metric="p95", now=CHANGE + s)
            for s in (19, 30, 60, 135, 400)]
    assert [c.direction for c in seen] == ["better"] * 5
    assert len({c.band for c in seen}) == 1  # the normal band does not move with "now"
    assert [c.n_after for c in seen] == [4, 15, 45, 120, 120]
    assert seen[0].data_text == "120 before (120 s) / 4 after (4 s)"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        compare([1.0, 2.0], [1.0], CHANGE, window=10, settle=0)


def test_compare_all_names_each_metric() -> None:
    p95 = series(0.200, 0.150, noise=0.005)
    hits = series(0.5, 0.5, noise=0.01, seed=3)
    share = series(0.5, 0.7, noise=0.01, seed=4)
    cards = compare_all({"/r p95": p95, "/r hit_ratio": hits, "a share": share}, CHANGE,
                        window=300, settle=30, expected={"a share": 0.7})
    assert cards["/r p95"].direction == "better"
    assert cards["/r hit_ratio"].direction == "within spread"
    assert cards["a share"].direction == "as intended"


def test_scope_and_bounding_changes() -> None:
    assert change_scope(["routes./r.ttl", "servers.a.weight"]) == {"route:/r", "balancer"}
    ttl = {"route:/r"}
    others = [(CHANGE - 500, ttl), (CHANGE - 100, {"route:/other"}), (CHANGE - 1, ttl),
              (CHANGE, ttl), (CHANGE + 80, ttl), (CHANGE + 90, {"balancer"})]
    # The same TTL sent to three agents a second apart is one change, not its own bound.
    assert bounding_changes(CHANGE, ttl, others) == (CHANGE - 500, CHANGE + 80)
    assert bounding_changes(CHANGE, {"balancer"}, others) == (None, CHANGE + 90)
