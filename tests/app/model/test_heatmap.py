"""The model's latency heat series and exemplar log, from hand-built scrapes.

Every expected value below is worked out by hand from the cumulative counts in the
scrape texts, as Prometheus' ``rate(bucket[W])`` at the tick time: where the scrapes
span the whole range ``[T - W, T]`` (W = ``rate_window``, or two scrape intervals
when wider) nothing is extrapolated and it is the delta over W; the extrapolation
cases are spelled out (the rules: tests/collectors/test_rates.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.heat import ExemplarLog, HeatRing, bucket_rates
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

API1 = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
API2 = ScrapeTarget("api-2", "http://127.0.0.1:2/metrics")
HIST = "trimtab_http_request_duration_seconds"
INF = math.inf


def text(cumulative: dict[str, int], route: str = "/r", start: float | None = None) -> str:
    """Text 0.0.4 with one route's cumulative bucket counts (``le`` → count)."""
    lines = [f"# TYPE {HIST} histogram"]
    lines += [f'{HIST}_bucket{{route="{route}",method="GET",le="{le}"}} {n}'
              for le, n in cumulative.items()]
    if start is not None:
        lines.append(f"process_start_time_seconds {start}")
    return "\n".join(lines) + "\n"


def scrape(model: FleetModel, target: ScrapeTarget, t: float, body: str) -> None:
    model.ingest(ScrapeResult(target, t, True, 0.01, parse(body), ""))


def test_one_instance_bucket_deltas_per_second() -> None:
    model = FleetModel(rate_window=2.0)  # the range [100, 102] holds all three scrapes
    scrape(model, API1, 100.0, text({"0.1": 10, "0.2": 30, "0.4": 35, "+Inf": 36}))
    scrape(model, API1, 101.0, text({"0.1": 12, "0.2": 33, "0.4": 40, "+Inf": 41}))
    scrape(model, API1, 102.0, text({"0.1": 14, "0.2": 40, "0.4": 47, "+Inf": 50}))
    model.tick(102.0)
    t, bounds, z = model.heat("/r")
    assert t.tolist() == [102.0]
    assert bounds.tolist() == [0.1, 0.2, 0.4, INF]
    # Cumulative deltas 4, 10, 12, 14 → per bucket 4, 6, 2, 2 → over 2 s:
    assert z.dtype == np.float32
    assert z.tolist() == [[2.0, 3.0, 1.0, 1.0]]


def test_instances_are_rated_then_summed_over_one_range() -> None:
    """sum by (le) (rate(bucket[W])): every instance over the same range (the widest any
    needs: api-2, scraped every 4 s, widens it to 8 s), each rated on its own."""
    model = FleetModel(rate_window=4.0)
    scrape(model, API1, 96.0, text({"0.1": 0, "0.2": 0, "+Inf": 0}))
    scrape(model, API2, 96.0, text({"0.1": 5, "0.2": 5, "+Inf": 5}))
    for t in (98.0, 100.0, 102.0):
        scrape(model, API1, t, text({"0.1": 0, "0.2": 0, "+Inf": 0}))
    scrape(model, API2, 100.0, text({"0.1": 5, "0.2": 5, "+Inf": 5}))
    scrape(model, API1, 104.0, text({"0.1": 8, "0.2": 10, "+Inf": 10}))
    scrape(model, API2, 104.0, text({"0.1": 5, "0.2": 25, "+Inf": 29}))
    model.tick(104.0)
    assert model.window == 8.0
    _, bounds, z = model.heat("/r")
    assert bounds.tolist() == [0.1, 0.2, INF]
    # Over the 8 s range [96, 104]: api-1 8, 10, 10 → 1, 1.25, 1.25 /s; api-2 0, 20, 24 →
    # 0, 2.5, 3 /s. Summed 1, 3.75, 4.25 → per bucket 1, 2.75, 0.5.
    assert z[0].tolist() == [1.0, 2.75, 0.5]


