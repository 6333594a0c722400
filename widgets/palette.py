"""Colours readable on dark and light backgrounds (Okabe–Ito, colour-blind safe)."""

from __future__ import annotations

SERIES_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
                  "#CC79A7", "#999999")


def colour(index: int) -> str:
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]
