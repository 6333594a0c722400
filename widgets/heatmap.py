"""A latency heatmap: time across, latency bucket up (log scale), colour = requests per second.

One pyqtgraph ImageItem fed a float32 array per refresh (no per-cell objects). Cells are
placed on a uniform grid: each column of the median tick interval shows the tick nearest
its end (no tick within a column's width: a transparent gap) and, when the bounds are not geometric,
buckets are spread over uniform log-latency rows so the y axis stays a true log scale.
Colour is log10(requests/s); zero cells are transparent, so the tail stands out.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from pyqtgraph.GraphicsScene.mouseEvents import MouseClickEvent
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QHelpEvent, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QLabel, QToolTip, QVBoxLayout, QWidget

from .marker_layer import ChangeMarkers
from .promql_menu import (
    Answer,
    PromqlViewBox,
    add_copy_shortcut,
    copy_to_clipboard,
    menu_label,
    tooltip_html,
)
from .theme import DARK, Theme

MAX_COLUMNS = 20_000  # a day-long gap must not allocate a day of 1 s columns
MAX_ROWS = 512
DECADES_SHOWN = 4.0  # colour range: the busiest cell down to 1/10,000 of it


class Cell(NamedTuple):
    """One heatmap cell: its time slice, latency bucket (seconds) and value (req/s, NaN = none)."""

    t0: float
    t1: float
    lo_s: float
    hi_s: float
    value: float


def seconds_label(s: float) -> str:
    """``0.15`` → ``"150 ms"``, ``1.25`` → ``"1.25 s"`` (three significant digits)."""
    if s >= 1.0:
        return f"{s:.3g} s"
    return f"{s * 1000:.3g} ms"


def bucket_label(lo: float, hi: float) -> str:
    """``"150–200 ms"``, ``"800 ms–1 s"``, ``"> 12.4 s"`` for the +Inf bucket."""
    if math.isinf(hi):
        return f"> {seconds_label(lo)}"
    if hi < 1.0:
        return f"{lo * 1000:.3g}–{hi * 1000:.3g} ms"
    if lo >= 1.0:
        return f"{lo:.3g}–{hi:.3g} s"
    return f"{seconds_label(lo)}–{seconds_label(hi)}"


def bucket_edges(bounds: np.ndarray) -> np.ndarray:
    """Lower and upper edge (seconds) of every bucket, ``len(bounds) + 1`` values.

    The first bucket starts at 0, which a log axis cannot show: it is drawn from
    one bucket ratio below its bound; the +Inf bucket one ratio above the last.
    """
    finite = bounds[np.isfinite(bounds)]
    ratio_lo = finite[1] / finite[0] if len(finite) > 1 else 2.0
    ratio_hi = finite[-1] / finite[-2] if len(finite) > 1 else 2.0
    top = [finite[-1] * ratio_hi] if np.isinf(bounds[-1]) else []
    return np.concatenate([[finite[0] / ratio_lo], finite, top])


def decade_ticks(lo: float, hi: float) -> tuple[list, list]:
    """(major, minor) ticks for a log10-seconds axis: 1/10/100 ms, 1 s… and 2, 5 between."""
    major, minor = [], []
    for exp in range(math.floor(lo) - 1, math.ceil(hi) + 1):
        for mult in (1, 2, 5):
            pos = exp + math.log10(mult)
            if lo <= pos <= hi:
                (major if mult == 1 else minor).append((pos, seconds_label(10.0 ** pos)))
    return major, minor


class HeatmapView(QWidget):
    """Titled heatmap with the charts' time axis, a log latency axis, colour bar and readout.

    Offers what the window expects of a chart (``plot``, ``user_ranged``,
    ``marker_clicked``, ``set_x_window``, ``set_markers``, ``apply_theme``, ``export``)
    and emits ``cellClicked(t0, t1, lo_s, hi_s)`` for a left click on a cell.
    """

    user_ranged = Signal(float, float)
    marker_clicked = Signal(str)
    cellClicked = Signal(float, float, float, float)  # time slice (unix s), bucket (s)

    def __init__(self, title: str, empty_hint: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._promql: Callable[[], Answer] | None = None
        self._promql_lead = ""
        vb = PromqlViewBox()
        vb.promql_target = self._menu_target
        self.plot = pg.PlotWidget(viewBox=vb,
                                  axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.viewport().installEventFilter(self)  # the title's tooltip names the PromQL
        add_copy_shortcut(self, self.copy_promql)
        self.plot.setTitle(title)
        self.plot.setLabel("left", "latency bucket (log)")
        self.plot.setLabel("bottom", "time (local)")
        self.plot.getAxis("bottom").setStyle(maxTickLevel=1)
        self.plot.getAxis("left").setWidth(72)  # room for "100 ms" beside the axis label
        self.plot.setMouseEnabled(x=True, y=False)  # time pans with the other charts
        vb = self.plot.getPlotItem().getViewBox()
        vb.sigRangeChangedManually.connect(self._manual_range)
        self.image = pg.ImageItem(axisOrder="col-major")
        self.plot.addItem(self.image)
        self.colour_bar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False,
                                          label="requests/s per bucket (log)", width=14)
        self.colour_bar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        self.readout = QLabel(" ")
        self._empty_hint = empty_hint
        self._empty = QLabel(empty_hint)
        self._empty.setWordWrap(True)
        self._proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._mouse_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.readout)
        layout.addWidget(self._empty)
        self._markers = ChangeMarkers(self.plot.getPlotItem(), self.marker_clicked.emit)
        self.markers = self._markers.lines  # key → its line (read-only use)
        self.t = np.empty(0)
        self.bounds = np.empty(0)
        self.z = np.empty((0, 0), dtype=np.float32)
        self._edges_log = np.empty(0)
        self._row_map: np.ndarray | None = None
        self._tick_of_column = np.empty(0, dtype=np.intp)  # -1 where a column is a gap
        self._shown_bounds = np.empty(0)
        self._x0, self._dt = 0.0, 1.0
        self.levels = (0.0, 0.0)  # log10 req/s at the bottom and top of the colour bar
        self.apply_theme(DARK)

    def set_promql(self, promql: Callable[[], Answer] | None, lead: str = "") -> None:
        """What the heatmap equals: ``promql()`` gives the expression (asked when the menu,
        the title's tooltip or Ctrl+Shift+C needs it); ``lead`` heads the tooltip."""
        self._promql, self._promql_lead = promql, lead

    def promql_text(self) -> str:
        """The expression "Copy as PromQL" copies ("" when there is none)."""
        answer = self._promql() if self._promql is not None else None
        return answer if isinstance(answer, str) else ""

    def copy_promql(self) -> str:
        """Copy :meth:`promql_text` to the clipboard (Ctrl+Shift+C)."""
        text = self.promql_text()
        if text:
            copy_to_clipboard(text)
        return text

    def _menu_target(self, _scene_pos: QPointF) -> tuple[str, bool, str] | None:
        answer = self._promql() if self._promql is not None else None
        if answer is None:
            return None
        if isinstance(answer, str):
            return menu_label(None, None, 1)[0], True, answer
        return *menu_label("this heatmap", answer, 1), ""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        # the type first: every paint and mouse move of the plot passes here
        if (event.type() == QEvent.Type.ToolTip and watched is self.plot.viewport()
                and self._promql is not None):
            assert isinstance(event, QHelpEvent)
            title = self.plot.getPlotItem().titleLabel.sceneBoundingRect()
            answer = self._promql()
            if title.contains(self.plot.mapToScene(event.pos())) and answer is not None:
                QToolTip.showText(event.globalPos(), tooltip_html([("", answer)],
                                                                  self._promql_lead),
                                  self.plot.viewport())
                return True
        return super().eventFilter(watched, event)

    def set_heat(self, t: np.ndarray, bounds: np.ndarray, z: np.ndarray,
                 empty_text: str | None = None) -> None:
        """Draw ``z[len(t), len(bounds)]`` requests/s; ``bounds`` = upper bounds in seconds.

        With no data, ``empty_text`` is shown (default: the hint given at construction).
        """
        t, bounds, z = _drawable(t, bounds, z)
        self.t, self.bounds, self.z = t, bounds, z
        if len(t) == 0 or not np.isfinite(bounds).any():
            self._show_empty(empty_text or self._empty_hint)
            return
        if not np.array_equal(bounds, self._shown_bounds):
            self._layout_rows(bounds)
        self._x0, self._dt, self._tick_of_column = _time_grid(t)
        image = z[self._tick_of_column]
        image[self._tick_of_column < 0] = np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            image = np.where(image > 0, np.log10(image), np.nan).astype(np.float32)
        if self._row_map is not None:
            image = image[:, self._row_map]
        peak = float(np.nanmax(image)) if np.isfinite(image).any() else math.nan
        if math.isnan(peak):
            self._show_empty("No requests of this route in the shown window.")
            return
        # Levels in quarter decades: colours (and the bar's ticks) stay put while
        # the live peak wobbles, instead of re-scaling on every refresh.
        high = math.ceil(peak * 4 + 1e-9) / 4
        low = max(math.floor(float(np.nanmin(image)) * 4) / 4, high - DECADES_SHOWN)
        levels = (min(low, high - 0.25), high)
        self.image.setImage(image, autoLevels=False, levels=levels)
        self.image.setRect(QRectF(self._x0 - self._dt, self._edges_log[0],
                                  len(image) * self._dt, self._edges_log[-1] - self._edges_log[0]))
        self.image.setVisible(True)
        if levels != self.levels:
            self.levels = levels
            self.colour_bar.setLevels(levels)
            self._colour_ticks(levels)
        self._empty.setVisible(False)

    def _show_empty(self, text: str) -> None:
        self.image.setVisible(False)
        self._empty.setText(text)
        self._empty.setVisible(True)

    def _layout_rows(self, bounds: np.ndarray) -> None:
        """Row placement for these bounds: one row per bucket when they are geometric
        (the agent's are), else buckets spread over uniform log rows."""
        edges = np.log10(bucket_edges(bounds))
        widths = np.diff(edges)
        self._row_map = None
        if not np.allclose(widths, widths[0], rtol=0.02):
            rows = min(MAX_ROWS, 8 * len(bounds))
            centres = edges[0] + (np.arange(rows) + 0.5) * (edges[-1] - edges[0]) / rows
            self._row_map = np.clip(np.searchsorted(edges, centres, side="right") - 1,
                                    0, len(bounds) - 1)
        self._edges_log, self._shown_bounds = edges, bounds.copy()
        major, minor = decade_ticks(edges[0], edges[-1])
        inf_row = (edges[-2] + edges[-1]) / 2
        if np.isinf(bounds[-1]) and all(abs(pos - inf_row) > 0.3 for pos, _ in major):
            major.append((inf_row, "+Inf"))  # only where it does not sit on "10 s"
        self.plot.getAxis("left").setTicks([major, minor])
        self.plot.setYRange(edges[0], edges[-1], padding=0.0)

    def _colour_ticks(self, levels: tuple[float, float]) -> None:
        """Colour bar ticks in requests/s at 1, 2, 5 × 10ⁿ (the bar itself is log10)."""
        ticks = [(e + math.log10(m), f"{m * 10.0 ** e:g}")
                 for e in range(math.floor(levels[0]), math.ceil(levels[1]) + 1)
                 for m in ((1, 2, 5) if levels[1] - levels[0] < 2.5 else (1,))
                 if levels[0] <= e + math.log10(m) <= levels[1]]
        self.colour_bar.axis.setTicks([ticks])

    def cell_at(self, x: float, y: float) -> Cell | None:
        """The drawn cell under data coordinates (x = unix time, y = log10 seconds)."""
        if len(self.t) == 0 or len(self._edges_log) == 0:
            return None
        j = int(np.searchsorted(self._edges_log, y, side="left")) - 1  # (lo, hi]
        if not 0 <= j < len(self.bounds):
            return None
        column = math.ceil((x - self._x0) / self._dt)  # a column ends at its grid time
        if not 0 <= column < len(self._tick_of_column) or self._tick_of_column[column] < 0:
            return None  # outside the data, or a gap
        i = int(self._tick_of_column[column])
        # The value is the rate window ending at the tick: the slice is (previous tick, tick].
        t0 = float(self.t[i - 1]) if i > 0 else float(self.t[i]) - self._dt
        lo = float(self.bounds[j - 1]) if j > 0 else 0.0
        return Cell(t0, float(self.t[i]), lo, float(self.bounds[j]), float(self.z[i, j]))

    def cell_centre(self, i: int, j: int) -> tuple[float, float] | None:
        """Data coordinates of the middle of the cell drawn for tick ``i``, bucket ``j``
        (None when that tick is not drawn, e.g. it shared a column with a neighbour)."""
        columns = np.flatnonzero(self._tick_of_column == i)
        if not len(columns) or not 0 <= j < len(self.bounds):
            return None
        x = self._x0 + (float(columns[0]) - 0.5) * self._dt
        return x, float(self._edges_log[j] + self._edges_log[j + 1]) / 2

    def click_at(self, x: float, y: float) -> Cell | None:
        """Act as a left click at data coordinates: emits ``cellClicked`` for a cell there."""
        cell = self.cell_at(x, y)
        if cell is not None:
            self.cellClicked.emit(cell.t0, cell.t1, cell.lo_s, cell.hi_s)
        return cell

    def _mouse_clicked(self, ev: MouseClickEvent) -> None:
        if ev.isAccepted() or ev.double() or ev.button() != Qt.MouseButton.LeftButton:
            return  # taken by a marker, or not a plain left click
        vb = self.plot.getPlotItem().getViewBox()
        if vb.sceneBoundingRect().contains(ev.scenePos()):
            point = vb.mapSceneToView(ev.scenePos())
            self.click_at(point.x(), point.y())

    def _mouse_moved(self, event: tuple) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(event[0]):
            return
        point = vb.mapSceneToView(event[0])
        cell = self.cell_at(point.x(), point.y())
        self.readout.setText(describe(cell) if cell is not None else " ")

    def point_count(self) -> int:
        """Cells holding a value, zeros included (for tests and the status bar)."""
        return int(np.isfinite(self.z).sum())

    def set_x_window(self, start: float, end: float) -> None:
        """Show ``[start, end]`` (unix seconds) on the time axis, as the other charts do."""
        self.plot.setXRange(start, end, padding=0.0)

    def x_window(self) -> tuple[float, float]:
        (x0, x1), _ = self.plot.getPlotItem().getViewBox().viewRange()
        return float(x0), float(x1)

    def _manual_range(self, *_: object) -> None:
        self.user_ranged.emit(*self.x_window())

    def set_markers(self, markers: list[tuple[str, float, str]]) -> None:
        """Change markers: (key, unix time, label); a click on one emits ``marker_clicked``."""
        self._markers.set(markers)

    def export(self, path: str) -> None:
        """Save as PNG or SVG (the picture) or CSV (time, then requests/s per bucket), by suffix."""
        suffix = path.rsplit(".", 1)[-1].lower()
        if suffix == "png":
            ImageExporter(self.plot.getPlotItem()).export(path)
        elif suffix == "svg":
            self._export_svg(path)
        elif suffix == "csv":
            with open(path, "w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["time", *(f"le={b:g}" for b in self.bounds)])
                for ts, row in zip(self.t, self.z):
                    writer.writerow([f"{ts:.3f}", *("" if np.isnan(v) else f"{v:g}" for v in row)])
        else:
            raise ValueError(f"cannot export a heatmap to .{suffix}: use .png, .svg or .csv")

    def _export_svg(self, path: str) -> None:
        # Qt's own SVG generator, as the time-series charts do (pyqtgraph's SVG
        # exporter cannot read the path data Qt 6 writes).
        generator = QSvgGenerator()
        generator.setFileName(path)
        generator.setSize(self.plot.size())
        generator.setViewBox(self.plot.rect())
        painter = QPainter(generator)
        try:
            self.plot.render(painter)
        finally:
            painter.end()

    def apply_theme(self, theme: Theme) -> None:
        self.plot.setBackground(theme.background)
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setPen(theme.foreground)
            self.plot.getAxis(name).setTextPen(theme.foreground)
        self.colour_bar.axis.setPen(theme.foreground)
        self.colour_bar.axis.setTextPen(theme.foreground)
        self.plot.setTitle(self.plot.plotItem.titleLabel.text, color=theme.foreground)
        veil = QColor(theme.background)
        veil.setAlpha(200)  # marker labels stay readable over bright cells
        self._markers.set_veil(veil)


def describe(cell: Cell) -> str:
    """The readout: ``"12:03:10 · 150–200 ms · 3.2 req/s"``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(cell.t1))
    value = "no data" if math.isnan(cell.value) else f"{cell.value:.3g} req/s"
    return f"{stamp} · {bucket_label(cell.lo_s, cell.hi_s)} · {value}"


def _drawable(t: np.ndarray, bounds: np.ndarray, z: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buckets at or below 0 s cannot sit on a log axis: their requests join the first
    positive bucket (whose drawn lower edge is the axis bottom anyway)."""
    z = np.asarray(z, dtype=np.float32)
    keep = bounds > 0
    if len(bounds) and not keep.all() and keep.any():
        first = int(np.argmax(keep))
        z = z.copy()
        z[:, first] = np.nansum(z[:, : first + 1], axis=1)
        bounds, z = bounds[keep], z[:, keep]
    return t, bounds, z


def _time_grid(t: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(first tick, column width, tick shown by each column or -1 for a gap).

    Columns of the median tick interval end at ``t[0] + k * dt``; each shows the tick
    nearest its end when one is within a column's width. Jitter then neither leaves
    false gaps nor hides ticks, and only a real pause in collection is a gap.
    """
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    dt = max(dt, (t[-1] - t[0]) / MAX_COLUMNS, 1e-3)
    ends = t[0] + np.arange(int(np.rint((t[-1] - t[0]) / dt)) + 1) * dt
    after = np.clip(np.searchsorted(t, ends), 0, len(t) - 1)
    before = np.clip(after - 1, 0, len(t) - 1)
    nearest = np.where(np.abs(t[before] - ends) <= np.abs(t[after] - ends), before, after)
    # 3/4 of a column: a jittered tick still fills its column; a pause stays a gap.
    return float(t[0]), dt, np.where(np.abs(t[nearest] - ends) < 0.75 * dt, nearest, -1)
