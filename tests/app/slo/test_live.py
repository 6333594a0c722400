"""SLO burn in the live model: one ``burn`` point per SLO per tick, from the tick's own
bucket and status-class rates (hand-computed scrapes, then a real tick)."""

from __future__ import annotations

import math

import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.slo.definition import SLO
from trimtab.app.slo.live import burn_deriver, live_error_ratio
from trimtab.collectors.exposition import Exposition, Sample
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

BUCKET = "trimtab_http_request_duration_seconds_bucket"
REQUESTS = "trimtab_http_requests_total"


def _scrape(t: float, n: int) -> ScrapeResult:
    """After ``n`` seconds: /search got 10 req/s, 8 within 0.1 s, 9 within 0.25 s; 1/s is a
    502 and 1/s a 429."""
    route = (("method", "GET"), ("route", "/search"))
    samples = [Sample(BUCKET, (("le", le), *route), float(per * n))
               for le, per in (("0.1", 8), ("0.25", 9), ("+Inf", 10))]
    samples += [Sample(REQUESTS, (*route, ("status", status)), float(per * n))
                for status, per in (("200", 8), ("502", 1), ("429", 1))]
    return ScrapeResult(ScrapeTarget("api-1", "http://x"), t, True, 0.0,
                        Exposition(samples=samples))


@pytest.fixture()
def model() -> FleetModel:
    model = FleetModel(rate_window=10.0)
    for n in range(12):
        model.ingest(_scrape(1000.0 + n, n))
    return model


SLOS = [
    SLO("exact", "/search", "latency", 0.9, threshold_s=0.25),  # 1 of 10 slower: burn 1
    SLO("between", "/search", "latency", 0.9, threshold_s=0.175),  # 8.5 of 10: burn 1.5
    SLO("five", "/search", "availability", 0.99),  # 1 of 10 is a 5xx: burn 10
    SLO("five-and-429", "/*", "availability", 0.99, bad_statuses=("5xx", "429")),  # burn 20
    SLO("one-code", "/search", "availability", 0.99, bad_statuses=("503",)),  # not live
    SLO("nobody", "/orders", "latency", 0.9, threshold_s=0.1),
]


def test_burn_per_slo_each_tick(model: FleetModel) -> None:
    model.derivers.append(burn_deriver(lambda: SLOS))
    model.tick(1011.0)
    burn = {k: float(v[-1]) for k, (t, v) in model.snapshot("burn").items()}
    assert burn["exact"] == pytest.approx(1.0)
    assert burn["between"] == pytest.approx(1.5)
    assert burn["five"] == pytest.approx(10.0)
    assert burn["five-and-429"] == pytest.approx(20.0)
    assert math.isnan(burn["one-code"])  # a single code is the store's to judge, not a guess
    assert math.isnan(burn["nobody"])  # no traffic is no burn, not zero


def test_the_list_is_read_at_every_tick(model: FleetModel) -> None:
    chosen: list[SLO] = []
    model.derivers.append(burn_deriver(lambda: chosen))
    model.tick(1010.0)
    assert model.snapshot("burn") == {}
    chosen.append(SLOS[0])
    model.tick(1011.0)
    assert list(model.snapshot("burn")) == ["exact"]
    assert live_error_ratio(model, SLOS[0]) == pytest.approx(0.1)
