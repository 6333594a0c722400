"""The before/after card in the real window, following synthetic scrapes on a test clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.change_markers import marker_key
from trimtab.app.ui.window import MainWindow

from tests.app.card_scrapes import ROUTE, SyntheticFleet

PNG = "/tmp/k_card_after.png"


def ttl_change(at: float, id_: int = 1) -> JournalRow:
    return JournalRow(Agent("api-1", "http://127.0.0.1:1"), id_, at, "ops", "api-1", "config",
                      {"routes": {ROUTE: {"ttl": 10}}}, {"routes": {ROUTE: {"ttl": 30}}},
                      "more hits", "accepted")


@pytest.fixture
def fleet() -> SyntheticFleet:
    return SyntheticFleet(FleetModel())


@pytest.fixture
def window(qtbot, fleet: SyntheticFleet) -> Iterator[MainWindow]:
    win = MainWindow(fleet.model, refresh_hz=10)
    win.clock = fleet.clock  # the window reads the test's clock, as a replay window its own
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def verdicts(window: MainWindow) -> dict[str, tuple[str, ...]]:
    table = window.change_card.table
    columns = [table.column_texts(i) for i in range(7)]
    return {row[0]: tuple(row) for row in zip(*columns)}


def test_the_card_updates_live_and_says_how_much_data_it_holds(qtbot, fleet: SyntheticFleet,
                                                               window: MainWindow) -> None:
    fleet.latency = 0.5
    fleet.step(count=60)  # warm-up: slow, and not part of "normal before"
    fleet.latency = 0.2
    fleet.step(count=150)
    row = ttl_change(fleet.now)
    window.show_changes([row])
    window.show_change_card(marker_key(row))
    first = verdicts(window)
    assert first[f"{ROUTE} p95"][5].startswith("not enough data yet")
    assert "after: nothing yet" in window.change_card.subtitle.text()
    # The TTL goes up: p95 falls by ~46 %, the hit ratio doubles; scrapes keep arriving.
    fleet.latency, fleet.hit_ratio = 0.108, 0.6
    fleet.step(count=29)
    qtbot.waitUntil(lambda: verdicts(window)[f"{ROUTE} p95"][6] == "120 / 14", timeout=5_000)
    now = verdicts(window)
    p95 = now[f"{ROUTE} p95"]
    assert p95[5] == "better (beyond the normal spread)"
    assert p95[1].endswith(" ms") and p95[2].endswith(" ms") and p95[3].startswith("-4")
    assert float(p95[1].removesuffix(" ms")) == pytest.approx(218, abs=5)  # warm-up left out
    assert now[f"{ROUTE} hit_ratio"][5] == "better (beyond the normal spread)"
    assert now[f"{ROUTE} hit_ratio"][2].endswith(" %")
    subtitle = window.change_card.subtitle.text()
    assert "14 s of 120 s held so far" in subtitle and "Mean over 120 s" not in subtitle
    assert "nan" not in " ".join(" ".join(r) for r in now.values()).lower()
    assert sum(chart.isVisible() for chart in window.change_card.charts) == 5
    window.change_card.grab().save(PNG)
    # The verdict holds as time passes (it faded before: the windows drifted into the
    # warm-up as they grew).
    fleet.step(count=200)
    qtbot.waitUntil(lambda: verdicts(window)[f"{ROUTE} p95"][6] == "120 / 120", timeout=5_000)
    assert verdicts(window)[f"{ROUTE} p95"][5] == "better (beyond the normal spread)"
    assert "120 s of 120 s held so far" in window.change_card.subtitle.text()


def test_a_closed_card_is_not_rebuilt(qtbot, fleet: SyntheticFleet,
                                      window: MainWindow) -> None:
    fleet.step(count=30)
    row = ttl_change(fleet.now)
    window.show_changes([row])
    window.show_change_card(marker_key(row))
    window.change_card.close()
    before = window.change_card_version
    fleet.step(count=5)
    qtbot.wait(300)
    assert window.change_card_version == before


def test_the_staged_rollout_gate_gets_the_cards_verdict_on_the_canary(
        qtbot, fleet: SyntheticFleet, window: MainWindow) -> None:
    fleet.step(count=150)
    change = fleet.now
    fleet.latency = 0.40  # the canary's change doubles its p95
    fleet.step(count=40)
    judged = window.canary_judged(ROUTE, "api-1", change)
    assert judged[f"{ROUTE} p95"].label == "worse (beyond the normal spread)"
    assert judged[f"{ROUTE} error_ratio"].direction == "within spread"
    row = ttl_change(change)
    window.show_changes([row])
    window.show_change_card(marker_key(row))
    assert verdicts(window)[f"{ROUTE} p95"][5] == judged[f"{ROUTE} p95"].label  # one judge
