"""FleetModel derivations from synthetic scrapes: quantiles, rates, resets, staleness."""

from __future__ import annotations

import math

import pytest
from trimtab.app.model import format as fmt
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.promql import Quantile
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

API = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
API2 = ScrapeTarget("api-2", "http://127.0.0.1:2/metrics")


def exposition(n: int, at: float = 0.22, errors: int = 0) -> str:
    """A histogram with buckets 0.2 / 0.3 / 0.45 where all ``n`` observations sit at ``at``."""

    def bucket(le: float) -> int:
        return n if at <= le else 0

    lines = ["# TYPE trimtab_http_request_duration_seconds histogram"]
    for le in ("0.2", "0.3", "0.45", "+Inf"):
        count = n if le == "+Inf" else bucket(float(le))
        lines.append(f'trimtab_http_request_duration_seconds_bucket{{route="/r",method="GET",le="{le}"}} {count}')
    lines += [f'trimtab_http_requests_total{{route="/r",method="GET",status="200"}} {n - errors}',
              f'trimtab_http_requests_total{{route="/r",method="GET",status="500"}} {errors}']
    return "\n".join(lines) + "\n"


def scrape(model: FleetModel, target: ScrapeTarget, t: float, text: str | None) -> None:
    expo = parse(text) if text is not None else None
    model.ingest(ScrapeResult(target, t, expo is not None, 0.01, expo, "" if expo else "refused"))


def test_p95_matches_histogram_quantile_check_values() -> None:
    model = FleetModel()
    scrape(model, API, 100.0, exposition(0))
    scrape(model, API, 101.0, exposition(100, at=0.22))
    model.tick(101.0)
    stats = model.routes["/r"]
    assert stats.quantiles[0.95] == Quantile(pytest.approx(0.295), 0.2, 0.3)
    # rate(x[10s]) at 101: 100 requests in the 10 s range (the counter was 0 at 100 s, so
    # Prometheus extrapolates nothing before that): 10 /s.
    assert stats.rate == pytest.approx(10.0)
    assert fmt.quantile(stats.quantiles[0.95]) == "295 ms (200–300 ms)"


def test_rates_are_summed_across_instances_before_the_quantile() -> None:
    model = FleetModel()
    for target, at in ((API, 0.22), (API2, 0.32)):
        scrape(model, target, 100.0, exposition(0, at))
        scrape(model, target, 101.0, exposition(100, at))
    model.tick(101.0)
    p95 = model.routes["/r"].quantiles[0.95]
    # 200 observations: rank 190 lies in the 0.3–0.45 bucket (100 of them there).
    assert (p95.lower, p95.upper) == (0.3, 0.45)
    assert p95.value == pytest.approx(0.3 + 0.15 * (190 - 100) / 100)


def test_each_instance_has_its_own_error_ratio() -> None:
    # A canary failing 30 % of /r beside a healthy peer reads 15 % route-wide: a staged
    # rollout's error gate must see the canary's own 30 %.
    model = FleetModel()
    for target, errors in ((API, 30), (API2, 0)):
        scrape(model, target, 100.0, exposition(0))
        scrape(model, target, 101.0, exposition(100, errors=errors))
    model.tick(101.0)
    assert model.routes["/r"].error_ratio == pytest.approx(0.15)
    assert model.instance_error_ratio("/r", "api-1") == pytest.approx(0.30)
    assert model.instance_error_ratio("/r", "api-2") == 0.0
    assert math.isnan(model.instance_error_ratio("/r", "api-9"))  # serves nothing here
    assert math.isnan(model.instance_error_ratio("/nowhere", "api-1"))


def test_counter_reset_is_never_a_negative_rate() -> None:
    model = FleetModel()
    scrape(model, API, 100.0, exposition(500))
    scrape(model, API, 101.0, exposition(20))  # the process restarted
    model.tick(101.0)
    # Increase 20 (counted from zero), extrapolated as Prometheus does: half an interval
    # before 100 s (zero lies 25 s back, the range starts 9 s back) → 20 · 1.5 s / 1 s / 10 s.
    assert model.routes["/r"].rate == pytest.approx(3.0)


def test_error_ratio_counts_5xx() -> None:
    model = FleetModel()
    scrape(model, API, 100.0, exposition(0))
    scrape(model, API, 101.0, exposition(100, errors=5))
    model.tick(101.0)
    assert model.routes["/r"].error_ratio == pytest.approx(0.05)


def test_a_stale_target_becomes_a_gap_not_a_flat_line() -> None:
    model = FleetModel(stale_after=5.0)
    scrape(model, API, 100.0, exposition(0))
    scrape(model, API, 101.0, exposition(100))
    model.tick(101.0)
    scrape(model, API, 102.0, None)  # down from now on
    model.tick(110.0)
    _, values = model.snapshot("p95")["/r"]
    assert math.isfinite(values[0]) and math.isnan(values[-1])
    assert model.health["api-1"].up is False
    assert model.health["api-1"].error == "refused"


