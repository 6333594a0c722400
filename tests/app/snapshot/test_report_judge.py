"""The report judges a change with the card's judge: the same verdict for the same change."""

from __future__ import annotations

import html
import re
from pathlib import Path

from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model.fleet import FleetModel
from trimtab.app.replay.change_markers import card
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.snapshot.report import write_report
from trimtab.app.store.store import Store

from tests.app.card_scrapes import API, ROUTE, SyntheticFleet

ROW = re.compile(r'<tr class="([^"]*)"><td>([^<]*)</td>(?:<td>[^<]*</td>){4}<td>([^<]*)</td>'
                 r"<td>([^<]*)</td></tr>")


def verdict_rows(page: str) -> dict[str, tuple[str, str, str]]:
    """metric → (css class, verdict label, samples) of the report's change cards."""
    return {html.unescape(m[2]): (m[1], html.unescape(m[3]), html.unescape(m[4]))
            for m in ROW.finditer(page)}


def test_the_report_and_the_card_give_the_same_verdict(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=64) as store:
        model = FleetModel(store=store)
        fleet = SyntheticFleet(model)
        start = fleet.now
        fleet.latency = 0.5
        fleet.step(count=60)  # warm-up
        fleet.latency = 0.2
        fleet.step(count=200)
        change = JournalRow(Agent(API.name, "http://127.0.0.1:1"), 1, fleet.now, "ops",
                            API.name, "config", {"routes": {ROUTE: {"ttl": 10}}},
                            {"routes": {ROUTE: {"ttl": 30}}}, "more hits", "accepted")
        fleet.latency = 0.108  # p95 falls by ~46 %
        fleet.step(count=160)
        info = export_snapshot(store, tmp_path / "s.trimtab", start, fleet.now,
                               journal=[change])
    page = write_report(info.path, tmp_path / "r.html").read_text(encoding="utf-8")
    found = verdict_rows(page)
    card_p95 = card(model, change, now=fleet.now, journal=[change]).comparisons[f"{ROUTE} p95"]
    assert card_p95.label == "better (beyond the normal spread)"
    assert found[f"{ROUTE} p95"][:2] == ("better", card_p95.label)
    assert found["all routes p95"][:2] == ("better", card_p95.label)
    assert "worse" not in found[f"{ROUTE} p95"][1]
    assert "nan" not in page.lower().replace("nanoseconds", "")


def test_a_refused_change_is_not_judged(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=64) as store:
        fleet = SyntheticFleet(FleetModel(store=store))
        start = fleet.now
        fleet.step(count=200)
        refused = JournalRow(Agent(API.name, "http://127.0.0.1:1"), 2, start + 100, "ops",
                             API.name, "config", None, {"routes": {ROUTE: {"ttl": -1}}}, "",
                             "refused", "ttl must be >= 0")
        info = export_snapshot(store, tmp_path / "s.trimtab", start, fleet.now,
                               journal=[refused])
    page = write_report(info.path, tmp_path / "r.html").read_text(encoding="utf-8")
    assert verdict_rows(page) == {}
    assert "refused: nothing changed, nothing to judge" in page
