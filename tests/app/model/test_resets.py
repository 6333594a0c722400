"""Counter resets the value alone cannot show: a restart that climbs back above the old value.

A changed ``process_start_time_seconds`` or ``_created`` is a reset (REFERENCE.md):
the increase over the window is then the new value, not new − old.
"""

from __future__ import annotations

import math

import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

API = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
LB = ScrapeTarget("lb", "http://127.0.0.1:2/metrics", kind="balancer")
HIST = "trimtab_http_request_duration_seconds"
GET = 'route="/r",method="GET"'


def with_start(n: int, start: float | None, errors: int = 0) -> str:
    """Text 0.0.4: a histogram (all ``n`` at 0.22 s), requests and a process start time."""
    lines = [f"# TYPE {HIST} histogram"]
    for le in ("0.2", "0.3", "+Inf"):
        lines.append(f'{HIST}_bucket{{{GET},le="{le}"}} {0 if le == "0.2" else n}')
    lines += ["# TYPE trimtab_http_requests_total counter",
              f'trimtab_http_requests_total{{{GET},status="200"}} {n - errors}',
              f'trimtab_http_requests_total{{{GET},status="500"}} {errors}']
    if start is not None:
        lines += ["# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {start}"]
    return "\n".join(lines) + "\n"


def with_created(n: int, created: float, errors_created: float | None = None) -> str:
    """OpenMetrics: the same series, each with its ``_created``; 5xx only when dated."""
    lines = [f"# TYPE {HIST} histogram"]
    for le in ("0.2", "0.3", "+Inf"):
        lines.append(f'{HIST}_bucket{{{GET},le="{le}"}} {0 if le == "0.2" else n}')
    lines += [f"{HIST}_count{{{GET}}} {n}", f"{HIST}_sum{{{GET}}} {0.22 * n}",
              f"{HIST}_created{{{GET}}} {created}",
              "# TYPE trimtab_http_requests counter",
              f'trimtab_http_requests_total{{{GET},status="200"}} {n}',
              f'trimtab_http_requests_created{{{GET},status="200"}} {created}']
    if errors_created is not None:
        lines += [f'trimtab_http_requests_total{{{GET},status="500"}} 1',
                  f'trimtab_http_requests_created{{{GET},status="500"}} {errors_created}']
    return "\n".join(lines) + "\n# EOF\n"


def balancer(a: int, b: int, start: float) -> str:
    """A balancer's per-server request counters and its process start time."""
    return ("# TYPE trimtab_balancer_requests_total counter\n"
            f'trimtab_balancer_requests_total{{server="a"}} {a}\n'
            f'trimtab_balancer_requests_total{{server="b"}} {b}\n'
            f"process_start_time_seconds {start}\n")


def rate_after(first: str, second: str) -> FleetModel:
    """``first`` at 100 and 101 s, ``second`` at 102 s, one tick at 102 s over ``[2s]``.

    The scrapes span the whole range [100, 102], so Prometheus' rate extrapolates
    nothing: it is the increase over 2 s.
    """
    model = FleetModel(rate_window=2.0)
    for t, text in ((100.0, first), (101.0, first), (102.0, second)):
        model.ingest(ScrapeResult(API, t, True, 0.01, parse(text), ""))
    model.tick(102.0)
    return model


def test_non_finite_start_time_is_ignored_not_a_reset_every_scrape() -> None:
    # NaN != NaN: taken at face value, every scrape would look like a restart.
    model = rate_after(with_start(500, math.nan), with_start(800, math.nan))
    assert model.routes["/r"].rate == pytest.approx(150.0)  # (800 − 500) / 2 s


def test_restart_by_process_start_time_counts_the_new_value() -> None:
    # Restarted between scrapes and already served more than before: 800 > 500.
    model = rate_after(with_start(500, 1000.0), with_start(800, 1001.5))
    stats = model.routes["/r"]
    assert stats.rate == pytest.approx(400.0)  # 800 / 2 s, not (800 − 500) / 2 s
    assert stats.quantiles[0.95].value == pytest.approx(0.295)  # from all 800 observations


def test_restart_resets_the_error_ratio_too() -> None:
    model = rate_after(with_start(500, 1000.0, errors=100), with_start(800, 1001.5, errors=120))
    # Without the reset: 20 / 300; with it: 120 / 800.
    assert model.routes["/r"].error_ratio == pytest.approx(120 / 800)


def test_restart_by_created_counts_the_new_value() -> None:
    model = rate_after(with_created(500, 1000.0), with_created(800, 1001.5))
    stats = model.routes["/r"]
    assert stats.rate == pytest.approx(400.0)
    assert model.snapshot("p95")["/r"][1][-1] == pytest.approx(0.295)


def test_normal_increase_is_unaffected() -> None:
    by_start = rate_after(with_start(500, 1000.0), with_start(800, 1000.0))
    by_created = rate_after(with_created(500, 1000.0), with_created(800, 1000.0))
    without = rate_after(with_start(500, None), with_start(800, None))
    for model in (by_start, by_created, without):
        assert model.routes["/r"].rate == pytest.approx(150.0)


def test_a_series_that_appears_is_not_a_reset_of_the_others() -> None:
    # The first 5xx creates a new series with a new _created; the 200s go on counting.
    model = rate_after(with_created(500, 1000.0), with_created(800, 1000.0, errors_created=1001.0))
    # (800 − 500) / 2 s, not 801 / 2 s; the 5xx series has one sample in the range, so, as
    # in Prometheus, no rate yet (it used to add 1 / 2 s).
    assert model.routes["/r"].rate == pytest.approx(150.0)


def test_a_lower_value_is_still_a_reset_without_any_marker() -> None:
    model = rate_after(with_start(500, None), with_start(80, None))
    assert model.routes["/r"].rate == pytest.approx(40.0)


def test_balancer_restart_resets_the_observed_share() -> None:
    model = FleetModel(rate_window=2.0)  # three scrapes spanning the range: no extrapolation
    model.ingest(ScrapeResult(LB, 100.0, True, 0.01, parse(balancer(900, 100, 1000.0)), ""))
    model.ingest(ScrapeResult(LB, 101.0, True, 0.01, parse(balancer(900, 100, 1000.0)), ""))
    # Restarted: since then a got 300, b got 700 (b's counter is past its old value).
    model.ingest(ScrapeResult(LB, 102.0, True, 0.01, parse(balancer(300, 700, 1001.0)), ""))
    model.tick(102.0)
    share = {row.server: row.observed for row in model.share}
    assert share == {"a": pytest.approx(0.3), "b": pytest.approx(0.7)}