def test_inf_bucket_is_flagged_as_a_lower_bound() -> None:
    model = FleetModel()
    scrape(model, API, 100.0, exposition(0, at=9.0))
    scrape(model, API, 101.0, exposition(100, at=9.0))
    model.tick(101.0)
    p95 = model.routes["/r"].quantiles[0.95]
    assert p95.in_inf_bucket and p95.value == 0.45
    assert fmt.quantile(p95).startswith("≥ 450 ms")


@pytest.mark.parametrize(("seconds", "text"), [
    (0.000512, "512 µs"), (0.0042, "4.20 ms"), (0.1834, "183 ms"), (2.5, "2.50 s"),
    (math.nan, "–"),
])
def test_duration_format(seconds: float, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_each_cycle_is_written_to_the_store(tmp_path) -> None:
    from trimtab.app.store.store import Store

    store = Store(tmp_path / "history.sqlite")
    model = FleetModel(store=store)
    scrape(model, API, 100.0, exposition(0))
    model.tick(100.5)
    scrape(model, API, 101.0, exposition(100))
    model.tick(101.5)
    series = store.query("trimtab_http_requests_total", {"status": "200"}, start=0, end=200,
                         max_points=100)
    (key, (t, v)), = series.items()
    assert key.target == "api-1"
    assert list(t) == [100.5, 101.5] and list(v) == [0.0, 100.0]
    assert model.store_error == ""
    store.close()


def test_two_scrapes_of_a_target_in_one_cycle_keep_the_newest(tmp_path) -> None:
    """A slow tick (loaded machine) must not make the store refuse the whole cycle."""
    from trimtab.app.store.store import Store

    store = Store(tmp_path / "history.sqlite")
    model = FleetModel(store=store)
    other = ScrapeTarget("api-2", "http://127.0.0.1:2/metrics")
    scrape(model, API, 100.0, exposition(0))
    scrape(model, other, 100.1, exposition(7))
    scrape(model, API, 100.9, exposition(40))  # scraped again before the tick
    model.tick(101.0)
    assert model.store_error == ""
    series = store.query("trimtab_http_requests_total", {"status": "200"}, start=0, end=200,
                         max_points=100)
    assert {k.target: list(v) for k, (_t, v) in series.items()} == {"api-1": [40.0],
                                                                   "api-2": [7.0]}
    store.close()


def test_a_scrape_waiting_for_the_store_is_held_as_columns_not_a_tuple_per_sample(tmp_path) -> None:
    """Between ingest and the tick that writes it, a scrape for the store adds no tuple per
    sample: at 200 targets those were 400,000 young objects a second for every collection
    on the cockpit's GUI thread to walk (issue 16)."""
    import gc

    from trimtab.app.store.store import Store

    store = Store(tmp_path / "history.sqlite")
    model = FleetModel(store=store)
    wide = "".join(f'w_total{{k="{i}"}} {i}\n' for i in range(2000))
    scrape(model, API, 100.0, wide)
    model.tick(100.5)
    expo = parse("".join(f'w_total{{k="{i}"}} {i + 1000}\n' for i in range(2000)))
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects(0) if type(o) is tuple)
        model.ingest(ScrapeResult(API, 101.0, True, 0.01, expo, ""))
        added = sum(1 for o in gc.get_objects(0) if type(o) is tuple) - before
    finally:
        if was:
            gc.enable()
    assert added < 200, f"{added} tuples for a scrape of 2,000 samples"
    model.tick(101.5)
    series = store.query("w_total", {"k": "21"}, start=0, end=200, max_points=100)
    assert [list(v) for _t, v in series.values()] == [[21.0, 1021.0]]
    store.close()


def test_a_failing_store_is_reported_not_raised(tmp_path) -> None:
    from trimtab.app.store.store import Store

    store = Store(tmp_path / "history.sqlite")
    model = FleetModel(store=store)
    scrape(model, API, 99.0, exposition(0))
    model.tick(100.5)
    scrape(model, API, 100.0, exposition(1))
    model.tick(100.2)  # a clock step backwards: the store refuses the cycle
    assert "history not saved" in model.store_error
    assert model.routes  # the live view goes on
    store.close()


@pytest.mark.parametrize("body", [
    'trimtab_http_request_duration_seconds_bucket{route="/a"} 1\n',  # untyped: the parser allows no le
    'trimtab_http_request_duration_seconds_bucket{route="/a",le="fast"} 1\n',
    'trimtab_balancer_requests_total{backend="x"} 5\n',  # no server label
    'trimtab_balancer_upstream_request_duration_seconds_bucket{server="s"} 5\n',
])
def test_a_series_the_cockpit_cannot_place_is_skipped_not_fatal(body: str) -> None:
    """The parser accepts these; ingest must record the scrape instead of raising."""
    model = FleetModel()
    scrape(model, API, 1.0, body)
    health = model.health["api-1"]
    assert health.up and health.samples == 1


