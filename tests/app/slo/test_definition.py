"""SLO definitions: bad input first (each refused with the field named), then what they mean."""

from __future__ import annotations

import math

import pytest
from trimtab.app.slo.definition import (
    SLO,
    SLOError,
    format_duration,
    parse_duration,
)

LATENCY = dict(name="search-latency", route="/search", kind="latency", objective=0.99,
               threshold_s=0.3)


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "Search Latency"}, "lowercase"),
    ({"name": "-x"}, "lowercase"),
    ({"name": "x" * 64}, "1 to 63"),
    ({"route": "search"}, "start with '/'"),
    ({"route": '/a"b'}, "quote"),
    ({"kind": "speed"}, "not one of"),
    ({"objective": 1.0}, "below 1"),
    ({"objective": 99}, "below 1"),
    ({"objective": 0.099}, "0.5"),
    ({"objective": math.nan}, "share"),
    ({"objective": True}, "share"),
    ({"objective": "0.99"}, "share"),
    ({"window_s": 60.0}, "1 h to 92 d"),
    ({"window_s": 400 * 86400.0}, "1 h to 92 d"),
    ({"window_s": math.inf}, "1 h to 92 d"),
    ({"threshold_s": None}, "threshold"),
    ({"threshold_s": -0.3}, "threshold"),
    ({"threshold_s": 0.0}, "threshold"),
    ({"threshold_s": math.nan}, "threshold"),
    ({"threshold_s": 1e9}, "threshold"),
])
def test_a_bad_definition_is_refused_with_the_field_named(change: dict, message: str) -> None:
    with pytest.raises(SLOError, match=message):
        SLO(**{**LATENCY, **change})


@pytest.mark.parametrize("statuses", [(), ("500x",), ("6xx",), ("42",), (429,)])
def test_availability_needs_real_bad_statuses(statuses: tuple) -> None:
    with pytest.raises(SLOError):
        SLO("orders-ok", "/orders", "availability", 0.999, bad_statuses=statuses)


def test_availability_has_no_threshold() -> None:
    with pytest.raises(SLOError, match="no latency threshold"):
        SLO("orders-ok", "/orders", "availability", 0.999, threshold_s=0.3)


def test_statuses_routes_and_budget() -> None:
    slo = SLO("orders-ok", "/orders", "availability", 0.999, bad_statuses=("5xx", "429"))
    assert [slo.is_bad_status(s) for s in ("502", 500, "429", "404", "200", "5000")] == [
        True, True, True, False, False, False]
    assert slo.status_regex() == "5..|429"
    assert slo.budget == pytest.approx(0.001)
    pattern = SLO("api", "/api/*", "latency", 0.95, threshold_s=0.25)
    assert pattern.matches("/api/items/{id}") and not pattern.matches("/apix")
    assert pattern.route_regex() == "/api/.*"
    assert SLO(**LATENCY).matches("/search") and not SLO(**LATENCY).matches("/search/x")
    assert SLO(**LATENCY).summary() == "99 % of /search within 300 ms over 28 d"
    assert slo.summary() == "99.9 % of /orders without 5xx, 429 over 28 d"


@pytest.mark.parametrize(("text", "seconds"), [
    ("28d", 28 * 86400), ("30d", 30 * 86400), ("6h", 21600), ("5m", 300), ("90s", 90),
    ("1w", 7 * 86400), ("250ms", 0.25)])
def test_durations_read_and_write_back(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "28", "d", "-5d", "1.5h", "28 days", "5y", None])
def test_a_bad_duration_is_refused(text: object) -> None:
    with pytest.raises(SLOError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]
