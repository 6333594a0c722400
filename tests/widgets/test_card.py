"""The card widget renders what it is given, again and again as data arrives."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from trimtab.widgets.card import ChangeCard


@dataclass(frozen=True)
class Chart:
    name: str
    times: np.ndarray
    values: np.ndarray
    before: tuple[float, float]
    after: tuple[float, float]
    band: tuple[float, float]
    unit: str


def chart(name: str, n: int, band: tuple[float, float] = (190.0, 210.0)) -> Chart:
    t = np.arange(-120.0, n, 1.0)
    return Chart(name, t, np.where(t < 0, 200.0, 110.0), (-120.0, 0.0), (15.0, float(n)),
                 band, "ms")


def row(name: str, verdict: str, data: str) -> tuple[str, ...]:
    return (name, "200.0 ms", "110.0 ms", "-45.0 %", "190.0 ms – 210.0 ms", verdict, data)


def test_set_content_replaces_rows_subtitle_and_charts(qtbot) -> None:
    card = ChangeCard("Change x", "after: nothing yet", [row("/r p95", "not enough data yet",
                                                             "120 / 0")],
                      charts=[chart("/r p95", 5, (math.nan, math.nan))])
    qtbot.addWidget(card)
    card.show()
    assert card.table.column_texts(5) == ["not enough data yet"]
    assert [c.isVisible() for c in card.charts] == [True]
    assert card.charts[0].band[0].getData()[0] is None or len(card.charts[0].band[0].getData()[0]) == 0
    card.set_content("after: 14 s of 120 s held so far",
                     [row("/r p95", "better (beyond the normal spread)", "120 / 14"),
                      row("/r p99", "better (beyond the normal spread)", "120 / 14")],
                     [chart("/r p95", 29), chart("/r p99", 29)])
    assert card.subtitle.text() == "after: 14 s of 120 s held so far"
    assert sorted(card.table.column_texts(0)) == ["/r p95", "/r p99"]
    assert set(card.table.column_texts(6)) == {"120 / 14"}
    assert [c.isVisible() for c in card.charts] == [True, True]
    xs, ys = card.charts[0].curve.getData()
    assert len(xs) == 149 and ys[-1] == 110.0
    assert list(card.charts[0].band[0].getData()[1]) == [190.0, 190.0]
    assert card.charts[0].after.getRegion() == (15.0, 29.0)
    card.set_content("one left", [row("/r p95", "worse", "1 / 1")], [chart("/r p95", 30)])
    assert [c.isVisible() for c in card.charts] == [True, False]  # made once, hidden
