"""One graphics item drawing every curve of a chart, cached as an image and redrawn from the right.

pyqtgraph repaints every curve in full on every paint. A chart of 50 noisy curves an
hour long lights millions of pixels each time, although a live refresh only adds a
sample at the right edge. :class:`StrokeLayer` keeps the chart's curves as line
segments (decimated to pixel columns, see decimate.py), paints them once into an
image the size of the plot, and on the next refresh clears and redraws only the
columns that changed at either end (stroke_diff.py); a paint in between is one image
blit. A live window step or a pan keeps the scale: the image is shifted by whole
pixels and only the uncovered columns are drawn (at most half a pixel off the exact
offset). A new scale (zoom, y auto-range, resize), a curve added, removed or hidden
redraws the whole image. Exports (PNG, SVG) paint the
segments straight onto the export's painter, as vectors for SVG.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import internals
from PySide6.QtCore import QLineF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QTransform
from PySide6.QtWidgets import QStyleOptionGraphicsItem, QWidget

from .decimate import Decimated
from .stroke_diff import EVERYTHING, Span, changed_span, merge

LOG = logging.getLogger(__name__)


def segments(d: Decimated) -> np.ndarray:
    """``(n, 4)`` array of line segments ``x0, y0, x1, y1`` drawing ``d``, left to right."""
    if d.connect == "pairs":
        return np.column_stack([d.x[0::2], d.y[0::2], d.x[1::2], d.y[1::2]])
    ok = np.isfinite(d.x) & np.isfinite(d.y)
    joined = np.flatnonzero(ok[:-1] & ok[1:])  # connect="finite": NaN breaks the line
    return np.column_stack([d.x[joined], d.y[joined], d.x[joined + 1], d.y[joined + 1]])


def _bounds(segs: np.ndarray) -> tuple[float, float, float, float] | None:
    """x min, x max, y min, y max of a curve's segments (all finite by construction)."""
    if not len(segs):
        return None
    x, y = segs[:, 0::2], segs[:, 1::2]
    return float(x.min()), float(x.max()), float(y.min()), float(y.max())


def snap_out(lo: float, hi: float) -> tuple[float, float]:
    """``[lo, hi]`` widened out to multiples of a round step (1, 2 or 5 × 10^k) of about an
    eighth of its span: the y range auto-ranged to.

    With the exact data range, each new point or one leaving the live window moved the y
    range by a hair and every axis of the page laid out its ticks and labels again on every
    refresh (a third of a page's paint at 200 targets). Snapped, the range moves only when
    the data crosses a step; it never goes below 0 for data that does not.
    """
    span = hi - lo
    if not span > 0:
        span = abs(hi) or 1.0
    raw = span / 8.0
    if not (math.isfinite(raw) and raw >= 1e-300):  # at the ends of the float range: as is
        return lo, hi
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw * (1 - 1e-12))
    snapped = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return snapped if all(map(math.isfinite, snapped)) else (lo, hi)


def _dashed_path(segs: np.ndarray, m11: float, m22: float, dx: float, dy: float) -> QPainterPath:
    """``segs`` in pixels as one path whose joined segments stay one subpath: drawn as
    separate lines (a pixel column each) every segment restarted the dash pattern at "on",
    and a dashed curve looked solid."""
    x = segs[:, 0::2].ravel() * m11 + dx  # start, end, start, end, …
    y = segs[:, 1::2].ravel() * m22 + dy
    connect = np.ones(len(x), dtype=np.int32)
    # an end joins the next start only where the curve goes on (no NaN gap in between)
    connect[1:-1:2] = np.all(segs[1:, :2] == segs[:-1, 2:], axis=1)
    connect[-1] = 0
    return pg.arrayToQPath(x, y, connect=connect, finiteCheck=False)


