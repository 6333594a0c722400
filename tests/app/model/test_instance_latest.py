"""FleetModel.instance_latest against what the headline computed before it: each instance's
newest finite p95 point, kept where the newest of those is (a scan of every p95 series).

The model is fed real expositions, parsed as the scrape engine parses them, with the cases
that make the two differ if the tick keeps the wrong thing: an instance without traffic at
the last tick (NaN p95), one that left, and a route quiet on every instance at its last tick.
"""

from __future__ import annotations

import math

from trimtab.app.model.expiry import INSTANCE_SEP
from trimtab.app.model.fleet import EXPIRE_EVERY, FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

BOUNDS = ("0.01", "0.1", "1.0", "+Inf")


def _scrape(routes: dict[str, tuple[int, int]]) -> str:
    """Per route (slow per 100, requests): the latency histogram and request counter."""
    lines = ["# TYPE trimtab_http_request_duration_seconds histogram"]
    for route, (slow, requests) in routes.items():
        labels = f'method="GET",route="{route}",status="200"'
        counts = (requests * (100 - slow) // 100, requests, requests, requests)
        lines += [f'trimtab_http_request_duration_seconds_bucket{{{labels},le="{le}"}} {c}'
                  for le, c in zip(BOUNDS, counts, strict=True)]
        lines += [f"trimtab_http_request_duration_seconds_count{{{labels}}} {requests}",
                  f"trimtab_http_request_duration_seconds_sum{{{labels}}} {requests * 0.02}"]
    return "\n".join(lines) + "\n"


def _scan(model: FleetModel, routes: list[str], since: float | None
          ) -> dict[str, dict[str, float]]:
    """The headline's former way: every p95 series' newest finite point, then per route
    the instances whose point is the newest of the route's."""
    keys = model.read(lambda m: [k for metric, k in m.series if metric == "p95_instance"])
    per_route: dict[str, dict[str, tuple[float, float]]] = {}
    for key, point in model.last_points("p95_instance", since, keys).items():
        route, _, instance = key.partition(INSTANCE_SEP)
        per_route.setdefault(route, {})[instance] = point
    out = {}
    for route in routes:
        last = per_route.get(route, {})
        if last:
            newest = max(t for t, _ in last.values())
            out[route] = {name: v for name, (t, v) in last.items() if t == newest}
    return out


def _fed() -> FleetModel:
    model = FleetModel(rate_window=10.0)
    plan = {  # tick → instance → route → (slow per 100, requests so far)
        100.0: {f"api-{i}": {"/orders": (i, 1000), "/quiet": (i, 500)} for i in range(6)},
        105.0: {f"api-{i}": {"/orders": (i, 2000), "/quiet": (i, 900)} for i in range(6)},
        110.0: {f"api-{i}": {"/orders": (i + 1, 3000), "/quiet": (i, 900)} for i in range(4)},
        115.0: {f"api-{i}": {"/orders": (i + 2, 4000), "/quiet": (i, 900)} for i in range(4)},
    }
    for t in (110.0, 115.0):  # api-5 served nothing after 105: no rate, a NaN p95 at 115
        plan[t]["api-5"] = {"/orders": (5, 2000), "/quiet": (5, 900)}
    # api-4 left after 105; /quiet served nothing anywhere after 105
    for t, instances in plan.items():
        for name, routes in instances.items():
            target = ScrapeTarget(name, f"http://127.0.0.1:{9000 + int(name[-1])}/metrics")
            model.ingest(ScrapeResult(target, t, True, 0.01, parse(_scrape(routes)), ""))
        model.tick(t)
    return model


def test_the_latest_p95_of_each_route_is_what_a_scan_of_every_series_finds() -> None:
    model = _fed()
    routes = ["/orders", "/quiet", "/nowhere"]
    for since in (None, 0.0, 100.0, 105.0, 106.0, 110.0, 111.0, 115.0, 116.0):
        assert model.instance_latest(routes, since) == _scan(model, routes, since), since
    latest = model.instance_latest(routes)
    assert sorted(latest["/orders"]) == ["api-0", "api-1", "api-2", "api-3"]  # not 4, not 5
    assert sorted(latest["/quiet"]) == [f"api-{i}" for i in range(6)]  # as of its last rate
    assert all(math.isfinite(v) for values in latest.values() for v in values.values())
    # /quiet's last rate is from the tick whose window still held the scrape of 100
    assert "/quiet" in model.instance_latest(routes, 110.0)
    assert "/quiet" not in model.instance_latest(routes, 111.0)


def test_a_route_whose_instance_series_expired_is_gone_from_it_too() -> None:
    model = FleetModel(rate_window=10.0, expire_after=30.0)
    for k in range(EXPIRE_EVERY + 5):  # one expiry pass, 5 s ticks
        t = 100.0 + 5 * k
        for i in range(3):
            routes = {"/orders": (i, 1000 * (k + 1)),
                      "/quiet": (i, 500 * min(k + 1, 3))}  # serves nothing after the 3rd scrape
            target = ScrapeTarget(f"api-{i}", f"http://127.0.0.1:{9000 + i}/metrics")
            model.ingest(ScrapeResult(target, t, True, 0.01, parse(_scrape(routes)), ""))
        model.tick(t)
    wanted = ["/orders", "/quiet"]
    # its instances' p95 series expired with their finite points (an idle histogram still
    # exported makes them again, all NaN): the scan finds nothing of /quiet
    assert model.instance_latest(wanted) == _scan(model, wanted, None)
    assert list(model.instance_latest(wanted)) == ["/orders"]
    assert "/quiet" not in model._instance_latest  # not carried from tick to tick for ever
