"""One graphics item drawing every curve of a chart, cached as an image and redrawn from the right.

pyqtgraph repaints every curve in full on every paint. A chart of 50 noisy curves an
hour long lights millions of pixels each time, although a live refresh only adds a
sample at the right edge. :class:`StrokeLayer` keeps the chart's curves as line
segments (decimated to pixel columns, see decimate.py), paints them once into an
image the size of the plot, and on the next refresh clears and redraws only the
columns from the leftmost changed segment on; a paint in between is one image blit.
A new view transform (pan, zoom, live window step, y auto-range, resize), a curve
added, removed or hidden redraws the whole image. Exports (PNG, SVG) paint the
segments straight onto the export's painter, as vectors for SVG.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import internals
from PySide6.QtCore import QLineF, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QTransform
from PySide6.QtWidgets import QStyleOptionGraphicsItem, QWidget

from .decimate import Decimated

LOG = logging.getLogger(__name__)


def segments(d: Decimated) -> np.ndarray:
    """``(n, 4)`` array of line segments ``x0, y0, x1, y1`` drawing ``d``, left to right."""
    if d.connect == "pairs":
        return np.column_stack([d.x[0::2], d.y[0::2], d.x[1::2], d.y[1::2]])
    ok = np.isfinite(d.x) & np.isfinite(d.y)
    joined = np.flatnonzero(ok[:-1] & ok[1:])  # connect="finite": NaN breaks the line
    return np.column_stack([d.x[joined], d.y[joined], d.x[joined + 1], d.y[joined + 1]])


def first_change(old: np.ndarray | None, new: np.ndarray) -> float | None:
    """Data x from which ``new`` draws differently than ``old``; None when identical."""
    if old is None:
        return -math.inf
    n = min(len(old), len(new))
    differs = (old[:n] != new[:n]).ravel()  # flat: a per-row any() is ~10x slower
    first = int(differs.argmax()) if n else 0
    if n and differs[first]:
        i = first // 4
    elif len(old) == len(new):
        return None
    else:
        i = n
    # Segments are sorted by their left end, so nothing from row i on starts further left.
    lefts = [float(a[i, [0, 2]].min()) for a in (old, new) if i < len(a)]
    return min(lefts) if lefts else None


def _bounds(segs: np.ndarray) -> tuple[float, float, float, float] | None:
    """x min, x max, y min, y max of a curve's segments (all finite by construction)."""
    if not len(segs):
        return None
    x, y = segs[:, 0::2], segs[:, 1::2]
    return float(x.min()), float(x.max()), float(y.min()), float(y.max())


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
        self._dirty_from: float | None = -math.inf  # data x to redraw from; None = image is current
        self._lines = internals.PrimitiveArray(QLineF, 4)
        self.full_redraws = 0  # counted for tests and the benchmark
        self.partial_redraws = 0

    def set_curves(self, curves: list[tuple[str, Decimated, QColor]]) -> None:
        """Draw each ``(key, decimated samples, colour)``; one repaint and bounds check for all."""
        dirty: float | None = None
        for key, d, colour in curves:
            new = segments(d)
            if key not in self._pens:
                pen = QPen(colour)
                pen.setWidth(1)  # wider pens paint ~10x slower
                pen.setCosmetic(True)
                self._pens[key] = pen
                self._segs = dict(sorted({**self._segs, key: new}.items()))
                change: float | None = -math.inf
            else:
                change = first_change(self._segs[key], new)
                self._segs[key] = new
            self._curve_bounds[key] = _bounds(new)
            if change is not None and key not in self._hidden:
                dirty = change if dirty is None else min(dirty, change)
        if curves:
            self._changed(dirty)

    def remove(self, key: str) -> None:
        if self._segs.pop(key, None) is not None:
            self._pens.pop(key)
            self._curve_bounds.pop(key)
            self._hidden.discard(key)
            self._changed(-math.inf)

    def set_visible(self, key: str, visible: bool) -> None:
        """Hide or show one curve (a click on its legend entry)."""
        before = key in self._hidden
        (self._hidden.discard if visible else self._hidden.add)(key)
        if before != (key in self._hidden):
            self._changed(-math.inf)

    def segments_of(self, key: str) -> np.ndarray:
        """The segments drawn for ``key`` (tests, hit tests)."""
        return self._segs[key]

    def _changed(self, from_x: float | None) -> None:
        if from_x is not None:
            self._dirty_from = from_x if self._dirty_from is None else min(self._dirty_from, from_x)
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
        """Data range on axis ``ax`` (0 = x, 1 = y) for the ViewBox's auto-range."""
        if self._bounds is None:
            return None, None
        return (self._bounds[0], self._bounds[1]) if ax == 0 else (self._bounds[2], self._bounds[3])

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
            self._draw_all(p, t, QPointF(0, 0), -math.inf)
            return
        dev = t.mapRect(self._rect).toAlignedRect()
        if dev.isEmpty():
            return
        dpr = widget.devicePixelRatioF()
        key = (round(t.m11(), 9), round(t.m22(), 9), round(t.dx() - dev.x(), 6),
               round(t.dy() - dev.y(), 6), dev.width(), dev.height(), dpr)
        if key != self._image_key or self._image is None:
            self._image = QImage(math.ceil(dev.width() * dpr), math.ceil(dev.height() * dpr),
                                 QImage.Format.Format_ARGB32_Premultiplied)
            self._image.setDevicePixelRatio(dpr)
            self._image_key, self._dirty_from = key, -math.inf
        if self._dirty_from is not None:
            self._redraw(t, dev)
        p.save()
        p.resetTransform()
        p.drawImage(dev.topLeft(), self._image)
        p.restore()

    def _redraw(self, t: QTransform, dev: QRect) -> None:
        """Clear the image from the first changed column rightwards and draw that part again."""
        assert self._image is not None and self._dirty_from is not None
        origin = QPointF(dev.topLeft())
        if self._dirty_from == -math.inf or t.m11() <= 0:
            left, self.full_redraws = 0, self.full_redraws + 1
        else:
            # one pixel of margin: a stroke's column may round either way
            left = max(math.floor(t.m11() * self._dirty_from + t.dx() - origin.x()) - 1, 0)
            self.partial_redraws += 1
        self._dirty_from = None
        region = QRectF(left, 0, dev.width() - left, dev.height())
        painter = QPainter(self._image)
        try:
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
            painter.fillRect(region, Qt.GlobalColor.transparent)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
            painter.setClipRect(region)
            from_x = -math.inf if left == 0 else (left - 1 + origin.x() - t.dx()) / t.m11()
            self._draw_all(painter, t, origin, from_x)
        finally:
            painter.end()

    def _draw_all(self, p: QPainter, t: QTransform, origin: QPointF, from_x: float) -> None:
        """Every shown curve's segments reaching right of ``from_x``, in device pixels."""
        p.save()
        p.resetTransform()
        for key, segs in self._segs.items():
            if key in self._hidden or not len(segs):
                continue
            if from_x != -math.inf:
                segs = segs[np.maximum(segs[:, 0], segs[:, 2]) >= from_x]
            if not len(segs):
                continue
            self._lines.resize(len(segs))
            out = self._lines.ndarray()
            out[:, 0::2] = segs[:, 0::2] * t.m11() + (t.dx() - origin.x())
            out[:, 1::2] = segs[:, 1::2] * t.m22() + (t.dy() - origin.y())
            p.setPen(self._pens[key])
            p.drawLines(*self._lines.drawargs())
        p.restore()
