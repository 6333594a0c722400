"""SLOs evaluated from the history store: a store written cycle by cycle (two instances,
one slow from minute 10), then every workbook window, the budget and the SLI read back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from trimtab.app.slo.burn import BurnAlert
from trimtab.app.slo.definition import SLO, SLOError
from trimtab.app.slo.file import load, save, slo_path
from trimtab.app.slo.track import StoreSource, evaluate
from trimtab.app.store.store import Store

from tests.app.slo.history import AVAIL, LATENCY, T0, fill

ALERTS = (BurnAlert(600.0, 60.0, 6.0, "page"), BurnAlert(1800.0, 300.0, 6.0, "page"))


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "history.sqlite") as s:
        fill(s)
        yield s


def test_burn_rates_budget_and_sli_from_the_store(store: Store) -> None:
    at = T0 + 20 * 60
    statuses = evaluate([AVAIL, LATENCY], StoreSource(store), at, sli_window_s=60.0, alerts=ALERTS)
    by_name = {s.slo.name: s for s in statuses}
    lat = by_name["search-fast"]
    # Last minute: 2 of 20 req/s over 0.25 s → 10 % errors → burn 10 on a 1 % budget.
    assert lat.burns[0].short_burn == pytest.approx(10.0, rel=1e-9)
    assert lat.burns[0].long_burn == pytest.approx(10.0, rel=1e-9)  # 10 min, all slow
    assert lat.burns[0].firing and not lat.burns[1].firing  # 5 over 30 min < 6
    # 30 min window over 20 min of history: half slow → 5 %; covered says 20 min, not 30.
    assert lat.burns[1].covered_s == pytest.approx(1200.0)
    assert lat.burns[1].long_burn == pytest.approx(5.0, rel=1e-3)
    assert lat.sli.exact and lat.sli.good == pytest.approx(0.9)
    assert lat.budget_covered_s == pytest.approx(1200.0)
    # 4 budgets overspent. Within 0.5 %: the store gives a long window one point per step
    # (≤ 720), so the range starts up to a step late and is extrapolated from there.
    assert lat.budget_remaining == pytest.approx(1.0 - 0.05 / 0.01, rel=5e-3)
    ok = by_name["search-ok"]
    assert ok.burns[0].short_burn == pytest.approx(5.0, rel=1e-9)  # 1 of 20 → 5 %
    assert [s.slo.name for s in statuses] == ["search-fast", "search-ok"]  # most spent first


def test_one_instance_alone(store: Store) -> None:
    """A canary's own burn: only api-2's series (20 % of its requests over 0.25 s)."""
    [status] = evaluate([LATENCY], StoreSource(store, targets=["api-2"]), T0 + 20 * 60,
                        sli_window_s=60.0, alerts=ALERTS)
    assert status.burns[0].short_burn == pytest.approx(20.0, rel=1e-9)
    [fine] = evaluate([LATENCY], StoreSource(store, targets=["api-1"]), T0 + 20 * 60,
                      sli_window_s=60.0, alerts=ALERTS)
    assert fine.burns[0].short_burn == 0.0


def test_before_the_slowdown_nothing_burns(store: Store) -> None:
    [status] = evaluate([LATENCY], StoreSource(store), T0 + 9 * 60, alerts=ALERTS)
    assert status.burns[0].short_burn == 0.0 and not status.firing
    assert status.budget_remaining == 1.0


def test_an_slo_on_a_route_nobody_serves_says_no_traffic(store: Store) -> None:
    [status] = evaluate([SLO("x", "/nothing", "latency", 0.99, threshold_s=0.1)],
                        StoreSource(store), T0 + 600, alerts=ALERTS)
    assert math.isnan(status.budget_remaining) and math.isnan(status.burns[0].short_burn)
    assert math.isnan(status.sli.good)


def test_the_slo_file_round_trips_and_refuses_a_bad_one(tmp_path: Path) -> None:
    path = slo_path(tmp_path / "targets.toml")
    assert path.name == "slos.yaml" and load(path) == []
    save(path, [LATENCY, AVAIL])
    assert load(path) == [LATENCY, AVAIL]
    path.write_text(path.read_text().replace("0.99", "7", 1))
    with pytest.raises(SLOError, match="slos.yaml: document 1"):
        load(path)
    with pytest.raises(SLOError, match="share a name"):
        save(path, [LATENCY, LATENCY])
    assert "7" in path.read_text()  # the failed save left the file as it was
