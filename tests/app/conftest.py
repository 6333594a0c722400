"""Fixtures shared by the app tests: one demo fleet and one collecting model per test module."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from trimtab.agent.fleet import DemoFleet
from trimtab.app.cli import start_collection
from trimtab.app.model import FleetModel


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    """A real demo fleet (3 instances, balancer, ~100 req/s); each module gets its own."""
    fleet = DemoFleet(rps=100.0, log_dir=tempfile.mkdtemp(prefix="trimtab-test-fleet-"))
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def model(fleet: DemoFleet) -> Iterator[FleetModel]:
    """A FleetModel fed by a running scrape engine over ``fleet``."""
    model = FleetModel()
    engine = start_collection(fleet, model)
    try:
        yield model
    finally:
        engine.stop()
