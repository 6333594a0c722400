"""A target discovery dropped is gone, not down (issue 17.4), in the model's own figures.

Its scrapes leave the fleet's rates and error ratio at once (a failing instance that was
scaled away does not keep the error ratio up for the rest of the rate window), its
health row stays marked gone, its series keep what they had, a scrape that was in flight
when it left changes nothing, and the same name joining again is an ordinary target.
"""

from __future__ import annotations

import pytest
from trimtab.app.model.fleet import FleetModel

from tests.app.model.test_model import API, API2, exposition, scrape


def test_a_gone_target_leaves_the_error_ratio_and_rates_at_once() -> None:
    model = FleetModel()
    for t, n in ((100.0, 0), (101.0, 100), (102.0, 200)):
        scrape(model, API, t, exposition(n))
        scrape(model, API2, t, exposition(n, errors=n // 2))  # half of api-2's answers fail
    model.tick(102.0)
    assert model.routes["/r"].error_ratio == pytest.approx(0.25)
    assert model.routes["/r"].rate == pytest.approx(40.0)
    model.depart(API2.name, 102.5)
    scrape(model, API, 103.0, exposition(300))
    model.tick(103.0)
    assert model.routes["/r"].error_ratio == 0.0  # api-2's 5xx left with it
    assert model.routes["/r"].rate == pytest.approx(30.0)  # api-1 alone: 0 → 300 in [10s]
    h = model.health[API2.name]
    assert h.gone == 102.5 and h.up  # neither down nor forgotten: gone
    assert model.departures == [(102.5, API2.name)]
    assert ("p95", "/r") in model.series  # the fleet's series keep their history


def test_a_scrape_in_flight_when_it_left_changes_nothing_and_a_rejoin_is_ordinary() -> None:
    model = FleetModel()
    scrape(model, API2, 100.0, exposition(0))
    model.depart(API2.name, 101.0)
    model.depart(API2.name, 105.0)  # twice: the first time stands
    scrape(model, API2, 100.5, None)  # started before it left: ignored
    h = model.health[API2.name]
    assert (h.gone, h.up, h.failed_scrapes) == (101.0, True, 0)
    scrape(model, API2, 110.0, exposition(10))  # the same name, back
    assert (h.gone, h.up, h.ok_scrapes) == (0.0, True, 2)
    model.depart("never-seen", 120.0)  # nothing to mark
    assert model.departures == [(101.0, API2.name)]