def test_a_row_per_tick_and_the_rate_window_slides() -> None:
    model = FleetModel(rate_window=2.0)
    counts = [(100.0, 0), (101.0, 3), (102.0, 9), (103.0, 10)]  # all in the 0.1 bucket
    for t, n in counts:
        scrape(model, API1, t, text({"0.1": n, "+Inf": n}))
        model.tick(t)
    t, _, z = model.heat("/r")
    assert t.tolist() == [101.0, 102.0, 103.0]  # the first tick has one scrape, no rate yet
    # The 2 s range [T-2, T]: at 101 it holds 100 and 101 (3 − 0; the counter starts at 0
    # at 100 s, so nothing is extrapolated before it) → 3 / 2; then (9−0)/2, (10−3)/2.
    assert z[:, 0].tolist() == [1.5, 4.5, 3.5]
    assert z[:, 1].tolist() == [0.0, 0.0, 0.0]
    t_since, _, z_since = model.heat("/r", since=102.0)
    assert t_since.tolist() == [102.0, 103.0] and z_since.shape == (2, 2)


def test_counter_drop_is_a_reset_counted_from_zero() -> None:
    model = FleetModel(rate_window=2.0)
    scrape(model, API1, 99.0, text({"0.1": 50, "0.2": 80, "+Inf": 90}))
    scrape(model, API1, 100.0, text({"0.1": 50, "0.2": 80, "+Inf": 90}))
    scrape(model, API1, 101.0, text({"0.1": 2, "0.2": 5, "+Inf": 6}))  # restarted
    model.tick(101.0)
    _, _, z = model.heat("/r")
    assert z[0].tolist() == [1.0, 1.5, 0.5]  # the new counts 2, 5, 6 over 2 s, never negative


def test_restart_seen_by_start_time_counts_the_new_values() -> None:
    # Counts climbed back above the old ones: only process_start_time shows the restart.
    model = FleetModel(rate_window=2.0)
    scrape(model, API1, 100.0, text({"0.1": 5, "+Inf": 6}, start=1000.0))
    scrape(model, API1, 101.0, text({"0.1": 5, "+Inf": 6}, start=1000.0))
    scrape(model, API1, 102.0, text({"0.1": 8, "+Inf": 12}, start=1001.0))
    model.tick(102.0)
    _, _, z = model.heat("/r")
    assert z[0].tolist() == [4.0, 2.0]  # 8 and 4 over 2 s, not (8−5) and (4−1)


def test_stale_route_is_a_nan_gap_not_zeros() -> None:
    model = FleetModel(rate_window=10.0, stale_after=5.0)
    scrape(model, API1, 100.0, text({"0.1": 0, "+Inf": 0}))
    scrape(model, API1, 101.0, text({"0.1": 4, "+Inf": 4}))
    model.tick(101.0)
    model.tick(120.0)  # no scrape for 19 s: the target is stale
    t, _, z = model.heat("/r")
    assert t.tolist() == [101.0, 120.0]
    # 4 requests in the 10 s range (from 0 at 100 s: nothing extrapolated before it).
    assert z[0].tolist() == [pytest.approx(0.4), 0.0]
    assert np.isnan(z[1]).all()


def test_new_bucket_bound_widens_the_columns() -> None:
    model = FleetModel(rate_window=10.0)
    scrape(model, API1, 100.0, text({"0.1": 0, "+Inf": 0}))
    scrape(model, API1, 101.0, text({"0.1": 2, "+Inf": 2}))
    model.tick(101.0)
    scrape(model, API2, 101.0, text({"0.3": 0, "+Inf": 0}))
    scrape(model, API2, 102.0, text({"0.3": 1, "+Inf": 1}))
    scrape(model, API1, 102.0, text({"0.1": 2, "+Inf": 2}))
    model.tick(102.0)
    _, bounds, z = model.heat("/r")
    assert bounds.tolist() == [0.1, 0.3, INF]
    # 2 requests in the 10 s range (from 0: nothing extrapolated before 100 s) → 0.2 /s.
    assert z[0, 0] == pytest.approx(0.2) and np.isnan(z[0, 1]) and z[0, 2] == 0.0  # unknown before
    # sum by (le) of cumulative rates, as Prometheus does: api-1 (2 in 10 s) has no 0.3
    # bucket, so le=0.1 → 0.2, le=0.3 → 0 + 0.1 (api-2 only: 1 in 10 s), +Inf → 0.2 + 0.1.
    # Per bucket 0.2, 0 (the dip carried flat), 0.1 — mixed layouts blur the buckets;
    # nothing is negative or lost in total.
    assert z[1].tolist() == pytest.approx([0.2, 0.0, 0.1])


