"""The tick's fast paths derive the same floats as the general ones.

The steady path (rates from the window's two end scrapes) equals the full matrix.

A scrape marked at ingest as continuing the previous one without a reset lets the tick skip
the reset scan over every scrape of the range. Two models ingest the same scrapes, one with
the marks and one without; every series they derive must be equal bit for bit, through
drops, restarts (a changed process start time), a series appearing, NaN and flat counters.
Reading each kind of group through the layout's plans equals walking the rates dict, and
summing bucket columns equals ``sum_buckets``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from trimtab.app.model import fleet
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.promql import sum_buckets
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

HIST = "trimtab_http_request_duration_seconds"
ROUTES = ("/a", "/b", "/c")
LES = ("0.05", "0.1", "0.5", "+Inf")


def body(counts: dict[tuple[str, str], float], requests: dict[tuple[str, str], float],
         start: float) -> str:
    lines = [f"# TYPE {HIST} histogram"]
    for (route, le), n in counts.items():
        lines.append(f'{HIST}_bucket{{route="{route}",method="GET",le="{le}"}} {n}')
    lines.append("# TYPE trimtab_http_requests_total counter")
    for (route, status), n in requests.items():
        lines.append(f'trimtab_http_requests_total{{route="{route}",method="GET",'
                     f'status="{status}"}} {n}')
    lines += ["# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {start}"]
    return "\n".join(lines) + "\n"


def scrapes(rng: random.Random, steps: int, les: tuple[str, ...] = LES) -> list[str]:
    """One target's successive bodies: mostly growing, now and then a drop, a restart, a new
    series (a first 500), a NaN, a flat stretch."""
    counts = {(r, le): 0.0 for r in ROUTES for le in les}
    requests = {(r, "200"): 0.0 for r in ROUTES}
    start, out = 1000.0, []
    for _ in range(steps):
        event = rng.random()
        if event < 0.04:  # a drop the values show
            counts = {k: v / 2 for k, v in counts.items()}
            requests = {k: v / 2 for k, v in requests.items()}
        elif event < 0.07:  # a restart the values may not show
            start += 500.0
        elif event < 0.10 and ("/a", "500") not in requests:
            requests[("/a", "500")] = 1.0
        elif event < 0.12:
            requests[("/b", "200")] = float("nan")
        elif event < 0.2:
            pass  # nothing moved
        else:
            for r in ROUTES:
                fast = rng.randint(0, 20)
                slow = rng.randint(0, 5)
                for le in les:
                    counts[(r, le)] += fast + (slow if le in ("0.5", "+Inf") else 0)
                requests[(r, "200")] += fast + slow
            if ("/a", "500") in requests:
                requests[("/a", "500")] += rng.randint(0, 2)
        out.append(body(counts, requests, start))
    return out


def derived(monkeypatch: pytest.MonkeyPatch, marks: bool, bodies: list[list[str]],
            steady_calls: list[int], by_layout: bool = True) -> dict[tuple[str, str], np.ndarray]:
    real_steady, real_window = fleet.steady_rates, fleet._target_window

    def as_dict(*args: object) -> fleet.TargetWindow:
        w = real_window(*args)  # type: ignore[arg-type]
        return fleet.TargetWindow(w.target, w.newest, dict(w.rates))

    def counted(*args: object) -> np.ndarray:
        steady_calls[0] += 1
        return real_steady(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(fleet, "steady_rates", counted)
    if not marks:
        monkeypatch.setattr(fleet, "_mark_if_steady", lambda old, new: None)
    if not by_layout:  # every group read from the rates dict, not by the layout's plans
        monkeypatch.setattr(fleet, "_target_window", as_dict)
    model = FleetModel()
    targets = [ScrapeTarget(f"api-{i}", f"http://127.0.0.1:{i + 1}/metrics")
               for i in range(len(bodies))]
    for step in range(len(bodies[0])):
        now = 1_700_000_000.0 + step
        for i, target in enumerate(targets):
            model.ingest(ScrapeResult(target, now - 0.3 + 0.1 * i, True, 0.01,
                                      parse(bodies[i][step])))
        model.tick(now)
    monkeypatch.undo()
    return {key: ring.arrays()[1] for key, ring in model.series.items()}


def test_the_steady_path_derives_every_series_as_the_full_matrix_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    bodies = [scrapes(rng, 90) for _ in range(3)]
    fast_calls, full_calls = [0], [0]
    fast = derived(monkeypatch, True, bodies, fast_calls)
    full = derived(monkeypatch, False, bodies, full_calls)
    assert full_calls[0] == 0
    assert fast_calls[0] > 50  # the steady path did most of the work: the test can fail
    assert fast.keys() == full.keys()
    assert len(fast) > 20
    for key in fast:
        assert np.array_equal(fast[key], full[key], equal_nan=True), key


def test_reading_rates_by_the_layouts_kind_plans_equals_walking_every_group(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The derivations read each kind of group through the layout's plans (and each route's
    instances' p95 in one go); the same series come from windows that only have the dict,
    and from instances whose bucket bounds differ (one exposes an extra bound)."""
    rng = random.Random(9)
    bodies = [scrapes(rng, 40) for _ in range(3)]
    bodies[2] = scrapes(rng, 40, LES + ("0.2",))  # one more bound, exposed last
    plans = derived(monkeypatch, True, bodies, [0])
    walked = derived(monkeypatch, True, bodies, [0], by_layout=False)
    assert plans.keys() == walked.keys()
    assert any(key[0] == "p95_instance" for key in plans)
    for key in plans:
        assert np.array_equal(plans[key], walked[key], equal_nan=True), key


def test_summing_bucket_columns_equals_sum_buckets_bit_for_bit() -> None:
    """``sum by (le)`` over instances from their columns: sum_buckets' floats (added in
    instance order), also when one instance's bounds differ."""
    rng = random.Random(4)
    bounds = (0.1, 0.5, 0.25, float("inf"))
    for _ in range(200):
        instances = [(f"api-{i}", bounds, tuple(rng.uniform(0, 1e3) for _ in bounds))
                     for i in range(rng.randint(1, 9))]
        if rng.random() < 0.3:
            instances.append(("odd", (0.1, float("inf")), (rng.random(), rng.random())))
        want = sum_buckets([dict(zip(les, values)) for _, les, values in instances])
        assert fleet._sum_columns(instances) == want
    assert fleet._sum_columns([]) == sum_buckets([]) == []