def test_a_target_scraped_every_15_s_still_gets_rates_and_percentiles() -> None:
    """Prometheus' usual interval: two scrapes 15 s apart never fall in a 10 s window, so a
    fixed window showed nothing at all; the window widens to two of the target's intervals."""
    model = FleetModel()
    for i, t in enumerate((100.0, 115.0, 130.0)):
        scrape(model, API, t, exposition(1500 * i))
    for now in (130.0, 131.0, 144.0):  # between its scrapes the target is not stale either
        model.tick(now)
        assert model.routes["/r"].rate == pytest.approx(100.0)
    assert model.snapshot("p95", None, ["/r"])["/r"][1].size == 3
    model.tick(175.0)  # three intervals without a scrape: stale, a gap
    assert "/r" not in model.routes or math.isnan(model.routes["/r"].rate)


def test_an_outage_does_not_stretch_the_window_of_a_1_s_target() -> None:
    """The window follows the target's usual interval, not the gap of an outage."""
    model = FleetModel()
    for t in (100.0, 101.0, 102.0, 103.0):
        scrape(model, API, t, exposition(int(t - 100) * 100))
    scrape(model, API, 163.0, exposition(6400))  # back after a minute
    model.tick(163.0)
    # One fresh scrape after the gap: nothing to rate yet (a 61 s rate would hide the outage).
    assert "/r" not in model.routes or math.isnan(model.routes["/r"].rate)
    scrape(model, API, 164.0, exposition(6500))
    model.tick(164.0)
    # The range stays 10 s and holds 1 s of samples: Prometheus extrapolates half an
    # interval before them, 100 · 1.5 s / 1 s / 10 s (a 61 s window would have said 100).
    assert model.routes["/r"].rate == pytest.approx(15.0)


def test_a_route_gone_for_longer_than_expire_after_is_forgotten() -> None:
    """A route renamed by a deploy leaves the model (rings, heat, per-instance series),
    so memory and per-cycle work do not grow all day; a route still served stays."""
    from trimtab.app.model.fleet import EXPIRE_EVERY

    def two_routes(n: int, with_old: bool) -> str:
        text = exposition(n)
        old = "".join(line + "\n" for line in text.splitlines()[1:])  # one TYPE line only
        return text + (old.replace('route="/r"', 'route="/old"') if with_old else "")

    model = FleetModel(expire_after=30.0)
    t = 100.0
    for _ in range(5):
        scrape(model, API, t, two_routes(int(t) * 10, with_old=True))
        model.tick(t)
        t += 1.0
    assert ("p95", "/old") in model.series and "/old" in model.heat_rings
    for _ in range(3 * EXPIRE_EVERY):  # /old is no longer exported
        scrape(model, API, t, two_routes(int(t) * 10, with_old=False))
        model.tick(t)
        t += 1.0
    assert not [k for k in model.series if k[1].startswith("/old")]
    assert "/old" not in model.heat_rings and "/old" not in model.routes
    assert ("p95", "/r") in model.series and "/r" in model.heat_rings
    assert model.routes["/r"].rate == pytest.approx(10.0)


def test_nothing_expires_before_expire_after() -> None:
    from trimtab.app.model.fleet import EXPIRE_EVERY

    model = FleetModel(expire_after=10_000.0)
    scrape(model, API, 100.0, exposition(0))
    scrape(model, API, 101.0, exposition(10))
    model.tick(101.0)
    for i in range(2 * EXPIRE_EVERY):  # target gone: NaN (a gap), but kept
        model.tick(102.0 + i)
    assert ("p95", "/r") in model.series


def test_with_the_defaults_a_gone_route_and_a_gone_instance_expire_at_exact_1_s_ticks() -> None:
    """Capacity 3600 at 1 s and an hour's expiry: a full ring's oldest point is 3599 s old,
    so judging by age alone never expired anything."""
    model = FleetModel()
    t = 0.0
    for _ in range(3):
        scrape(model, API, t, exposition(int(t) * 10))
        text = exposition(int(t) * 10)
        gone = "".join(line + "\n" for line in text.splitlines()[1:])  # one TYPE line only
        scrape(model, API2, t, text + gone.replace('route="/r"', 'route="/gone"'))
        model.tick(t)
        t += 1.0
    assert sorted(model.instance_series("/r")) == ["api-1", "api-2"]
    for _ in range(3700):  # api-2 (the only one serving /gone) is gone; api-1 serves /r
        scrape(model, API, t, exposition(int(t) * 10))
        model.tick(t)
        t += 1.0
    assert ("p95", "/gone") not in model.series and "/gone" not in model.heat_rings
    assert ("p95", "/r") in model.series
    assert list(model.instance_series("/r")) == ["api-1"]


def test_a_balancer_limits_answer_that_is_not_an_object_is_an_error_not_a_crash() -> None:
    # A 200 whose JSON is a list used to raise in the scrape engine's loop and end it: the
    # balancer's rows froze until the target was added again.
    model = FleetModel()
    model.ingest_balancer_limits("lb", {"limits": {"per-ip": {"route": "*", "rate": 1.0}}})
    for bad in (["not", "an", "object"], "text", 3, {"limits": ["x"]}):
        model.ingest_balancer_limits("lb", bad)  # type: ignore[arg-type]
    assert model.balancer_limits["lb"] == {"per-ip": {"route": "*", "rate": 1.0}}
    assert "not a JSON object" in model.config_errors["lb"]
