"""A Prometheus source can take each target's service from its job label (issue 21.1):
two jobs serving the same route name stay apart in the model, and the PromQL the model
gives for one service selects that job. Without ``service_from`` nothing changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.keys import route_key
from trimtab.app.targets import file as tf
from trimtab.collectors.prometheus.api import Series
from trimtab.collectors.prometheus.source import PromSource

TS = np.array([10.0, 11.0, 12.0])


def _series(job: str, instance: str, per_second: float) -> list[Series]:
    labels = {"job": job, "instance": instance}
    return [
        Series({"__name__": "up", **labels}, TS, np.ones(3)),
        Series({"__name__": "scrape_duration_seconds", **labels}, TS, np.full(3, 0.01)),
        Series({"__name__": "trimtab_http_requests_total", **labels, "route": "/items",
                "method": "GET", "status": "200"}, TS, per_second * (TS - TS[0])),
        *(Series({"__name__": "trimtab_http_request_duration_seconds_bucket", **labels,
                  "route": "/items", "method": "GET", "le": le}, TS, per_second * (TS - TS[0]))
          for le in ("0.1", "+Inf")),
    ]


def _model(source: PromSource) -> FleetModel:
    model = FleetModel(rate_window=2.0)
    series = _series("shop", "s:1", 10.0) + _series("auth", "a:1", 3.0)
    grouped = source._live.group(series)
    for t in TS:
        for key, scrapes in grouped.items():
            model.ingest(source._live.result(key, float(t), scrapes[float(t)], None))
        model.tick(float(t))
    return model


def test_each_job_is_a_service_and_same_named_routes_stay_apart() -> None:
    model = _model(PromSource("http://prom:9090", service_from="job"))
    rates = {route: r.rate for route, r in model.routes.items()}
    assert rates == pytest.approx({route_key("shop", "/items"): 10.0,
                                   route_key("auth", "/items"): 3.0})
    assert model.services == {"prometheus/s:1": "shop", "prometheus/a:1": "auth"}
    assert 'job="shop"' in model.promql("rate", route_key("shop", "/items"))


def test_without_service_from_the_jobs_add_up_as_before() -> None:
    model = _model(PromSource("http://prom:9090"))
    assert {route: r.rate for route, r in model.routes.items()} == pytest.approx({"/items": 13.0})


@pytest.mark.parametrize(("entry", "message"), [
    ('kind = "prometheus"\nservice_from = "instance"', 'service_from: must be "job"'),
    ('kind = "instance"\nservice_from = "job"', "only a Prometheus source takes one"),
    ('kind = "prometheus"\nservice = "shop"', 'use service_from = "job"'),
])
def test_a_wrong_service_from_is_refused_naming_the_field(tmp_path: Path, entry: str,
                                                          message: str) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(f'[[target]]\nname = "p"\nurl = "http://127.0.0.1:9090"\n{entry}\n')
    with pytest.raises(tf.TargetsError, match=message):
        tf.load(path)


def test_service_from_job_round_trips_through_the_targets_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text('# a Prometheus that scrapes shop and auth\n[[target]]\nname = "prom"\n'
                    'url = "http://127.0.0.1:9090"\nkind = "prometheus"\nservice_from = "job"\n')
    (target,) = tf.load(path)
    assert target.service_from == "job"
    with pytest.raises(ValueError, match="service_from"):
        PromSource("http://prom:9090", service_from="route")
