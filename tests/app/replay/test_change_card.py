"""The card's content from a FleetModel fed synthetic scrapes: windows, shares, units, text."""

from __future__ import annotations

from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.change_markers import bounds, card, new_shares

from tests.app.card_scrapes import ROUTE, SyntheticFleet

LB = Agent("lb", "http://127.0.0.1:2", "balancer")


def weight(at: float, id_: int, server: str, old: float, new: float) -> JournalRow:
    return JournalRow(LB, id_, at, "ops", "lb", f"servers.{server}.weight", old, new,
                      "shift load", "accepted")


def ttl(at: float, id_: int, agent: str = "api-1") -> JournalRow:
    return JournalRow(Agent(agent, "http://127.0.0.1:1"), id_, at, "ops", agent, "config",
                      {"routes": {ROUTE: {"ttl": 10}}}, {"routes": {ROUTE: {"ttl": 30}}}, "",
                      "accepted")


def test_a_weight_change_moving_the_share_toward_the_new_weights_is_as_intended() -> None:
    fleet = SyntheticFleet(FleetModel())
    fleet.step(count=150)
    change = fleet.now
    fleet.weights = {"a": 3.0, "b": 1.0}
    fleet.share_a = 0.74
    fleet.step(count=60)
    rows = [weight(change, 1, "a", 1.0, 3.0)]
    assert new_shares(fleet.model, rows[0], rows) == {"a share": 0.75, "b share": 0.25}
    content = card(fleet.model, rows[0], now=fleet.now, journal=rows)
    by_name = {r[0]: r for r in content.rows}
    assert by_name["a share"][5] == "as intended: moved toward the new weights' share 75.0 %"
    assert by_name["b share"][5] == "as intended: moved toward the new weights' share 25.0 %"
    assert by_name["a share"][1] in ("49.9 %", "50.0 %", "50.1 %") and by_name["a share"][3].startswith("+2")


def test_the_weights_of_an_old_change_undo_the_later_ones() -> None:
    fleet = SyntheticFleet(FleetModel())
    fleet.weights = {"a": 1.0, "b": 4.0}  # now, after two changes
    fleet.step(count=15)
    rows = [weight(100.0, 1, "a", 1.0, 3.0), weight(100.5, 2, "b", 1.0, 1.0),
            weight(500.0, 3, "a", 3.0, 1.0), weight(500.2, 4, "b", 1.0, 4.0)]
    assert new_shares(fleet.model, rows[0], rows) == {"a share": 0.75, "b share": 0.25}


def test_the_before_window_starts_after_the_previous_change_to_the_same_target() -> None:
    fleet = SyntheticFleet(FleetModel())
    fleet.share_a = 0.05  # warm-up and an earlier weight change: far from today's 50 %
    fleet.step(count=100)
    earlier = weight(fleet.now, 1, "a", 0.0, 1.0)
    fleet.share_a = 0.5
    fleet.step(count=90)
    change = weight(fleet.now, 2, "a", 1.0, 3.0)
    fleet.weights, fleet.share_a = {"a": 3.0, "b": 1.0}, 0.74
    fleet.step(count=40)
    content = card(fleet.model, change, now=fleet.now, journal=[earlier, change])
    share = content.comparisons["a share"]
    assert share.before_span == (earlier.time + 15.0, change.time)
    assert 0.45 <= share.band[0] <= share.band[1] <= 0.55  # not "-0.18–0.46"
    assert "starts after the previous change settled" in content.subtitle
    # A TTL change to another route in between is not the same target.
    assert bounds(change, [earlier, ttl(change.time - 30, 9), change]) == (earlier.time, None)


def test_a_ttl_sent_to_three_agents_is_one_change_and_no_nan_shows() -> None:
    fleet = SyntheticFleet(FleetModel())
    fleet.step(count=130)
    rows = [ttl(fleet.now + i * 0.3, i, f"api-{i}") for i in (1, 2, 3)]
    assert bounds(rows[1], rows) == (None, None)
    fleet.error_ratio = 0.0
    fleet.step(count=3)
    content = card(fleet.model, rows[1], now=fleet.now, journal=rows)
    text = " ".join(" ".join(r) for r in content.rows) + content.subtitle
    assert "nan" not in text.lower() and "after: nothing yet" in content.subtitle
    assert all(r[5].startswith("not enough data yet") for r in content.rows)


def test_a_weight_change_charts_at_most_a_dozen_metrics() -> None:
    fleet = SyntheticFleet(FleetModel())
    fleet.step(count=20)
    for i in range(20):  # 20 more routes' p95 series, as a big fleet has
        fleet.model.series[("p95", f"/route{i}")] = fleet.model.series[("p95", ROUTE)]
    row = weight(fleet.now, 1, "a", 1.0, 3.0)
    content = card(fleet.model, row, now=fleet.now, journal=[row])
    assert len(content.rows) == 2 + 2 + 21  # shares, servers' p95 (all gaps here), routes
    assert len(content.charts) == 12
    assert [c.name for c in content.charts[:2]] == ["a share", "b share"]
