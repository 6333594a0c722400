"""One colour per entity, everywhere: a route or a backend keeps its colour on every chart.

Colours are readable on dark and light backgrounds (Okabe–Ito, colour-blind safe, then
five more distinct hues). Percentile lines (p50/p95/p99) are not entities: they are drawn
in one neutral grey, told apart by line style, so orange never means both a route and a p50.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from PySide6.QtCore import Qt

# Handed out in this order: the first six (Okabe–Ito) are the most distinct, so a small
# fleet (the demo's 3 routes and 3 backends) never gets two look-alikes. No grey
# (percentiles and status classes are grey) and no #CC79A7 (change markers are drawn in it).
SERIES_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
                  "#9467BD", "#8DD3C7", "#B15928", "#FB9A99", "#E7298A")
SPAN_COLOURS = ("#7A828E", "#A3AAB4", "#5F6873")  # trace spans: greys, they are no entity
# Width (px) of the n-th pass over the colours: once they are all taken, an entity gets a
# used colour at another width, so two curves never look the same.
PASS_WIDTHS = (1, 3, 2)
# Keys that are no entity: percentiles and HTTP status classes (extract.STATUS_CLASSES).
QUANTILE = re.compile(r"^p\d+(\.\d+)?$")
STATUS_STYLES = {"2xx": (1, Qt.PenStyle.SolidLine), "3xx": (1, Qt.PenStyle.DotLine),
                 "4xx": (1, Qt.PenStyle.DashLine), "429": (2, Qt.PenStyle.DashDotLine),
                 "5xx": (2, Qt.PenStyle.SolidLine), "other": (1, Qt.PenStyle.DashDotDotLine)}
QUANTILE_COLOUR = "#9AA0A8"  # a mid grey: visible on the dark and the light background
# Percentiles differ by line style, never by a colour an entity has.
QUANTILE_STYLES = {"p50": Qt.PenStyle.DotLine, "p90": Qt.PenStyle.DashDotLine,
                   "p95": Qt.PenStyle.SolidLine, "p99": Qt.PenStyle.DashLine}
# Dash patterns a chart gives curves that lie on top of an earlier one (three share lines
# at 33 %): the gaps of the upper line show the one below.
OVERLAP_STYLES = (Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine,
                  Qt.PenStyle.DashDotDotLine)


class Style(NamedTuple):
    """How one key's curve is drawn."""

    colour: str
    width: int = 1
    dash: Qt.PenStyle = Qt.PenStyle.SolidLine


def colour(index: int) -> str:
    """The ``index``-th series colour (charts of things that are not entities: spans, bars)."""
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


class Palette:
    """Hands each key (route, backend, instance) one colour and width for the window's life.

    Keys get ``SERIES_COLOURS`` in the order they are first drawn, so distinct keys get
    distinct colours until all are used, then distinct (colour, width) pairs. Percentiles
    and status classes are no entity: one grey, told apart by line style and width.
    """

    def __init__(self) -> None:
        self._styles: dict[str, Style] = {}

    def style(self, key: str) -> Style:
        """Colour, pen width and dash of ``key``; the same on every call and every chart."""
        style = self._styles.get(key)
        if style is None:
            style = self._styles[key] = self._assign(key)
        return style

    def colour(self, key: str) -> str:
        return self.style(key).colour

    def _assign(self, key: str) -> Style:
        if QUANTILE.match(key):
            return Style(QUANTILE_COLOUR, 1, QUANTILE_STYLES.get(key, Qt.PenStyle.DashDotDotLine))
        if key in STATUS_STYLES:
            return Style(QUANTILE_COLOUR, *STATUS_STYLES[key])
        taken = set(self._styles.values())
        for width in PASS_WIDTHS:
            for colour in SERIES_COLOURS:
                if Style(colour, width) not in taken:
                    return Style(colour, width)
        # more keys than styles: they share, in turn
        return Style(SERIES_COLOURS[len(self._styles) % len(SERIES_COLOURS)])
