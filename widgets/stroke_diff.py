"""Which x ranges of a chart changed between two sets of line segments (numpy only).

A live chart's curves change at both ends on each refresh: a sample appended on the
right, the oldest one dropped on the left, and when the window slides, the strokes
cut by either edge. The middle is the same strokes, shifted by a few rows.
:func:`changed_span` finds that common middle and reports the two ends that differ,
so a cached image is redrawn only there.
"""

from __future__ import annotations

import math

import numpy as np

Span = tuple[float | None, float | None]  # (redraw up to this x, redraw from this x)
EVERYTHING: Span = (None, -math.inf)


def _anchor(old: np.ndarray, new: np.ndarray) -> tuple[int, int] | None:
    """A row of ``new`` found unchanged in ``old``: (row in new, offset to old's row).

    Rows are sorted by their left x, so the match is looked for among old's rows
    with the same left x (a few at most). Several candidates are tried, in case the
    middle row itself changed.
    """
    for m in (len(new) // 2, len(new) // 3, 2 * len(new) // 3):
        if not 0 <= m < len(new):
            continue
        j = int(np.searchsorted(old[:, 0], new[m, 0], side="left"))
        while j < len(old) and old[j, 0] == new[m, 0]:
            if np.array_equal(old[j], new[m]):
                return m, j - m
            j += 1
    return None


def changed_span(old: np.ndarray | None, new: np.ndarray) -> Span | None:
    """The data x ranges where ``new`` (``(n, 4)`` segments) draws differently than ``old``.

    ``(left, right)``: everything up to x ``left`` and everything from x ``right`` may
    differ (either None when that end is unchanged); ``None`` when nothing differs;
    :data:`EVERYTHING` when no common middle is found. Segments must be sorted by
    their left end and have ``x0 <= x1`` (decimate.py and raw samples do).
    """
    if old is None:
        return EVERYTHING
    if len(old) == len(new) and np.array_equal(old, new):
        return None
    if not len(old) or not len(new):
        return EVERYTHING
    found = _anchor(old, new)
    if found is None:
        return EVERYTHING
    m, delta = found
    lo, hi = max(0, -delta), min(len(new), len(old) - delta)  # new rows aligned with old rows
    same = (new[lo:hi] == old[lo + delta:hi + delta]).reshape(hi - lo, 4).all(axis=1)
    ok_left = same[:m - lo][::-1]  # walking left from the anchor
    ok_right = same[m - lo:]
    n_left = int(ok_left.argmin()) if not ok_left.all() else len(ok_left)
    n_right = int(ok_right.argmin()) if not ok_right.all() else len(ok_right)
    first_same, end_same = m - n_left, m + n_right  # new[first_same:end_same] unchanged
    left = right = None
    if first_same > 0 or first_same + delta > 0:
        # both curves' rows before the unchanged run, their right ends
        ends = [a[:i, 2].max() for a, i in ((new, first_same), (old, first_same + delta)) if i > 0]
        left = float(max(ends))
    if end_same < len(new) or end_same + delta < len(old):
        starts = [a[i:, 0].min() for a, i in ((new, end_same), (old, end_same + delta))
                  if i < len(a)]
        right = float(min(starts))
    return left, right


def merge(a: Span | None, b: Span | None) -> Span | None:
    """Both spans' changes: the wider left end and the earlier right end."""
    if a is None:
        return b
    if b is None:
        return a
    lefts = [x for x in (a[0], b[0]) if x is not None]
    rights = [x for x in (a[1], b[1]) if x is not None]
    return (max(lefts) if lefts else None, min(rights) if rights else None)
