"""SLOs and route keys with services: an SLO with a service covers only that service's keys
and, from the history store, only that service's instances."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from trimtab.app.model.keys import route_key
from trimtab.app.slo.burn import BurnAlert
from trimtab.app.slo.track import StoreSource, evaluate
from trimtab.app.store.store import Store

from tests.app.slo.history import LATENCY, T0, fill

ALERTS = (BurnAlert(600.0, 60.0, 6.0, "page"),)
SERVICES = {"api-1": "fast", "api-2": "slow"}  # the history's api-2 turns slow at minute 10


def test_an_slo_with_a_service_matches_only_its_keys() -> None:
    slow = dataclasses.replace(LATENCY, name="search-slow", service="slow")
    assert slow.matches(route_key("slow", "/search"))
    assert not slow.matches(route_key("fast", "/search")) and not slow.matches("/search")
    # without a service: the route of every service (a one-service SLO file keeps working)
    assert LATENCY.matches("/search") and LATENCY.matches(route_key("fast", "/search"))
    pattern = dataclasses.replace(LATENCY, name="all-slow", route="/se*", service="slow")
    assert pattern.matches(route_key("slow", "/search"))
    assert not pattern.matches(route_key("fast", "/search"))


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "history.sqlite") as s:
        fill(s)
        yield s


def test_burn_of_an_slo_with_a_service_reads_only_its_instances(store: Store) -> None:
    at = T0 + 20 * 60
    slos = [LATENCY, dataclasses.replace(LATENCY, name="search-slow", service="slow"),
            dataclasses.replace(LATENCY, name="search-fast-svc", service="fast")]
    by_name = {s.slo.name: s.burns[0].short_burn
               for s in evaluate(slos, StoreSource(store, services=SERVICES), at,
                                 sli_window_s=60.0, alerts=ALERTS)}
    # fleet: 2 of 20 req/s over 0.25 s (10 %); the slow service alone: 2 of 10 (20 %)
    assert by_name["search-fast"] == pytest.approx(10.0, rel=1e-9)
    assert by_name["search-slow"] == pytest.approx(20.0, rel=1e-9)
    assert by_name["search-fast-svc"] == pytest.approx(0.0, abs=1e-9)
