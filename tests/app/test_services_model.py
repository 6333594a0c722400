"""The model keeps two services' same-named routes apart: the same exposition text scraped
from targets of two services gives two routes with their own rates, never one summed."""

from __future__ import annotations

import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.keys import route_key
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

T0 = 1_700_000_000.0


def _text(count: float) -> str:
    return ("# TYPE trimtab_http_requests_total counter\n"
            f'trimtab_http_requests_total{{route="/items/{{id}}",status="200"}} {count}\n'
            "# TYPE trimtab_http_request_duration_seconds histogram\n"
            f'trimtab_http_request_duration_seconds_bucket{{route="/items/{{id}}",le="0.1"}} {count}\n'
            f'trimtab_http_request_duration_seconds_bucket{{route="/items/{{id}}",le="+Inf"}} {count}\n'
            f'trimtab_http_request_duration_seconds_count{{route="/items/{{id}}"}} {count}\n'
            f'trimtab_http_request_duration_seconds_sum{{route="/items/{{id}}"}} {count * 0.05}\n')


def test_same_series_of_two_services_are_two_routes() -> None:
    model = FleetModel()
    targets = {ScrapeTarget("shop-1", "http://127.0.0.1:1/metrics", service="shop"): 10.0,
               ScrapeTarget("api-1", "http://127.0.0.1:2/metrics", service="api"): 30.0,
               ScrapeTarget("plain-1", "http://127.0.0.1:3/metrics"): 50.0}
    for second in range(12):
        for target, per_s in targets.items():
            model.ingest(ScrapeResult(target, T0 + second, True, 0.01,
                                      parse(_text(per_s * second)), ""))
        model.tick(T0 + second)
    rates = {key: stats.rate for key, stats in model.routes.items()}
    assert rates == {route_key("shop", "/items/{id}"): pytest.approx(10.0),
                     route_key("api", "/items/{id}"): pytest.approx(30.0),
                     "/items/{id}": pytest.approx(50.0)}  # the unnamed service: as before
    assert model.services == {"shop-1": "shop", "api-1": "api"}
    # traces of a service's agent are keyed like its series (and not twice when replayed)
    model.ingest_traces("shop-1", [{"route": "/items/{id}", "duration_ms": 5.0}])
    model.ingest_traces("shop-1", [{"route": "shop · /items/{id}", "duration_ms": 6.0}])
    assert [t["route"] for t in model.query_traces(route_key("shop", "/items/{id}"))] == [
        "shop · /items/{id}"] * 2
    assert '{job="api",route="/items/{id}"}' in model.promql("rate", route_key("api", "/items/{id}"))
    assert "job=" not in model.promql("rate", "/items/{id}")


def test_the_instrumentations_own_service_label_keys_its_series() -> None:
    """One endpoint exporting several services (a collector, a mapping that renders
    ``service``): each series keyed by its own label; a label no service may carry (a '/')
    falls back to the target's service rather than losing the series."""
    def text(count: float) -> str:
        out = "# TYPE trimtab_http_requests_total counter\n"
        for service, n in (("cart", 1.0), ("users", 2.0), ("bad/name", 4.0)):
            out += (f'trimtab_http_requests_total{{route="/health",service="{service}",'
                    f'status="200"}} {n * count}\n')
        return out + "# TYPE trimtab_http_request_duration_seconds histogram\n" + "".join(
            f'trimtab_http_request_duration_seconds_bucket{{route="/health",service="{s}",'
            f'le="{le}"}} {n * count}\n'
            for s, n in (("cart", 1.0), ("users", 2.0), ("bad/name", 4.0)) for le in ("0.1", "+Inf"))

    model = FleetModel()
    target = ScrapeTarget("otel-collector", "http://127.0.0.1:4/metrics", service="edge")
    for second in range(12):
        model.ingest(ScrapeResult(target, T0 + second, True, 0.01, parse(text(10.0 * second)), ""))
        model.tick(T0 + second)
    rates = {key: stats.rate for key, stats in model.routes.items()}
    assert rates == {route_key("cart", "/health"): pytest.approx(10.0),
                     route_key("users", "/health"): pytest.approx(20.0),
                     route_key("edge", "/health"): pytest.approx(40.0)}
    assert '{service="cart",route="/health"}' in model.promql("rate", route_key("cart", "/health"))
    assert '{job="edge",route="/health"}' in model.promql("rate", route_key("edge", "/health"))
