"""The demo fleet end to end: real processes, real scrapes, the real window (offscreen)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from trimtab.agent.fleet import DemoFleet
from trimtab.agent.procs import alive
from trimtab.app.cli import start_collection
from trimtab.app.model import FleetModel


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    fleet = DemoFleet(rps=100.0, log_dir=tempfile.mkdtemp(prefix="trimtab-test-fleet-"))
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def model(fleet: DemoFleet) -> Iterator[FleetModel]:
    model = FleetModel()
    engine = start_collection(fleet, model)
    try:
        yield model
    finally:
        engine.stop()


def test_fleet_has_three_instances_and_a_balancer(fleet: DemoFleet) -> None:
    kinds = sorted(t.kind for t in fleet.targets)
    assert kinds == ["balancer", "instance", "instance", "instance"]
    assert all(alive(pid) for pid in fleet.pids)
    assert len(fleet.pids) == 5  # three instances, balancer, traffic generator


def test_collector_receives_samples_from_every_target(qtbot, model: FleetModel) -> None:
    def all_up() -> None:
        health = model.read(lambda m: dict(m.health))
        assert set(health) == {"api-1", "api-2", "api-3", "balancer"}
        for h in health.values():
            assert h.up, h.error
            assert h.samples > 0

    qtbot.waitUntil(all_up, timeout=15_000)


def test_window_views_hold_live_data(qtbot, model: FleetModel) -> None:
    from trimtab.app.window import MainWindow

    window = MainWindow(model)
    qtbot.addWidget(window)
    window.show()

    def views_filled() -> None:
        assert {"/products/{id}", "/search", "/orders"} <= set(window.latency.data)
        assert window.latency.point_count() > 0
        assert window.hit_ratio.point_count() > 0
        assert window.share_time.point_count() > 0
        assert [r[0] for r in window.share_bars.rows] == ["api-1", "api-2", "api-3"]

    qtbot.waitUntil(views_filled, timeout=20_000)
    # Equal weights: each backend expects a third and gets roughly a third.
    for _server, expected, observed in window.share_bars.rows:
        assert expected == pytest.approx(1 / 3)
        assert 0.2 < observed < 0.47
    window.close()


def test_stop_leaves_no_child_process() -> None:
    fleet = DemoFleet(rps=20.0)
    fleet.start()
    pids = fleet.pids
    assert all(alive(pid) for pid in pids)
    fleet.stop()
    assert not [pid for pid in pids if alive(pid)]
