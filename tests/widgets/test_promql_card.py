"""The before/after card says its judged numbers have no PromQL equivalent (issue 16.1):
a tooltip and a disabled menu entry instead of an invented expression."""

from __future__ import annotations

from trimtab.widgets.card import CARD_HEADERS, ChangeCard


def test_the_judges_columns_say_they_have_no_promql(qtbot) -> None:
    card = ChangeCard("change", "ttl 10 → 300", [
        ("p95 /search", "97 ms", "40 ms", "0.41×", "90–110 ms", "better", "30 / 30")])
    qtbot.addWidget(card)
    for header in ("before", "after", "change", "normal before", "verdict"):
        tip = card.table.column_tooltip(CARD_HEADERS.index(header))
        assert "no PromQL equivalent" in tip, header
    assert card.table.column_tooltip(CARD_HEADERS.index("metric")) == ""
    card.table.setCurrentIndex(card.table.proxy.index(0, CARD_HEADERS.index("verdict")))
    assert card.table.copy_promql() == ""  # nothing invented to copy
