"""A tick makes its new series' rings before it takes the model's lock.

At 200 targets a first tick makes ~12,000 rings (24,000 arrays allocated and filled); made
under the lock, the GUI thread waited 300-500 ms for it (benchmarks/no_freeze.py --fanout
200 with a lock probe). The model is fed real expositions, parsed as the engine parses them.
"""

from __future__ import annotations

import pytest
from trimtab.app.model import fleet
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.ring import Ring

from tests.app.ui.test_routes_slowest_instances import _fleet


@pytest.fixture()
def made_under_lock(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each ring the model makes, whether the model's lock was held then."""
    made: list[bool] = []
    models: list[FleetModel] = []

    class Watched(Ring):
        __slots__ = ()

        def __init__(self, capacity: int = 3600) -> None:
            made.append(any(m.lock.locked() for m in models))
            super().__init__(capacity)

    original_init = FleetModel.__init__

    def init(self: FleetModel, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        models.append(self)

    monkeypatch.setattr(fleet, "Ring", Watched)
    monkeypatch.setattr(FleetModel, "__init__", init)
    return made


def test_new_series_rings_are_made_outside_the_lock(made_under_lock: list[bool]) -> None:
    model = _fleet(12)  # two scrapes of 12 instances, a tick after each
    assert len(made_under_lock) == len(model.series) > 12  # one ring per series, none wasted
    assert not any(made_under_lock)
    instances = model.instance_series("/orders")
    assert len(instances) == 12 and all(len(v) == 1 for _, v in instances.values())


def test_a_series_dropped_meanwhile_gets_a_ring_again() -> None:
    model = _fleet(3)
    key = next(k for k in model.series if k[0] == "p95_instance")
    with model.lock:  # as forget() would, from another thread
        del model.series[key]
    model.tick(106.0)
    assert key in model.series and len(model.series[key]) == 1
