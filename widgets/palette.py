"""One colour per entity, everywhere: a route or a backend keeps its colour on every chart.

Colours are readable on dark and light backgrounds (Okabe–Ito, colour-blind safe, then
five more distinct hues). Percentile lines (p50/p95/p99) are not entities: they are drawn
in one neutral grey, told apart by line style, so orange never means both a route and a p50.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

from PySide6.QtCore import Qt

# No grey (percentiles are grey) and no #CC79A7 (change markers are drawn in it).
SERIES_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
                  "#8DD3C7", "#B15928", "#FB9A99", "#A6D854", "#E7298A")
SPAN_COLOURS = ("#7A828E", "#A3AAB4", "#5F6873")  # trace spans: greys, they are no entity
# Width (px) of the n-th pass over the colours: once they are all taken, an entity gets a
# used colour at another width, so two curves never look the same.
PASS_WIDTHS = (1, 3, 2)
QUANTILE = re.compile(r"^p\d+(\.\d+)?$")
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

    A key prefers the colour its name hashes to (crc32, the same in every run), so a
    route is usually the same colour from one session to the next; when another key holds
    it, the next free one is taken. Distinct keys get distinct colours until all
    ``SERIES_COLOURS`` are used, then distinct (colour, width) pairs.
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
        taken = {s for k, s in self._styles.items() if not QUANTILE.match(k)}
        n = len(SERIES_COLOURS)
        start = zlib.crc32(key.encode("utf-8")) % n
        for width in PASS_WIDTHS:
            for i in range(n):
                style = Style(SERIES_COLOURS[(start + i) % n], width)
                if style not in taken:
                    return style
        return Style(SERIES_COLOURS[start])  # more keys than styles: share
