"""Fixtures shared by the app tests: one demo fleet and one collecting model per test module;
cyclic garbage collection on the main (GUI) thread only, as the cockpit does."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from trimtab.app.cli.main import start_collection
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.gc import GuiThreadCollector
from trimtab.demo.fleet import DemoFleet


@pytest.fixture(scope="package", autouse=True)
def gui_thread_gc(qapp) -> Iterator[GuiThreadCollector]:
    """No worker thread (scrape engine, replay, control pool) collects garbage cycles here.

    A test's closed window stays cyclic garbage; collected by the scrape thread of the
    next test's fleet, its Qt objects deadlocked that thread with the GUI thread (a test
    hung for 17 minutes in CI; see trimtab.app.ui.gc). Started before any fleet of the
    package and stopped after the last, so no worker races the switch.
    """
    collector = GuiThreadCollector(qapp).start()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture(autouse=True)
def _collect_due_garbage(gui_thread_gc: GuiThreadCollector) -> Iterator[None]:
    """Tests that never run Qt's loop (where the collector's timer fires) still get their
    garbage collected, on this thread, between tests."""
    yield
    gui_thread_gc.collect_due()


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
