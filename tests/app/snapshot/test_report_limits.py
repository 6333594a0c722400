"""The HTML report's Rate limits section (issue 18.2), read back from the produced page: the
limits and modes at the window's end, the decisions per limit, the chart of limited and
would-be-limited per second with the limit change marked, the 429 share per route; and
nothing of it for a window without limits."""

from __future__ import annotations

from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.snapshot.report import Mark, write_report
from trimtab.app.store.store import Store
from trimtab.app.ui.report_chart import png_chart

T0 = 1_700_000_000.0
N = 120  # cycles, one a second
CHANGE = T0 + 60.5  # shadow → enforce, between two cycles
LIMIT = {"route": "/search", "key": "header:x-api-key", "rate": 2.0, "burst": 10}
REQS = "trimtab_http_requests_total"
BUCKET = "trimtab_http_request_duration_seconds_bucket"
DECISIONS = "trimtab_ratelimit_requests_total"


class Page(HTMLParser):
    """Headings and tables of a page, in order: [("h2", text) | ("table", rows)]."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.items: list[tuple[str, object]] = []
        self._text: list[str] | None = None
        self._rows: list[list[str]] | None = None
        self.images: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "h3", "td", "th"):
            self._text = []
        elif tag == "table":
            self._rows = []
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag == "img":
            self.images.append(dict(attrs).get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "h3") and self._text is not None:
            self.items.append((tag, "".join(self._text)))
            self._text = None
        elif tag in ("td", "th") and self._text is not None and self._rows:
            self._rows[-1].append("".join(self._text))
            self._text = None
        elif tag == "table" and self._rows is not None:
            self.items.append(("table", self._rows))
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def table_after(self, heading: str) -> list[list[str]]:
        """The first table after the heading ``heading``."""
        i = next(i for i, (kind, text) in enumerate(self.items) if text == heading)
        return next(rows for kind, rows in self.items[i:] if kind == "table")  # type: ignore[misc]

    def headings(self) -> list[str]:
        return [str(text) for kind, text in self.items if kind in ("h2", "h3")]


def fill(store: Store, limits: bool) -> None:
    """/search: 10 requests/s, of which 3/s over the limit: would-be-limited (served, 200)
    before the change, limited (429) after it. /other: 5 requests/s, never limited."""
    counts = {k: 0.0 for k in ("s200", "s429", "o200", "allowed", "limited", "shadow")}
    for i in range(N):
        t = T0 + i
        if i:
            enforced = t > CHANGE
            counts["s200"] += 7 if enforced else 10
            counts["s429"] += 3 if enforced else 0
            counts["o200"] += 5
            counts["allowed"] += 7
            counts["limited" if enforced else "shadow"] += 3
        rows = [("api-1", REQS, (("route", "/search"), ("status", "200")), counts["s200"]),
                ("api-1", REQS, (("route", "/search"), ("status", "429")), counts["s429"]),
                ("api-1", REQS, (("route", "/other"), ("status", "200")), counts["o200"])]
        for route, n in (("/search", counts["s200"] + counts["s429"]), ("/other", counts["o200"])):
            rows += [("api-1", BUCKET, (("le", "0.1"), ("route", route)), n),
                     ("api-1", BUCKET, (("le", "+Inf"), ("route", route)), n)]
        if limits:
            rows += [("api-1", DECISIONS, (("limit", "pk"), ("result", result), ("route", "/search")),
                      counts[name])
                     for result, name in (("allowed", "allowed"), ("limited", "limited"),
                                          ("shadow_limited", "shadow"))]
        store.write_cycle(t, rows)


CHANGE_ROW = JournalRow(Agent("api-1", "http://api-1"), 7, CHANGE, "op", "api-1", "config",
                        {"limits": {"pk": {"mode": "shadow"}}},
                        {"limits": {"pk": {"mode": "enforce"}}}, "greedy client", "accepted")


def _report(tmp_path: Path, limits: bool) -> tuple[str, list[tuple[dict, str, list[Mark]]]]:
    drawn: list[tuple[dict, str, list[Mark]]] = []

    def chart(curves: dict, title: str, base: float, marks: Sequence[Mark]) -> bytes:
        drawn.append((curves, title, list(marks)))
        return png_chart(curves, title, base, marks)

    with Store(tmp_path / "h.db") as store:
        fill(store, limits)
        configs = {"api-1": {"limits": {"pk": {**LIMIT, "mode": "enforce"}}}} if limits else {}
        snap = export_snapshot(store, tmp_path / "w.trimtab", T0, T0 + N - 1,
                               journal=[CHANGE_ROW] if limits else [], configs=configs).path
    page = write_report(snap, tmp_path / "r.html", chart).read_text(encoding="utf-8")
    return page, drawn


def test_the_rate_limits_section_of_a_window_with_a_limit(tmp_path: Path) -> None:
    page, drawn = _report(tmp_path, limits=True)
    parsed = Page(page)
    heads = parsed.headings()
    assert "Rate limits" in heads and heads.index("Rate limits") < heads.index("Change timeline")
    assert parsed.table_after("Limits and modes at the end of the window") == [
        ["instance", "limit", "route", "key", "rate", "burst", "mode"],
        ["api-1", "pk", "/search", "header:x-api-key", "2/s", "10", "enforce"]]
    # 119 increases: 60 before the change (would-be-limited), 59 after it (limited).
    assert parsed.table_after("Requests each limit decided on in the window") == [
        ["route", "limit", "allowed", "limited (429)", "would-be-limited (shadow)"],
        ["/search", "pk", f"{7 * 119:,}", f"{3 * 59:,}", f"{3 * 60:,}"]]
    routes = {row[0]: row for row in parsed.table_after("Slowest routes (p95 over the window)")}
    assert routes["route"][-1] == "429 share"
    assert routes["/search"][-1] == f"{3 * 59 / (10 * 119) * 100:.2f} %"
    assert routes["/other"][-1] == "0.00 %"
    curves, title, marks = next(d for d in drawn if d[1].startswith("Rate limits"))
    assert title in parsed.images  # drawn into the page
    t, limited = curves["/search pk limited/s"]
    _, shadow = curves["/search pk would-be-limited/s"]
    assert np.nanmax(limited[t < CHANGE - 2]) == 0 and np.nanmax(shadow[t > CHANGE + 2]) == 0
    assert np.nanmean(limited[t > CHANGE + 2]) == pytest.approx(3.0, rel=0.05)
    assert np.nanmean(shadow[t < CHANGE - 2]) == pytest.approx(3.0, rel=0.05)
    assert len(marks) == 1 and marks[0][0] == CHANGE
    assert "pk" in marks[0][1] and "enforce" in marks[0][1]


def test_nothing_of_it_for_a_window_without_limits(tmp_path: Path) -> None:
    page, drawn = _report(tmp_path, limits=False)
    parsed = Page(page)
    assert "Rate limits" not in parsed.headings()
    assert "429 share" not in page
    assert parsed.table_after("Slowest routes (p95 over the window)")[0] == [
        "route", "p95 (ms)", "true value between (ms)", "requests"]
    assert not any(title.startswith("Rate limits") for _, title, _ in drawn)
