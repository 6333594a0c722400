"""FleetModel.oldest_point: the live window's left edge while history is short, without a
look at every series on each step of the edge (~31,000 of them at 200 targets)."""

from __future__ import annotations

import math

from trimtab.app.model.fleet import EXPIRE_EVERY, FleetModel
from trimtab.app.model.ring import Ring

from tests.app.ui.test_routes_slowest_instances import _fleet


def _model(**firsts: float) -> FleetModel:
    model = FleetModel()
    for key, first in firsts.items():
        ring = model.series[("p95", key)] = Ring(model.capacity)
        ring.append(first, 0.1)
        ring.append(first + 1.0, 0.2)
    return model


def test_no_series_no_point_then_the_oldest_once_there_is_one() -> None:
    model = FleetModel()
    assert math.isnan(model.oldest_point())
    model = _fleet(3)  # fed real expositions: rates from the second tick on
    assert model.oldest_point() == min(r.oldest() for r in model.series.values()) == 105.0


def test_series_dropped_by_a_rewind_move_it_at_once() -> None:
    model = _model(a=10.0, b=30.0)
    assert model.oldest_point() == 10.0
    with model.lock:  # as a replay's rewind does
        del model.series[("p95", "a")]
    assert model.oldest_point() == 30.0


def test_not_looked_for_again_until_the_series_or_the_expiry_step_change() -> None:
    model = _model(a=10.0, b=30.0)
    assert model.oldest_point() == 10.0
    with model.lock:  # an older point behind the model's back, series unchanged: not seen...
        model.series[("p95", "b")] = _model(b=5.0).series[("p95", "b")]
    assert model.oldest_point() == 10.0
    model._cycles += EXPIRE_EVERY  # ...until expiry may have dropped series
    assert model.oldest_point() == 5.0