def test_unknown_route_gives_empty_arrays() -> None:
    t, bounds, z = FleetModel().heat("/nowhere")
    assert t.shape == (0,) and bounds.shape == (0,) and z.shape == (0, 0)


def test_bucket_rates_never_negative_for_mismatched_layouts() -> None:
    # Summing instances with different bounds can make the cumulative dip (6 → 5).
    bounds, values = bucket_rates([(0.1, 2.0), (0.2, 6.0), (0.3, 5.0), (INF, 9.0)])
    assert bounds.tolist() == [0.1, 0.2, 0.3, INF]
    assert values.tolist() == [2.0, 4.0, 0.0, 3.0]


def test_heat_ring_grows_then_wraps_keeping_the_newest() -> None:
    ring = HeatRing(100, np.array([0.1, INF]))
    for i in range(130):
        ring.append(float(i), np.array([0.1, INF]), np.array([i, -i], dtype=np.float32))
    t, _, z = ring.arrays()
    assert len(ring) == 100 and t.tolist() == [float(i) for i in range(30, 130)]
    assert z[:, 0].tolist() == t.tolist() and z[:, 1].tolist() == (-t).tolist()
    assert ring._z.shape == (100, 2)  # never more than capacity rows


def test_heat_ring_refuses_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        HeatRing(0, np.array([INF]))


def openmetrics(trace_a: str, stamp_a: float, trace_b: str) -> str:
    """Buckets 0.1/0.2/+Inf with exemplars: one timed on 0.1, one untimed on 0.2."""
    return (f"# TYPE {HIST} histogram\n"
            f'{HIST}_bucket{{route="/r",method="GET",le="0.1"}} 1 # {{trace_id="{trace_a}"}} 0.05 {stamp_a}\n'
            f'{HIST}_bucket{{route="/r",method="GET",le="0.2"}} 2 # {{trace_id="{trace_b}"}} 0.15\n'
            f'{HIST}_bucket{{route="/r",method="GET",le="+Inf"}} 2\n'
            f'{HIST}_count{{route="/r",method="GET"}} 2\n'
            f'{HIST}_sum{{route="/r",method="GET"}} 0.2\n'
            "# EOF\n")


def test_exemplars_are_logged_by_route_time_and_latency() -> None:
    model = FleetModel()
    scrape(model, API1, 200.0, openmetrics("a" * 32, 190.5, "b" * 32))
    scrape(model, API1, 201.0, openmetrics("a" * 32, 190.5, "b" * 32))  # repeated: kept once
    assert model.exemplar_ids("/r") == ["a" * 32, "b" * 32]
    assert model.exemplar_ids("/r", 190.0, 191.0) == ["a" * 32]
    assert model.exemplar_ids("/r", lo_s=0.1, hi_s=0.2) == ["b" * 32]  # dated by its scrape
    assert model.exemplar_ids("/r", 200.0, 200.0, 0.1, 0.2) == ["b" * 32]
    assert model.exemplar_ids("/other") == []


def test_exemplar_log_is_bounded_per_route() -> None:
    log = ExemplarLog(per_route=3)
    log.add(("/r", f"t{i}", 0.1, float(i)) for i in range(5))
    assert log.trace_ids("/r") == ["t2", "t3", "t4"]


def trace(route: str, end: float, ms: float, trace_id: str = "x") -> dict:
    return {"trace_id": trace_id, "span_id": trace_id, "route": route, "start": end - ms / 1000.0,
            "duration_ms": ms, "status": 200}


def test_query_traces_by_time_window_and_max_duration() -> None:
    model = FleetModel()
    model.ingest_traces("api-1", [trace("/r", 100.0, 50.0, "early"), trace("/r", 105.0, 150.0, "in"),
                                  trace("/r", 105.5, 250.0, "slow"), trace("/s", 105.0, 150.0, "s"),
                                  trace("/r", 111.0, 150.0, "late")])
    found = model.query_traces("/r", min_ms=100.0, max_ms=200.0, window=(104.0, 110.0))
    assert [t["trace_id"] for t in found] == ["in"]
    assert [t["trace_id"] for t in model.query_traces("/r", window=(104.0, 110.0))] == ["slow", "in"]
