"""The report's top (issue 20 item 15): one sentence naming what was slow, what changed and
what it did (the card's judge), labelled markers, no data drawn as a gap, a capped trace list
that says so. Through ``trimtab snapshot report`` on a real snapshot of a synthetic fleet."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

import numpy as np
import pytest
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model.fleet import FleetModel
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.snapshot.report import write_report
from trimtab.app.store.store import Store

from tests.app.card_scrapes import ROUTE, SyntheticFleet
from tests.app.snapshot.test_report_judge import verdict_rows
from tests.app.snapshot.test_snapshot import T0, _parse

LABEL = f"TTL {ROUTE} 10→60 s · api-1, api-2, api-3"
TRACES = 1734
QUIET = 120.0  # seconds of the window before the fleet's first scrape


class Incident:
    """A snapshot: 2 min without data, a slow route, a fleet-wide TTL change that halves it."""

    def __init__(self, folder: Path) -> None:
        with Store(folder / "h.db", chunk_cycles=64) as store:
            fleet = SyntheticFleet(FleetModel(store=store))
            self.start = fleet.now - QUIET
            self.first = fleet.now + 1
            fleet.latency = 0.4
            fleet.step(count=200)
            self.change = fleet.now
            self.journal = [
                JournalRow(Agent(f"api-{i}", f"http://127.0.0.1:{9000 + i}"), 10 + i,
                           self.change + 0.3 * i, "ops", f"api-{i}", "config",
                           {"routes": {ROUTE: {"ttl": 10}}}, {"routes": {ROUTE: {"ttl": 60}}},
                           "more hits", "accepted") for i in range(3)]
            self.journal = [JournalRow(**{**r.__dict__, "source": Agent(f"api-{i + 1}",
                                                                         r.source.base_url)})
                            for i, r in enumerate(self.journal)]
            fleet.latency = 0.2
            fleet.step(count=200)
            traces = [{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "parent_id": None,
                       "name": f"GET {ROUTE}", "route": ROUTE, "method": "GET", "status": 200,
                       "instance": "api-1", "start": self.first + i * 0.2,
                       "duration_ms": float(1 + i % 997), "children": []}
                      for i in range(TRACES)]
            self.path = export_snapshot(store, folder / "incident.trimtab", self.start,
                                        fleet.now, journal=self.journal, traces=traces).path


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Incident:
    return Incident(tmp_path_factory.mktemp("incident"))


@pytest.fixture(scope="module")
def page(incident: Incident, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "report.html"
    args = _parse(["snapshot", "report", str(incident.path), "--out", str(out)])
    assert args.func(args, io.StringIO()) == 0
    return out.read_text(encoding="utf-8")


def text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_one_sentence_on_top_says_what_was_slow_what_changed_and_what_it_did(page: str) -> None:
    body = page[page.index("<body>"):]
    top = re.search(r'<p class="summary">(.*?)</p>', body)
    assert top is not None and body.index(top.group(0)) < body.index("<h2>")  # first thing
    sentence = text(top.group(1))
    assert sentence.count(". ") == 0 and sentence.endswith(".")  # one sentence
    assert f"{ROUTE} was the slowest route" in sentence and "p95" in sentence
    assert LABEL in sentence
    # what it did: the judge's verdict, the same as the change's card further down
    verdict = verdict_rows(page)[f"{ROUTE} p95"]
    assert verdict[0] == "better"
    assert f"{ROUTE} p95 was {verdict[1]}" in sentence


def test_a_fleet_wide_change_is_one_card_headed_by_its_label(page: str) -> None:
    timeline = text(page[page.index("Change timeline"):page.index("Annotations")])
    assert timeline.count(LABEL) == 1
    assert timeline.count("samples before / after") == 1  # judged once, not three times


def test_the_time_without_data_is_said_and_left_blank(page: str, incident: Incident) -> None:
    charts = text(page[page.index("<h2>Charts"):page.index("Change timeline")])
    assert "no samples" in charts.lower() and "left blank" in charts
    assert f"{QUIET / 60:.1f} min" in charts


def test_a_capped_trace_list_says_so(page: str) -> None:
    traces = page[page.index("Slowest traces"):]
    assert f"showing the 200 slowest of {TRACES:,} traces" in text(traces)
    assert traces.count("<tr>") == 1 + 200  # the header and 200 rows


def test_charts_get_gaps_not_zeros_and_labelled_marks(incident: Incident, tmp_path: Path) -> None:
    drawn: dict[str, tuple[dict, list]] = {}

    def capture(curves: dict, title: str, base: float, marks: list) -> bytes:
        drawn[title] = (curves, list(marks))
        return b""

    write_report(incident.path, tmp_path / "r.html", capture)
    rates, marks = drawn["requests/s by target"]
    mids, values = rates["api-1"]
    before = mids < incident.first - 1
    assert before.any() and np.isnan(values[before]).all()  # not 0 requests/s: no data
    assert np.isfinite(values[mids > incident.first + 5]).all()
    assert marks == [(incident.change, LABEL)]
    assert drawn["p95 latency by route (ms)"][1] == marks


def test_a_short_trace_list_is_not_called_capped(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db", chunk_cycles=64) as store:
        fleet = SyntheticFleet(FleetModel(store=store))
        start = fleet.now
        fleet.step(count=30)
        trace = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_id": None, "name": "GET",
                 "route": ROUTE, "status": 200, "instance": "api-1", "start": start + 5,
                 "duration_ms": 3.0, "children": []}
        path = export_snapshot(store, tmp_path / "s.trimtab", start, fleet.now,
                               traces=[trace]).path
    page = write_report(path, tmp_path / "r.html").read_text(encoding="utf-8")
    traces = text(page[page.index("Slowest traces"):])
    assert "showing" not in traces and "1 trace" in traces
    top = text(re.search(r'<p class="summary">(.*?)</p>', page).group(1))
    assert "no change was made in the window" in top.lower()


def test_an_outage_longer_than_the_lookback_is_a_gap_too(tmp_path: Path) -> None:
    from trimtab.app.snapshot.stats import REQUESTS, STALE, request_rate

    up = [*range(0, 101), *range(100 + int(STALE) + 100, 700)]  # down for STALE + 100 s
    with Store(tmp_path / "h.db") as store:
        for i, t in enumerate(up):
            store.write_cycle(T0 + t, [("api-1", REQUESTS, (("route", "/r"),), 10.0 * i)])
        mids, rates = request_rate(store, T0, T0 + 700, steps=70)
    values = rates["api-1"]
    down = (mids > T0 + 110) & (mids < T0 + 490)
    assert np.isnan(values[down]).all()
    inside = ((mids > T0 + 15) & (mids < T0 + 90)) | ((mids > T0 + 510) & (mids < T0 + 690))
    assert np.allclose(values[inside], 10.0)
    assert np.isnan(values[-1])  # the last sample is at 699 s: the step to 700 s is partial