class StrokeLayer(pg.GraphicsObject):
    """The curves of one chart: ``set_curve`` per key, drawn in key order (last on top)."""

    def __init__(self) -> None:
        super().__init__()
        self._segs: dict[str, np.ndarray] = {}
        self._pens: dict[str, QPen] = {}
        self._hidden: set[str] = set()
        self._curve_bounds: dict[str, tuple[float, float, float, float] | None] = {}
        self._bounds: tuple[float, float, float, float] | None = None
        self._rect = QRectF()
        self._image: QImage | None = None
        self._image_key: tuple | None = None
        self._image_dx = 0.0  # the x offset (device px, from the image's left) it is drawn at
        # data x ranges to redraw: (up to x, from x); None = the image is current
        self._dirty: Span | None = EVERYTHING
        self._lines = internals.PrimitiveArray(QLineF, 4)
        self.full_redraws = 0  # counted for tests and the benchmark
        self.partial_redraws = 0
        self.shifts = 0

    def set_curves(self, curves: list[tuple[str, Decimated, QColor | QPen]]) -> None:
        """Draw each ``(key, decimated samples, colour or pen)``; one repaint and bounds check
        for all. A colour draws 1 px wide (wider pens paint ~10x slower); a pen as given."""
        dirty: Span | None = None
        for key, d, colour in curves:
            new = segments(d)
            pen = QPen(colour)
            if not isinstance(colour, QPen):
                pen.setWidth(1)
            pen.setCosmetic(True)
            if key not in self._pens:
                self._pens[key] = pen
                self._segs = dict(sorted({**self._segs, key: new}.items()))
                change: Span | None = EVERYTHING
            else:
                change = changed_span(self._segs[key], new)
                self._segs[key] = new
                if pen != self._pens[key]:  # a new colour (the window's palette arrived)
                    self._pens[key], change = pen, EVERYTHING
            self._curve_bounds[key] = _bounds(new)
            if key not in self._hidden:
                dirty = merge(dirty, change)
        if curves:
            self._changed(dirty)

    def remove(self, key: str) -> None:
        if self._segs.pop(key, None) is not None:
            self._pens.pop(key)
            self._curve_bounds.pop(key)
            self._hidden.discard(key)
            self._changed(EVERYTHING)

    def set_visible(self, key: str, visible: bool) -> None:
        """Hide or show one curve (a click on its legend entry); unknown keys are ignored."""
        if key not in self._pens:
            return
        before = key in self._hidden
        (self._hidden.discard if visible else self._hidden.add)(key)
        if before != (key in self._hidden):
            self._changed(EVERYTHING)

    def segments_of(self, key: str) -> np.ndarray:
        """The segments drawn for ``key`` (tests, hit tests)."""
        return self._segs[key]

    def _changed(self, span: Span | None) -> None:
        self._dirty = merge(self._dirty, span)
        bounds = self._compute_bounds()
        if bounds != self._bounds:
            self._bounds = bounds
            self.informViewBoundsChanged()  # y auto-range follows the data
        self.update()

    def _compute_bounds(self) -> tuple[float, float, float, float] | None:
        shown = [b for k, b in self._curve_bounds.items() if k not in self._hidden and b is not None]
        if not shown:
            return None
        return (min(b[0] for b in shown), max(b[1] for b in shown),
                min(b[2] for b in shown), max(b[3] for b in shown))

    def dataBounds(self, ax: int, frac: float = 1.0,
                   orthoRange: tuple | None = None) -> tuple[float | None, float | None]:
        """Data range on axis ``ax`` (0 = x, 1 = y) for the ViewBox's auto-range; y widened
        out to the grid of :func:`snap_out`."""
        if self._bounds is None:
            return None, None
        if ax == 0:
            return self._bounds[0], self._bounds[1]
        return snap_out(self._bounds[2], self._bounds[3])

    def view_moved(self, view_rect: QRectF) -> None:
        """The ViewBox's visible rect (data coordinates): what this item may paint over."""
        self.prepareGeometryChange()
        self._rect = QRectF(view_rect)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, p: QPainter, opt: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        # An exception escaping a paint override takes the whole process down under
        # PySide6: log it, drop the cache (the next paint starts over) and go on.
        try:
            self._paint(p, widget)
        except Exception:
            LOG.exception("drawing the curves failed")
            self._image_key = None

    def _paint(self, p: QPainter, widget: QWidget | None) -> None:
        t = p.transform()
        if t.m12() or t.m21() or widget is None:  # rotated (never in a ViewBox) or an export
            # drawn straight onto the painter: as vectors for SVG, no cache for a one-off
            p.save()
            p.resetTransform()
            self._draw_all(p, t.m11(), t.m22(), t.dx(), t.dy(), -math.inf, math.inf)
            p.restore()
            return
        exact = t.mapRect(self._rect)
        if exact.isEmpty():
            return
        # Sized by the view's extent, not by the pixels it touches: the aligned rect of
        # a sliding view is one pixel wider every few steps, which would redraw it all
        # (the ViewBox clips the extra pixel).
        dev = QRect(math.floor(exact.x()), math.floor(exact.y()),
                    math.ceil(exact.width()) + 1, math.ceil(exact.height()) + 1)
        dpr = widget.devicePixelRatioF()
        # Everything but the x offset: a live window sliding (or a pan) keeps the scale,
        # and the image is shifted by whole pixels instead of drawn again.
        key = (round(t.m11(), 9), round(t.m22(), 9), round(t.dy() - dev.y(), 6),
               dev.width(), dev.height(), dpr)
        dx = t.dx() - dev.x()
        if key != self._image_key or self._image is None:
            self._image = QImage(math.ceil(dev.width() * dpr), math.ceil(dev.height() * dpr),
                                 QImage.Format.Format_ARGB32_Premultiplied)
            self._image.setDevicePixelRatio(dpr)
            self._image_key, self._image_dx, self._dirty = key, dx, EVERYTHING
        elif round(dx - self._image_dx):
            self._shift(round(dx - self._image_dx), dev.width(), dpr)
        if self._dirty is not None:
            self._redraw(t, dev)
        p.save()
        p.resetTransform()
        # the image is at most half a pixel off the exact offset (shifts are whole pixels)
        p.drawImage(dev.topLeft(), self._image)
        p.restore()

    def _shift(self, k: int, width: int, dpr: float) -> None:
        """Move the image's pixels ``k`` device px right (left when negative); the
        columns uncovered are marked for drawing. Curves keep their strokes when the
        view slides (decimate.py aligns columns to a fixed grid), so what stays is current."""
        assert self._image is not None
        m11 = self._image_key[0] if self._image_key else 0.0
        n = k * dpr
        if abs(k) >= width or n != int(n) or m11 <= 0:
            self._image_dx += k
            self._dirty = EVERYTHING
            return
        n = int(n)
        img = self._image
        px = np.frombuffer(img.bits(), dtype=np.uint32).reshape(
            img.height(), img.bytesPerLine() // 4)[:, :img.width()]
        if n < 0:
            px[:, :n] = px[:, -n:].copy()
            px[:, n:] = 0
        else:
            px[:, n:] = px[:, :-n].copy()
            px[:, :n] = 0
        self._image_dx += k
        self.shifts += 1
        # uncovered columns, one pixel of margin, as data x (image px = x * m11 + image_dx)
        if k < 0:
            span: Span = (None, (width + k - 1 - self._image_dx) / m11)
        else:
            span = ((k + 1 - self._image_dx) / m11, None)
        self._dirty = merge(self._dirty, span)

    def _redraw(self, t: QTransform, dev: QRect) -> None:
        """Clear the image's changed columns (a strip at either end) and draw them again."""
        assert self._image is not None and self._dirty is not None
        left_x, right_x = self._dirty
        self._dirty = None
        m11, width = t.m11(), dev.width()
        if right_x == -math.inf or m11 <= 0:
            regions = [(0, width)]
        else:
            # one pixel of margin: a stroke's column may round either way
            def column(x: float) -> int:
                return math.floor(m11 * x + self._image_dx)
            lo = 0 if left_x is None else min(max(column(left_x) + 2, 0), width)
            hi = width if right_x is None else min(max(column(right_x) - 1, 0), width)
            regions = [(0, width)] if lo >= hi else [r for r in ((0, lo), (hi, width)) if r[1] > r[0]]
        if regions == [(0, width)]:
            self.full_redraws += 1
        else:
            self.partial_redraws += 1
        painter = QPainter(self._image)
        try:
            for a, b in regions:
                region = QRectF(a, 0, b - a, dev.height())
                painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
                painter.fillRect(region, Qt.GlobalColor.transparent)
                painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
                painter.setClipRect(region)
                # the data x range of the region, a column wider each side
                xa = -math.inf if a == 0 else (a - 1 - self._image_dx) / m11
                xb = math.inf if b == width else (b + 1 - self._image_dx) / m11
                self._draw_all(painter, m11, t.m22(), self._image_dx, t.dy() - dev.y(), xa, xb)
        finally:
            painter.end()

    def _draw_all(self, p: QPainter, m11: float, m22: float, dx: float, dy: float,
                  from_x: float, to_x: float) -> None:
        """Every shown curve's segments reaching into ``[from_x, to_x]``, mapped to pixels by
        ``x * m11 + dx``, ``y * m22 + dy`` on an untransformed painter."""
        for key, segs in self._segs.items():
            if key in self._hidden or not len(segs):
                continue
            if from_x != -math.inf or to_x != math.inf:
                segs = segs[(segs[:, 2] >= from_x) & (segs[:, 0] <= to_x)]
            if not len(segs):
                continue
            p.setPen(self._pens[key])
            if self._pens[key].style() != Qt.PenStyle.SolidLine:
                p.drawPath(_dashed_path(segs, m11, m22, dx, dy))
                continue
            self._lines.resize(len(segs))
            out = self._lines.ndarray()
            out[:, 0::2] = segs[:, 0::2] * m11 + dx
            out[:, 1::2] = segs[:, 1::2] * m22 + dy
            p.drawLines(*self._lines.drawargs())
