"""A time-series chart: one curve per key, created once and updated with setData."""

from __future__ import annotations

import csv
import html
import time

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QHelpEvent, QPainter, QPen
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QGraphicsItem, QLabel, QToolTip, QVBoxLayout, QWidget

from .axis import padded_range, value_text
from .decimate import Decimated, decimate_many
from .marker_layer import ChangeMarkers
from .palette import OVERLAP_STYLES, Palette
from .promql_menu import (
    CurvePromql,
    PromqlViewBox,
    add_copy_shortcut,
    copy_to_clipboard,
    joined,
    menu_label,
    tooltip_html,
)
from .theme import DARK, Theme
from .timeseries_layer import StrokeLayer

OVERLAP_FRACTION = 0.02  # curves closer than this share of the y axis are drawn as one
OVERLAP_SAMPLES = 60  # the recent samples compared to tell
OVERLAP_MAX_CURVES = 12  # beyond, overlaps are the rule and dashes would only add noise
MIN_COLUMNS = 100  # before the first layout the plot is a few pixels wide
EMPTY = Decimated(np.array([]), np.array([]), "finite")
NEAR_CURVE_PX = 6.0  # a right-click this close to a curve (vertically) means that curve


class TimeSeriesView(QWidget):
    """Titled plot with a time axis, unit-labelled y axis, legend, crosshair and empty-state hint.

    ``user_ranged`` is emitted when the user zooms or pans, so the window can stop
    following live data; ``markers`` draws vertical lines (e.g. config changes).
    """

    user_ranged = Signal(float, float)  # the time range the user zoomed or panned to
    marker_clicked = Signal(str)  # the key of a change marker the user clicked
    pointClicked = Signal(float, float)  # (x, y) in data coordinates of a left click in the plot

    def __init__(self, title: str, y_label: str, y_units: str, empty_hint: str,
                 y_range: tuple[float, float] | None = None, parent: QWidget | None = None,
                 palette: Palette | None = None) -> None:
        super().__init__(parent)
        # One palette per window, so a route has one colour on every chart (set_palette).
        self.palette = palette if palette is not None else Palette()
        self._promql: CurvePromql | None = None
        self._promql_lead = ""
        vb = PromqlViewBox()
        vb.promql_target = self._menu_target
        self.plot = pg.PlotWidget(viewBox=vb,
                                  axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setTitle(title)
        # Hovering the title, a legend name or a curve shows the PromQL it equals.
        self.plot.viewport().installEventFilter(self)
        add_copy_shortcut(self, self.copy_promql)
        self._y_units = y_units
        # the unit a CSV column is in: the data's (seconds stay seconds) or the label's "(%)"
        self._csv_unit = y_units or (y_label[y_label.rfind("(") + 1:-1]
                                     if y_label.endswith(")") and "(" in y_label else "")
        self._fixed_y = y_range
        left = self.plot.getAxis("left")
        # pyqtgraph picks an SI prefix from the visible range: a latency axis read "s" at one
        # moment and "ms" the next, and a unit that already had a prefix became "mms".
        # Durations come in seconds and are always labelled in ms; nothing is prefixed.
        left.enableAutoSIPrefix(False)
        if y_units == "s":
            left.setScale(1e3)
        self.plot.setLabel("left", y_label, units="ms" if y_units == "s" else y_units)
        # the smallest y span auto-range may show (data units), and the one in force
        self._span_floor = 1e-3 if y_units == "s" else 1.0
        self._min_span: float | None = None
        self.plot.setLabel("bottom", "time (local)")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        for name in ("left", "bottom"):  # no finest tick level: its grid lines halve paint speed
            axis = self.plot.getAxis(name)
            axis.setStyle(maxTickLevel=1)
            # An axis replays its ticks, labels and grid lines (they span the plot) on
            # every paint, most of a chart's paint time; cached as pixels, it is
            # re-rendered only when its range, size or style changes.
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            axis.label.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # Text is laid out and drawn again on every paint unless cached as pixels too.
        self.plot.getPlotItem().titleLabel.item.setCacheMode(
            QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.legend = self.plot.addLegend(offset=(8, 8), labelTextSize="9pt")
        self.legend.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # No clipToView / auto downsampling: set_series decimates to the pixel columns
        # once per change (decimate.py), cheaper than pyqtgraph doing it on every paint.
        if y_range is not None:
            self.plot.setYRange(*y_range, padding=0.02)
            self.plot.getPlotItem().getViewBox().setLimits(yMin=y_range[0] - 0.05)
        vb.sigRangeChangedManually.connect(self._manual_range)
        self._crosshair = pg.InfiniteLine(angle=90, movable=False)
        self._crosshair.setVisible(False)
        self.plot.addItem(self._crosshair, ignoreBounds=True)
        self.readout = QLabel(" ")
        self._proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._mouse_clicked)
        self._empty = QLabel(empty_hint)
        self._empty.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.readout)
        layout.addWidget(self._empty)
        # Legend entries only (their pen, their visibility); the layer draws the curves.
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.layer = StrokeLayer()
        self.plot.addItem(self.layer)
        self.data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._overlap_dash: dict[str, Qt.PenStyle] = {}  # curves dashed because they overlap
        self._markers = ChangeMarkers(self.plot.getPlotItem(), self.marker_clicked.emit)
        self.markers = self._markers.lines  # key → its line (read-only use)
        self._drawn_view: tuple[float, float, int] | None = None
        vb.sigRangeChanged.connect(self._view_moved)
        vb.sigResized.connect(self._view_moved)
        self.apply_theme(DARK)

    def set_promql(self, promql: CurvePromql | None, lead: str = "") -> None:
        """What each curve equals: ``promql(legend name)`` gives its expression (asked when
        the menu, tooltip or Ctrl+Shift+C needs it); ``lead`` heads the tooltip (e.g. that
        the chart shows a ratio as percent)."""
        self._promql, self._promql_lead = promql, lead

    def legend_label(self, key: str) -> pg.LabelItem:
        """The legend's label of ``key``'s curve (its text is HTML-escaped)."""
        return next(label for sample, label in self.legend.items
                    if sample.item is self.curves[key])

    def shown_keys(self) -> list[str]:
        """The curves in the legend's order that have data and are not hidden."""
        return [k for k in sorted(self.data) if k in self.curves and self.curves[k].isVisible()]

    def promql_text(self, key: str | None = None) -> str:
        """The text "Copy as PromQL" puts on the clipboard: ``key``'s expression, or with
        ``key`` None every shown curve's (one per line, its legend name as a comment)."""
        if self._promql is None:
            return ""
        keys = self.shown_keys() if key is None else [key]
        return joined([(k, self._promql(k)) for k in keys])

    def copy_promql(self, key: str | None = None) -> str:
        """Copy :meth:`promql_text` to the clipboard (nothing when the chart has none)."""
        text = self.promql_text(key)
        if text:
            copy_to_clipboard(text)
        return text

    def curve_at(self, scene_pos: QPointF) -> str | None:
        """The curve under a scene position: its legend entry, or a curve drawn within
        NEAR_CURVE_PX pixels above or below; None elsewhere."""
        key_of = {id(curve): key for key, curve in self.curves.items()}
        for sample, label in self.legend.items:
            if (label.sceneBoundingRect().contains(scene_pos)
                    or sample.sceneBoundingRect().contains(scene_pos)):
                return key_of.get(id(sample.item))
        vb = self.plot.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        point = vb.mapSceneToView(scene_pos)
        _, px_height = vb.viewPixelSize()
        best, best_px = None, NEAR_CURVE_PX
        for key in self.shown_keys():
            y = _value_at(*self.data[key], point.x())
            if y is not None and px_height > 0 and abs(y - point.y()) / px_height <= best_px:
                best, best_px = key, abs(y - point.y()) / px_height
        return best

    def _menu_target(self, scene_pos: QPointF) -> tuple[str, bool, str] | None:
        if self._promql is None:
            return None
        key = self.curve_at(scene_pos)
        if key is None:
            label, enabled = menu_label(None, None, len(self.shown_keys()))
            return label, enabled, self.promql_text()
        answer = self._promql(key)
        label, enabled = menu_label(key, answer, 1)
        return label, enabled, self.promql_text(key) if enabled else ""

    def promql_tooltip(self, scene_pos: QPointF) -> str:
        """The tooltip at a scene position: every curve's expression over the title, one
        curve's over its legend entry or line; empty elsewhere."""
        if self._promql is None:
            return ""
        title = self.plot.getPlotItem().titleLabel
        if title.sceneBoundingRect().contains(scene_pos):
            keys = self.shown_keys()
        else:
            key = self.curve_at(scene_pos)
            keys = [key] if key is not None else []
        if not keys:
            return ""
        return tooltip_html([(k, self._promql(k)) for k in keys], self._promql_lead)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        # the type first: every paint and mouse move of the plot passes here
        if event.type() == QEvent.Type.ToolTip and watched is self.plot.viewport():
            assert isinstance(event, QHelpEvent)
            text = self.promql_tooltip(self.plot.mapToScene(event.pos()))
            if text:
                QToolTip.showText(event.globalPos(), text, self.plot.viewport())
                return True
        return super().eventFilter(watched, event)

    def set_series(self, series: dict[str, tuple[np.ndarray, np.ndarray]],
                   keep_gone: bool = True) -> None:
        """Replace the drawn data; curves are created once per key, then only updated.

        A series whose samples did not change since the last call is not decimated
        or handed to pyqtgraph again (a hidden curve costs nothing to keep). A key
        missing from ``series`` keeps its legend entry with an empty curve, or with
        ``keep_gone=False`` leaves the legend (a chart of a changing top N).
        """
        changed = [key for key in sorted(series)
                   if key not in self.curves or not _same(self.data.get(key), series[key])]
        gone = sorted(set(self.curves) - set(series))
        if keep_gone:
            self.layer.set_curves([(key, EMPTY, self._colour(key)) for key in gone])
        else:
            came = [key for key in changed if key not in self.curves]
            relabelled = False
            for key in gone:
                curve = self.curves.pop(key)
                self.layer.remove(key)
                if came:  # handed to a key that came: relabelled, not removed and made again
                    self._recycle(curve, came.pop(0))
                    relabelled = True
                else:
                    self.legend.removeItem(curve)
            if relabelled:
                self.legend.updateSize()  # a relabelled entry may be wider
        self.data = dict(series)
        self._draw(changed)
        has_points = any(np.isfinite(v).any() for _, v in series.values())
        self._empty.setVisible(not has_points)
        if self._fixed_y is None:
            self._keep_min_span()
        if changed:
            self._mark_overlaps()

    def _keep_min_span(self) -> None:
        """Give auto-range a minimum y span relative to the values shown: a near-constant
        series is drawn flat with round ticks, not as float noise filling the height."""
        finite = [v[np.isfinite(v)] for _, v in self.data.values()]
        finite = [v for v in finite if len(v)]
        span, floor = None, None
        if finite:
            lo = min(float(v.min()) for v in finite)
            hi = max(float(v.max()) for v in finite)
            padded = padded_range(lo, hi, self._span_floor)
            if padded != (lo, hi):
                span = padded[1] - padded[0]
                # widened around a value near 0, the axis must not show negative rates or
                # ratios the data cannot have: the span starts at 0 instead
                floor = 0.0 if lo >= 0 else None
        old = self._min_span
        # setLimits re-ranges the view: only when the floor moved by more than a tenth
        if (span is None) != (old is None) or (span and old and abs(span - old) > 0.1 * old):
            self._min_span = span
            self.plot.getPlotItem().getViewBox().setLimits(minYRange=span, yMin=floor)

    def _view_for_decimation(self) -> tuple[float, float, int]:
        """The x range and pixel columns curves are decimated to.

        While the x axis follows the data (auto range, before a window is set) the
        range is the data's own, or the view would chase its own decimation.
        """
        vb = self.plot.getPlotItem().getViewBox()
        columns = max(MIN_COLUMNS, int(vb.width()))
        if vb.autoRangeEnabled()[0]:
            spans = [(t[0], t[-1]) for t, _ in self.data.values() if len(t)]
            if spans:
                x0, x1 = min(s[0] for s in spans), max(s[1] for s in spans)
                # one sample (or one instant): any non-empty range keeps it whole
                return float(x0), float(x1 if x1 > x0 else x0 + 1.0), columns
        x0, x1 = self.x_window()
        return x0, (x1 if x1 > x0 else x0 + 1.0), columns

    def _draw(self, keys: list[str]) -> None:
        """Decimate ``keys`` to the current view and hand the strokes to the layer.

        Series sampled at the same times (a metric's series are appended in the
        same cycle) are decimated together, in one numpy pass.
        """
        view = self._drawn_view = self._view_for_decimation()
        groups: list[tuple[np.ndarray, list[str]]] = []
        for key in keys:
            t = self.data[key][0]
            group = next((g for g in groups if len(g[0]) == len(t) and np.array_equal(g[0], t)),
                         None)
            if group is None:
                groups.append((t, [key]))
            else:
                group[1].append(key)
        batch = []
        for t, members in groups:
            decimated = decimate_many(t, [self.data[k][1] for k in members], *view)
            batch += [(k, d, self._colour(k)) for k, d in zip(members, decimated)]
        self.layer.set_curves(sorted(batch, key=lambda item: item[0]))

    def _recycle(self, curve: pg.PlotDataItem, key: str) -> None:
        """Give ``curve`` and its legend entry to ``key``: a new label, pen and visibility.

        A chart of a changing top N (the Routes page's slowest instances at 200 targets
        swap a few every scrape) removed one legend entry and made another per swap, ~2 ms
        each: most of that page's refresh. A relabel costs a tenth of it.
        """
        self.curves[key] = curve
        curve.setPen(self._pen(key))
        curve.setVisible(True)  # hidden by a click on the entry of the key that left
        for sample, label in self.legend.items:
            if sample.item is curve:
                label.setText(html.escape(key, quote=False))
                sample.update()  # cached as a pixmap: repaints only when told
                break

    def _visibility_changed(self, curve: pg.PlotDataItem) -> None:
        """A click on a legend entry hid or showed ``curve``: so does the stroke layer, under
        the key the curve has now (a recycled curve changed keys; a removed one has none)."""
        key = next((k for k, c in self.curves.items() if c is curve), None)
        if key is not None:
            self.layer.set_visible(key, curve.isVisible())

    def _colour(self, key: str) -> QPen:
        """The pen of ``key``'s curve (the palette's colour and width for ``key``); its
        legend entry is made on first use."""
        curve = self.curves.get(key)
        if curve is None:
            # a counter, not len(curves): a removed curve's colour is not handed out twice
            curve = self.curves[key] = pg.PlotDataItem(pen=self._pen(key))
            curve.visibleChanged.connect(lambda curve=curve: self._visibility_changed(curve))
            # pyqtgraph's labels are rich text: a route "<other>" would be drawn as nothing
            self.legend.addItem(curve, html.escape(key, quote=False))
            # Cached as pixmaps: each sample and label is a Python paint() otherwise, and a
            # chart of 10 routes repainted them all whenever anything under them moved.
            sample, label = self.legend.items[-1]
            sample.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            label.item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        return curve.opts["pen"]

    def set_palette(self, palette: Palette) -> None:
        """Take the window's palette (one colour per route or backend on every chart);
        curves drawn so far take their colour from it."""
        self.palette = palette
        self._restyle()

    def _pen(self, key: str) -> QPen:
        """The palette's colour and width for ``key``; dashed when it lies on another curve."""
        style = self.palette.style(key)
        dash = self._overlap_dash.get(key, style.dash)
        return pg.mkPen(style.colour, width=style.width, style=dash)

    def _restyle(self) -> None:
        """Give every curve its current pen (legend sample and stroke layer alike)."""
        for key, curve in self.curves.items():
            curve.setPen(self._pen(key))
            self.layer.set_curves([(key, EMPTY, curve.opts["pen"])])
        for sample, _ in self.legend.items:  # cached as pixmaps: they repaint only when told
            sample.update()
        if self.data:
            self._draw(sorted(self.data))

    def _mark_overlaps(self) -> None:
        """Dash a solid curve that lies on an earlier one (three share lines at 33 % drew as
        one): the gaps of its dashes show the curve below. Once dashed, a curve stays
        dashed on this chart, so its look does not flicker as the lines meet and part."""
        keys = [k for k in sorted(self.data) if k in self.curves]
        if len(keys) < 2 or len(keys) > OVERLAP_MAX_CURVES:
            return
        (_, _), (y0, y1) = self.plot.getPlotItem().getViewBox().viewRange()
        close = OVERLAP_FRACTION * (y1 - y0)
        recent = {k: self.data[k] for k in keys}
        newly = False
        for i, key in enumerate(keys):
            if key in self._overlap_dash or self.palette.style(key).dash != Qt.PenStyle.SolidLine:
                continue
            if any(_coincide(recent[key], recent[other], close) for other in keys[:i]):
                self._overlap_dash[key] = OVERLAP_STYLES[len(self._overlap_dash)
                                                         % len(OVERLAP_STYLES)]
                newly = True
        if newly:
            self._restyle()

    def _view_moved(self, *_: object) -> None:
        """Zoom, pan, a new live window or a resize: decimate again if the columns moved."""
        self.layer.view_moved(self.plot.getPlotItem().getViewBox().viewRect())
        if self.data and self._view_for_decimation() != self._drawn_view:
            self._draw(sorted(self.data))

    def set_markers(self, markers: list[tuple[str, float, str]]) -> None:
        """Change markers: (key, unix time, label); a click on one emits ``marker_clicked``."""
        self._markers.set(markers)

    def set_x_window(self, start: float, end: float) -> None:
        """Show ``[start, end]`` (unix seconds) on the time axis; used for live windows."""
        self.plot.setXRange(start, end, padding=0.0)

    def x_window(self) -> tuple[float, float]:
        (x0, x1), _ = self.plot.getPlotItem().getViewBox().viewRange()
        return float(x0), float(x1)

    def _mouse_clicked(self, ev: MouseClickEvent) -> None:
        """Left click on empty plot area → ``pointClicked(x, y)`` in data coordinates.

        pyqtgraph only makes a click event when the mouse did not drag, so pans and
        zoom boxes never arrive here; clicks taken by an item (marker, legend) are
        already accepted.
        """
        if ev.isAccepted() or ev.double() or ev.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.plot.getPlotItem().getViewBox()
        pos = ev.scenePos()
        if not vb.sceneBoundingRect().contains(pos):
            return  # axes, title, legend margin: not a point in the data
        point = vb.mapSceneToView(pos)
        self.pointClicked.emit(float(point.x()), float(point.y()))

    def _manual_range(self, *_: object) -> None:
        self.user_ranged.emit(*self.x_window())

    def point_count(self) -> int:
        """Finite points currently held (for tests and the status bar)."""
        return int(sum(np.isfinite(v).sum() for _, v in self.data.values()))

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        """No: the chart takes the height its layout gives it. The wrapped empty-state line
        made the view height-for-width, and a grid then gave a chart showing that line a
        whole row's height and squashed the row below to its minimum."""
        return False

    def set_empty_hint(self, text: str) -> None:
        """What the chart says while it has nothing to draw (why it is empty)."""
        self._empty.setText(text)

    def empty_hint(self) -> str:
        """The text shown while the chart is empty."""
        return self._empty.text()

    def values_at(self, t: float) -> dict[str, float]:
        """Each series' value at the sample nearest before ``t`` (the crosshair readout)."""
        out = {}
        for key, (ts, vs) in self.data.items():
            i = int(np.searchsorted(ts, t, side="right")) - 1
            if 0 <= i < len(ts) and np.isfinite(vs[i]):
                out[key] = float(vs[i])
        return out

    def export(self, path: str) -> None:
        """Save the chart as PNG or SVG (the picture) or CSV (the data), by ``path``'s suffix.

        CSV holds the full-resolution series held by the view (not the decimated curve):
        one ``time`` column (unix seconds) and one column per series, empty where absent.
        """
        suffix = path.rsplit(".", 1)[-1].lower()
        if suffix == "csv":
            self._export_csv(path)
        elif suffix == "png":
            ImageExporter(self.plot.getPlotItem()).export(path)
        elif suffix == "svg":
            self._export_svg(path)
        else:
            raise ValueError(f"cannot export to .{suffix}: use .png, .svg or .csv")

    def _export_svg(self, path: str) -> None:
        # pyqtgraph's SVGExporter cannot parse the path data Qt 6 writes; render the
        # plot through Qt's own SVG generator instead.
        generator = QSvgGenerator()
        generator.setFileName(path)
        generator.setSize(self.plot.size())
        generator.setViewBox(self.plot.rect())
        generator.setTitle(self.plot.plotItem.titleLabel.text)
        painter = QPainter(generator)
        try:
            self.plot.render(painter)
        finally:
            painter.end()

    def _export_csv(self, path: str) -> None:
        keys = sorted(self.data)
        times = np.unique(np.concatenate([self.data[k][0] for k in keys])) if keys else np.array([])
        columns = []
        for key in keys:
            t, v = self.data[key]
            col = np.full(len(times), np.nan)
            col[np.searchsorted(times, t)] = v
            columns.append(col)
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            # units in the header: the chart shows ms, the file holds seconds
            unit = f" ({self._csv_unit})" if self._csv_unit else ""
            writer.writerow(["time (unix s)", *(f"{key}{unit}" for key in keys)])
            for i, ts in enumerate(times):
                writer.writerow([f"{ts:.3f}", *("" if np.isnan(c[i]) else repr(float(c[i]))
                                                 for c in columns)])

    def apply_theme(self, theme: Theme) -> None:
        self.plot.setBackground(theme.background)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setPen(theme.foreground)
            axis.setTextPen(theme.foreground)
        self.plot.setTitle(self.plot.plotItem.titleLabel.text, color=theme.foreground)
        self._crosshair.setPen(pg.mkPen(theme.muted, width=1))
        self.legend.setLabelTextColor(theme.foreground)
        # A veiled backdrop: without it the names are unreadable over ten busy curves.
        self._veil = QColor(theme.background)
        self._veil.setAlpha(200)
        self.legend.setBrush(self._veil)
        self._markers.set_veil(self._veil)  # marker labels sit on the same backdrop
        for item in self.legend.items:
            item[1].setText(item[1].text, color=theme.foreground)

    def _mouse_moved(self, event: tuple) -> None:
        pos = event[0]
        if not self.plot.sceneBoundingRect().contains(pos):
            self._crosshair.setVisible(False)
            return
        t = self.plot.getPlotItem().getViewBox().mapSceneToView(pos).x()
        self._crosshair.setPos(t)
        self._crosshair.setVisible(True)
        values = self.values_at(t)
        stamp = time.strftime("%H:%M:%S", time.localtime(t))
        self.readout.setText(f"{stamp}  " + "  ".join(
            f"{k}: {value_text(v, self._y_units)}" for k, v in sorted(values.items())))



