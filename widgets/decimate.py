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


def decimate(t: np.ndarray, v: np.ndarray, x0: float, x1: float, columns: int,
             keep_raw: bool = True, from_column: int = 0) -> Decimated:
    """The samples of ``(t, v)`` visible in ``[x0, x1]``, reduced to ``columns`` strokes at most.

    ``t`` must be sorted (times of a ring buffer are). Columns are aligned to
    ``x0`` so that, while the view stays put, appending a sample only changes
    the last column. Series with at most ``2 * columns`` visible samples are
    returned as they are, unless ``keep_raw`` is false. ``from_column`` > 0 gives
    only the strokes of that column and those right of it (see :func:`extend`).
    """
    if len(t) != len(v):
        raise ValueError(f"t and v differ in length: {len(t)} != {len(v)}")
    if columns < 1 or not x1 > x0:
        raise ValueError(f"need columns >= 1 and x1 > x0, got {columns}, [{x0}, {x1}]")
    width = (x1 - x0) / columns
    window = visible_slice(t, x0 + from_column * width if from_column else x0, x1)
    t, v = t[window], v[window]
    if keep_raw and len(t) <= 2 * columns:
        return Decimated(t, v, "finite")
    # The one sample kept outside each edge gets its own column (its true index, so a
    # pause next to the edge is bridged like any other); it only decides where the
    # line leaves the plot.
    col = np.floor((t - x0) / width).astype(np.int64)
    change = np.empty(len(col), dtype=bool)
    change[0] = True
    np.not_equal(col[1:], col[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(t)) - 1
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


def extend(prev: Decimated, old: tuple[np.ndarray, np.ndarray], t: np.ndarray, v: np.ndarray,
           x0: float, x1: float, columns: int) -> Decimated | None:
    """``decimate(t, v, ...)`` reusing ``prev`` (the decimation of ``old``) left of the new samples.

    A live series gains a sample at the right and, while the view stays put, only
    the column holding ``old``'s last sample and those after it can change; their
    strokes are recomputed and spliced onto ``prev``'s. Returns None when that does
    not hold (the view moved, samples were replaced, ``prev`` was raw): decimate whole.
    """
    old_t, old_v = old
    if prev.connect != "pairs" or not len(old_t) or not len(t) or not x1 > x0:
        return None
    width = (x1 - x0) / columns
    k = int(np.floor((old_t[-1] - x0) / width))
    if not 1 <= k < columns:
        return None
    boundary = x0 + k * width  # the same arithmetic as decimate's, so the columns match
    # Samples left of the boundary (and the one kept outside the left edge) must be unchanged.
    a = max(int(np.searchsorted(old_t, x0, side="right")) - 1, 0)
    b = max(int(np.searchsorted(t, x0, side="right")) - 1, 0)
    a_end, b_end = int(np.searchsorted(old_t, boundary)), int(np.searchsorted(t, boundary))
    if not (np.array_equal(old_t[a:a_end], t[b:b_end])
            and np.array_equal(old_v[a:a_end], v[b:b_end], equal_nan=True)):
        return None
    tail = decimate(t, v, x0, x1, columns, keep_raw=False, from_column=k)
    hx, tx = prev.x.reshape(-1, 2), tail.x.reshape(-1, 2)
    head = hx.max(axis=1) < boundary  # strokes wholly left of the boundary stay
    new = tx.max(axis=1) >= boundary  # the tail's own stroke for the sample before it is in head
    return Decimated(np.concatenate([hx[head].ravel(), tx[new].ravel()]),
                     np.concatenate([prev.y.reshape(-1, 2)[head].ravel(),
                                     tail.y.reshape(-1, 2)[new].ravel()]), "pairs")
