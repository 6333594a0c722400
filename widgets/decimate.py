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
    multiples of ``(x1 - x0) / columns`` so that appending a sample only changes
    the last column, and sliding the view keeps the strokes of the columns still
    in view (``columns + 1`` columns may be partly in view). Series with at most ``2 * columns`` visible samples are
    returned as they are.
    """
    if len(t) != len(v):
        raise ValueError(f"t and v differ in length: {len(t)} != {len(v)}")
    return decimate_many(t, [v], x0, x1, columns)[0]


def decimate_many(t: np.ndarray, values: list[np.ndarray], x0: float, x1: float,
                  columns: int) -> list[Decimated]:
    """:func:`decimate` of several series sampled at the same times ``t``, in one numpy pass.

    The series of one metric are appended in the same scrape cycle, so a chart's
    curves usually share their times; the per-column reductions then run once over
    a ``(series, samples)`` array instead of once per curve.
    """
    if columns < 1 or not x1 > x0:
        raise ValueError(f"need columns >= 1 and x1 > x0, got {columns}, [{x0}, {x1}]")
    if any(len(v) != len(t) for v in values):
        raise ValueError(f"every series needs {len(t)} values, as many as times")
    window = visible_slice(t, x0, x1)
    t = t[window]
    if len(t) <= 2 * columns:
        return [Decimated(t, v[window], "finite") for v in values]
    vv = np.vstack([v[window] for v in values])
    width = (x1 - x0) / columns
    # Columns sit on a grid fixed in time (multiples of ``width``), not on ``x0``: when
    # a live window slides by a few seconds, the columns still in view keep their
    # strokes, so a chart can shift its cached pixels instead of drawing them again.
    first_col, last_col = np.floor(x0 / width), np.floor(x1 / width)
    col = np.floor(t / width)
    # The one sample kept outside each edge gets its own column (next to the edge's,
    # so a pause there is bridged like any other); it only decides where the line
    # leaves the plot.
    col[t < x0] = first_col - 1
    col[t > x1] = last_col + 1
    col = (col - first_col).astype(np.int64)
    change = np.empty(len(col), dtype=bool)
    change[0] = True
    np.not_equal(col[1:], col[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(t)) - 1
    cols = col[starts]
    inside = (t[starts] >= x0) & (t[starts] <= x1)
    # a column cut by an edge draws its stroke on the edge: strokes stay left to right
    x = np.where(inside, np.clip((cols + first_col + 0.5) * width, x0, x1), t[starts])
    first, last = vv[:, starts], vv[:, ends]
    # fmin/fmax skip NaN, so an all-NaN column stays NaN (a gap). Each column's stroke
    # is stretched to the previous column's last value where the raw line joins them.
    joined = np.isfinite(last[:, :-1]) & np.isfinite(first[:, 1:])
    adjacent = cols[1:] == cols[:-1] + 1
    prev_last = np.full(vv[:, starts].shape, np.nan)
    prev_last[:, 1:] = np.where(joined & adjacent, last[:, :-1], np.nan)
    lo = np.fmin(np.fmin.reduceat(vv, starts, axis=1), prev_last)
    hi = np.fmax(np.fmax.reduceat(vv, starts, axis=1), prev_last)
    ys = np.stack([lo, hi], axis=2).reshape(len(values), -1)
    xs = np.repeat(x, 2)
    bridges = joined & ~adjacent
    return [_strokes(xs, ys[i], x, first[i], last[i], np.flatnonzero(bridges[i]))
            for i in range(len(values))]


def _strokes(xs: np.ndarray, ys: np.ndarray, x: np.ndarray, first: np.ndarray,
             last: np.ndarray, bridge: np.ndarray) -> Decimated:
    """Keep the finite strokes; columns with empty columns between them (a pause in
    scraping without NaN) are joined by a slanted stroke, as the raw line would be."""
    keep = np.isfinite(ys)
    if keep.all() and not len(bridge):
        return Decimated(xs, ys, "pairs")  # the common case: no gap, no pause
    xs, ys = xs[keep], ys[keep]  # lo and hi of a column are finite or NaN together
    if len(bridge):
        xs = np.concatenate([xs, np.column_stack([x[bridge], x[bridge + 1]]).ravel()])
        ys = np.concatenate([ys, np.column_stack([last[bridge], first[bridge + 1]]).ravel()])
        # strokes in time order, so exports and hit tests walk left to right
        order = np.argsort(xs[0::2], kind="stable")
        pairs = np.column_stack([order * 2, order * 2 + 1]).ravel()
        xs, ys = xs[pairs], ys[pairs]
    return Decimated(xs, ys, "pairs")