def _coincide(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
              close: float) -> bool:
    """Whether two series sampled at the same times lie within ``close`` of each other at
    most of their last OVERLAP_SAMPLES points (they would be drawn as one line)."""
    (ta, va), (tb, vb) = a, b
    n = min(len(ta), len(tb), OVERLAP_SAMPLES)
    if n < 3 or not np.array_equal(ta[-n:], tb[-n:]):
        return False
    diff = np.abs(va[-n:] - vb[-n:])
    diff = diff[np.isfinite(diff)]
    return len(diff) >= 3 and float(np.median(diff)) <= close


def _value_at(t: np.ndarray, v: np.ndarray, x: float) -> float | None:
    """The curve's height at time ``x``: interpolated between the samples around it, the
    sample itself at an end; None where the curve has a gap or no data."""
    i = int(np.searchsorted(t, x))
    if len(t) == 0 or i == 0 and x < t[0] or i == len(t):
        return None
    if t[i] == x or i == 0:
        return float(v[i]) if np.isfinite(v[i]) else None
    a, b = float(v[i - 1]), float(v[i])
    if not (np.isfinite(a) and np.isfinite(b)):
        return None
    return a + (b - a) * (x - float(t[i - 1])) / (float(t[i]) - float(t[i - 1]))


def _same(old: tuple[np.ndarray, np.ndarray] | None, new: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether a series holds exactly the samples it held (a few µs for an hour of points)."""
    if old is None or len(old[0]) != len(new[0]):
        return False
    return bool(np.array_equal(old[0], new[0]) and np.array_equal(old[1], new[1], equal_nan=True))
