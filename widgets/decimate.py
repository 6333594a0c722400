"""Decimate a time series to the pixel columns of a chart before it is drawn (numpy only).

A chart ~1,000 px wide cannot show more than one vertical stroke per pixel column, so a
series with 3,600 or 86,400 points in view is reduced to at most one segment per
column: from the column's lowest to its highest value (the M4 idea: the first, last,
min and max of each column decide every pixel a connected line would light). Each
column's stroke is stretched to the previous column's last value, so the strokes touch
where the raw line would have joined them; a gap (NaN, or a run of empty columns with
a NaN at either end) stays a gap. The result is drawn as independent line pairs
(``connect="pairs"``): vertical strokes paint about twice as fast as the zig-zag
polyline a min/max pair per column gives, because a steep segment lights each of its
pixels once instead of twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decimated:
    """What to hand to ``setData``: ``x``, ``y`` and the ``connect`` mode.

    ``connect`` is ``"finite"`` when the points are the raw samples (few enough to
    draw as they are; NaN breaks the line) and ``"pairs"`` when every two points
    are one stroke (decimated; all values finite).
    """

    x: np.ndarray
    y: np.ndarray
    connect: str

    def __len__(self) -> int:
        return len(self.x)


def visible_slice(t: np.ndarray, x0: float, x1: float) -> slice:
    """Indices of the samples inside ``[x0, x1]`` plus one either side (the line leaves the view)."""
    start = max(int(np.searchsorted(t, x0, side="right")) - 1, 0)
    stop = min(int(np.searchsorted(t, x1, side="left")) + 1, len(t))
    return slice(start, stop)


def decimate(t: np.ndarray, v: np.ndarray, x0: float, x1: float, columns: int) -> Decimated:
    """The samples of ``(t, v)`` visible in ``[x0, x1]``, reduced to ``columns`` strokes at most.

    ``t`` must be sorted (times of a ring buffer are). Columns are aligned to
    ``x0`` so that, while the view stays put, appending a sample only changes
    the last column. Series with at most ``2 * columns`` visible samples are
    returned as they are.
    """
    if len(t) != len(v):
        raise ValueError(f"t and v differ in length: {len(t)} != {len(v)}")
    if columns < 1 or not x1 > x0:
        raise ValueError(f"need columns >= 1 and x1 > x0, got {columns}, [{x0}, {x1}]")
    window = visible_slice(t, x0, x1)
    t, v = t[window], v[window]
    if len(t) <= 2 * columns:
        return Decimated(t, v, "finite")
    width = (x1 - x0) / columns
    # The samples kept outside the view get their own columns (-1 and `columns`),
    # so they only decide where the line leaves the plot.
    col = np.clip(np.floor((t - x0) / width), -1, columns).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    ends = np.r_[starts[1:], len(t)] - 1
    lo = np.fmin.reduceat(v, starts)  # fmin/fmax skip NaN; an all-NaN column stays NaN
    hi = np.fmax.reduceat(v, starts)
    first, last = v[starts], v[ends]
    cols = col[starts]
    x = np.where((cols >= 0) & (cols < columns), x0 + (cols + 0.5) * width, t[starts])
    return _strokes(x, lo, hi, first, last, cols)


def _strokes(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, first: np.ndarray,
             last: np.ndarray, cols: np.ndarray) -> Decimated:
    """One vertical stroke per column, joined to its neighbour as the raw line would be."""
    joined = np.isfinite(last[:-1]) & np.isfinite(first[1:])  # raw line runs on into the next
    adjacent = cols[1:] == cols[:-1] + 1
    stretch = joined & adjacent
    prev_last = np.r_[np.nan, np.where(stretch, last[:-1], np.nan)]
    lo, hi = np.fmin(lo, prev_last), np.fmax(hi, prev_last)
    # Columns with empty columns between them (a pause in scraping without NaN) are
    # joined by a slanted stroke, as the raw line would be.
    bridge = np.flatnonzero(joined & ~adjacent)
    keep = np.isfinite(lo)
    xs = np.concatenate([np.repeat(x[keep], 2), np.column_stack([x[bridge], x[bridge + 1]]).ravel()])
    ys = np.concatenate([np.column_stack([lo[keep], hi[keep]]).ravel(),
                         np.column_stack([last[bridge], first[bridge + 1]]).ravel()])
    if len(bridge):  # strokes in time order, so exports and hit tests walk left to right
        order = np.argsort(xs[0::2], kind="stable")
        pairs = np.column_stack([order * 2, order * 2 + 1]).ravel()
        xs, ys = xs[pairs], ys[pairs]
    return Decimated(xs, ys, "pairs")
