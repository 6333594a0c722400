"""TimeSeriesView: exports, and curves decimated to the chart's pixel columns."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtGui import QImage
from trimtab.widgets.timeseries import TimeSeriesView
from trimtab.widgets.timeseries_layer import snap_out


@pytest.fixture
def view(qtbot) -> TimeSeriesView:
    chart = TimeSeriesView("p95", "latency", "s", "empty")
    qtbot.addWidget(chart)
    chart.resize(600, 400)
    chart.show()
    qtbot.waitExposed(chart)
    return chart


def test_export_png_svg_csv(view: TimeSeriesView, tmp_path) -> None:
    view.set_series({"/a": (np.array([1.0, 2.0, 3.0]), np.array([0.1, np.nan, 0.3])),
                     "/b": (np.array([2.0]), np.array([0.5]))})
    view.export(str(tmp_path / "c.png"))
    assert not QImage(str(tmp_path / "c.png")).isNull()
    view.export(str(tmp_path / "c.svg"))
    assert "<svg" in (tmp_path / "c.svg").read_text()
    view.export(str(tmp_path / "c.csv"))
    rows = list(csv.reader((tmp_path / "c.csv").open()))
    assert rows == [["time (unix s)", "/a (s)", "/b (s)"], ["1.000", "0.1", ""], ["2.000", "", "0.5"],
                    ["3.000", "0.3", ""]]
    with pytest.raises(ValueError, match="png, .svg or .csv"):
        view.export(str(tmp_path / "c.gif"))


def hour(spike_at: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    t = 1_000_000.0 + np.arange(3600, dtype=float)
    v = np.full(3600, 0.2)
    if spike_at is not None:
        v[spike_at] = 5.0
    return t, v


def test_an_hour_is_drawn_as_one_stroke_per_pixel_column(view: TimeSeriesView) -> None:
    t, v = hour(spike_at=2222)
    view.set_x_window(t[0], t[-1] + 1)
    view.set_series({"/a": (t, v)})
    segs = view.layer.segments_of("/a")
    columns = int(view.plot.getPlotItem().getViewBox().width())
    assert len(segs) <= columns + 2 < len(t)
    assert segs[:, [1, 3]].max() == 5.0  # the one-sample spike survives
    assert view.point_count() == 3600  # the readout and CSV keep every sample
    assert view.values_at(t[2222] + 0.5) == {"/a": 5.0}


def test_zooming_in_decimates_again_to_the_new_range(view: TimeSeriesView) -> None:
    t, v = hour()
    view.set_x_window(t[0], t[-1])
    view.set_series({"/a": (t, v)})
    view.set_x_window(t[100] + 0.5, t[400] + 0.5)  # 300 samples: few enough to draw as they are
    segs = view.layer.segments_of("/a")  # raw samples: one segment between neighbours
    assert segs[0, 0] == t[100] and segs[-1, 2] == t[401]  # and one sample beyond each edge
    assert len(segs) == 301


def test_unchanged_series_are_not_handed_to_pyqtgraph_again(view: TimeSeriesView) -> None:
    t, v = hour()
    view.set_x_window(t[0], t[-1])
    view.set_series({"/a": (t, v), "/b": (t, v * 2)})
    calls: list[str] = []
    real = view.layer.set_curves
    view.layer.set_curves = lambda items: (calls.extend(k for k, _, _ in items), real(items))  # spy
    view.set_series({"/a": (t.copy(), v.copy()), "/b": (np.r_[t, t[-1] + 1], np.r_[v * 2, 0.3])})
    assert calls == ["/b"]
    view.set_series({"/a": (t, v)})  # a series that went away is emptied, its legend stays
    assert len(view.layer.segments_of("/b")) == 0 and "/b" in view.curves


def test_a_series_gone_leaves_the_legend_when_asked(view: TimeSeriesView) -> None:
    t, v = hour()
    view.set_x_window(t[0], t[-1])
    view.set_series({"/a": (t, v), "/b": (t, v * 2)})
    colour_b = view.curves["/b"].opts["pen"].color().name()
    view.set_series({"/a": (t, v)}, keep_gone=False)
    assert set(view.curves) == {"/a"}
    assert [label.text for _, label in view.legend.items] == ["/a"]
    with pytest.raises(KeyError):
        view.layer.segments_of("/b")
    view.set_series({"/a": (t, v), "/c": (t, v * 3)}, keep_gone=False)
    assert view.curves["/c"].opts["pen"].color().name() != colour_b  # a fresh colour
    assert len(view.layer.segments_of("/c")) > 0


def test_a_key_that_comes_as_another_leaves_takes_its_entry_relabelled(
        view: TimeSeriesView) -> None:
    """A changing top N (the Routes page's slowest instances) relabels the entry of a key
    that left for a key that came, instead of removing one entry and making another."""
    t, v = hour()
    view.set_x_window(t[0], t[-1])
    view.set_series({"/a": (t, v), "/b": (t, v * 2)}, keep_gone=False)
    b = view.curves["/b"]
    colour_b = b.opts["pen"].color().name()
    b.setVisible(False)  # what a click on its legend entry does
    assert "/b" in view.layer._hidden
    view.set_series({"/a": (t, v), "/c": (t, v * 3)}, keep_gone=False)
    assert view.curves["/c"] is b and set(view.curves) == {"/a", "/c"}
    assert sorted(label.text for _, label in view.legend.items) == ["/a", "/c"]
    assert b.isVisible() and "/c" not in view.layer._hidden  # a new line is shown
    assert b.opts["pen"].color().name() == view._pen("/c").color().name() != colour_b
    assert len(view.layer.segments_of("/c")) > 0
    with pytest.raises(KeyError):
        view.layer.segments_of("/b")
    b.setVisible(False)  # a click on the entry now hides /c, not a /b that left
    assert view.layer._hidden == {"/c"}
    view.set_series({"/a": (t, v)}, keep_gone=False)  # nothing came: the entry goes
    assert [label.text for _, label in view.legend.items] == ["/a"]


def test_nan_gap_stays_a_gap_on_screen(view: TimeSeriesView) -> None:
    t, v = hour()
    v[1000:2000] = np.nan
    view.set_x_window(t[0], t[-1])
    view.set_series({"/a": (t, v)})
    x = view.layer.segments_of("/a")[:, [0, 2]]
    assert not ((x > t[1010]) & (x < t[1990])).any()


def test_one_instant_while_the_axis_follows_the_data(view: TimeSeriesView) -> None:
    # the first cycle of a live view: every series holds one sample at the same time
    t = np.array([1_795_736_305.8218663])
    view.set_series({"/a": (t, np.array([0.4])), "/b": (t, np.array([np.nan]))})
    assert view.point_count() == 1
    assert len(view.layer.segments_of("/a")) == 0  # one sample: nothing to join yet


def test_changed_span_finds_both_changed_ends() -> None:
    from trimtab.widgets.stroke_diff import EVERYTHING, changed_span

    old = np.column_stack([np.arange(10.0), np.zeros(10), np.arange(10.0), np.ones(10)])
    assert changed_span(old, old.copy()) is None
    assert changed_span(None, old) == EVERYTHING
    new = old.copy()
    new[6, 3] = -1.0  # the right end's y of segment 6
    assert changed_span(old, new) == (None, 6.0)
    new = old.copy()
    new[1, 1] = 5.0
    assert changed_span(old, new) == (1.0, None)
    # a live refresh: the oldest stroke dropped, one appended
    slid = np.vstack([old[1:], [10.0, 0.0, 10.0, 1.0]])
    assert changed_span(old, slid) == (0.0, 10.0)
    assert changed_span(old, -old) == EVERYTHING  # nothing in common
    assert changed_span(old[:0], old[:0]) is None


def _layer_image(view: TimeSeriesView) -> np.ndarray:
    image = view.layer._image
    assert image is not None
    px = np.frombuffer(image.constBits(), dtype=np.uint32)
    return px.reshape(image.height(), image.bytesPerLine() // 4)[:, :image.width()].copy()


def _slide(view: TimeSeriesView, t: np.ndarray, v: np.ndarray, pixels: float) -> tuple:
    """Show the hour, then slide the window right by ``pixels`` device px with new samples:
    the image after the shift and after a full redraw of the same view."""
    view.set_x_window(t[0], t[-1] + 1)
    view.set_series({"/a": (t, v)})
    view.grab()
    seconds = pixels * (t[-1] + 1 - t[0]) / view.plot.getPlotItem().getViewBox().width()
    n = int(np.ceil(seconds))
    t2 = np.r_[t[n:], t[-1] + 1 + np.arange(n)]
    v2 = np.r_[v[n:], np.linspace(0.1, 0.9, n)]
    view.set_x_window(t[0] + seconds, t[-1] + 1 + seconds)
    view.set_series({"/a": (t2, v2)})
    shifts, full = view.layer.shifts, view.layer.full_redraws
    view.grab()
    assert view.layer.shifts == shifts + 1 and view.layer.full_redraws == full  # shifted
    shifted = _layer_image(view)
    view.layer._image_key = None  # the same view drawn from scratch
    view.grab()
    return shifted, _layer_image(view)


def test_sliding_window_shifts_the_image_as_a_full_redraw_draws_it(view: TimeSeriesView) -> None:
    t, v = hour(spike_at=1500)
    v = v + 0.3 * np.sin(np.arange(3600) / 40.0)
    shifted, full = _slide(view, t, v, pixels=7.0)  # whole pixels: the same picture
    differ = (shifted != full).sum()
    assert differ <= 0.002 * full.size, differ  # pixel for pixel but rounding at a stroke end
    assert (full != 0).sum() > 1000  # a curve was drawn at all


def test_a_fractional_slide_is_within_a_pixel(view: TimeSeriesView) -> None:
    t, v = hour(spike_at=1500)
    v = v + 0.3 * np.sin(np.arange(3600) / 40.0)
    shifted, full = _slide(view, t, v, pixels=5.4)
    lit, lit_full = shifted != 0, full != 0
    near = lit_full.copy()  # lit within one column of a lit pixel of the full redraw
    near[:, 1:] |= lit_full[:, :-1]
    near[:, :-1] |= lit_full[:, 1:]
    assert (lit & ~near).sum() <= 0.002 * lit.sum()


def test_legend_hides_a_curve_and_the_y_range_follows(view: TimeSeriesView) -> None:
    t, v = hour(spike_at=100)
    view.set_x_window(t[0], t[-1])
    view.set_series({"/a": (t, v), "/b": (t, v * 0.1)})
    assert view.layer.dataBounds(1) == pytest.approx((0.0, 5.0))  # data 0.02-5.0, snapped
    view.curves["/a"].setVisible(False)  # what a click on its legend sample does
    assert view.layer.dataBounds(1) == pytest.approx((0.0, 0.5))
    view.curves["/a"].setVisible(True)
    assert view.layer.dataBounds(1) == pytest.approx((0.0, 5.0))


def test_the_y_range_snaps_out_to_round_steps_and_holds_while_the_data_moves_a_little(
        view: TimeSeriesView, qtbot) -> None:
    rng = np.random.default_rng(7)
    for _ in range(2000):
        lo, hi = sorted(rng.uniform(-1, 1, 2) * 10.0 ** rng.integers(-6, 7, 2))
        a, b = snap_out(lo, hi)
        assert a <= lo and b >= hi  # the data stays inside
        assert (hi - lo) == 0 or b - a <= 3.0 * (hi - lo)  # a step is about an eighth
        if lo >= 0:
            assert a >= 0  # no negative axis for data that has none
    # a scrape may hold any finite float: the ends of the range are drawn as they are
    for lo, hi in ((-1.7e308, 1.7e308), (1.7e308, 1.7e308), (0.0, 5e-324), (-5e-324, 0.0)):
        assert snap_out(lo, hi) == (lo, hi)
    t, _ = hour()
    v = 0.1 + 0.09 * rng.random(len(t))  # 0.1-0.19 s: snapped to 0.1-0.2 (steps of 0.02)
    view.set_x_window(t[0], t[-1])
    box = view.plot.getPlotItem().getViewBox()

    def y_range(values: np.ndarray) -> list[float]:
        view.set_series({"/a": (t, values)})
        qtbot.wait(1)
        box.updateAutoRange()
        return box.viewRange()[1]

    before = y_range(v)
    assert before[0] <= 0.1 and before[1] >= 0.2
    moved = v.copy()
    moved[-1] = 0.195  # a new point a little above the rest: no new range, no relayout
    assert y_range(moved) == before
    moved = moved.copy()
    moved[-1] = 0.5  # one well above: the range follows
    assert y_range(moved)[1] > 0.5


def test_a_failing_paint_is_logged_not_fatal(view: TimeSeriesView, caplog, monkeypatch) -> None:
    t, v = hour()
    view.set_x_window(t[0], t[-1])
    view.set_series({"/a": (t, v)})

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(view.layer, "_redraw", broken)
    view.layer._image_key = None  # force a redraw on the next paint
    view.grab()
    assert "drawing the curves failed" in caplog.text


def test_svg_axes_look_as_on_screen(view: TimeSeriesView, tmp_path) -> None:
    """Issue 21.7: in SVG the grid lines must stay inside the plot, not run over the tick
    labels. The SVG, drawn back by Qt's renderer, matches the on-screen picture in the axis
    label strips (left and bottom) pixel for pixel within anti-aliasing noise."""
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgRenderer

    t = 1_000_000.0 + np.arange(300, dtype=float)
    view.set_series({"/a": (t, 0.1 + 0.05 * np.sin(t / 9.0)), "/b": (t, np.full(300, 0.05))})
    view.set_x_window(t[0], t[-1])
    qtbot_image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    view.export(str(tmp_path / "c.svg"))
    rendered = QImage(qtbot_image.size(), QImage.Format.Format_RGB32)
    painter = QPainter(rendered)
    QSvgRenderer(str(tmp_path / "c.svg")).render(painter)
    painter.end()

    def strip(image: QImage, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return np.array([[image.pixelColor(x, y).lightness() for x in range(x0, x1, 2)]
                         for y in range(y0, y1, 2)], dtype=float)

    left = view.plot.getAxis("left").sceneBoundingRect()
    bottom = view.plot.getAxis("bottom").sceneBoundingRect()
    h = qtbot_image.height()
    for x0, y0, x1, y1 in ((0, int(left.top()), int(left.right()) - 2, int(left.bottom())),
                           (int(bottom.left()), int(bottom.top()) + 2, int(bottom.right()),
                            min(h, int(bottom.bottom())))):
        screen, svg = strip(qtbot_image, x0, y0, x1, y1), strip(rendered, x0, y0, x1, y1)
        assert screen.size and np.mean(np.abs(screen - svg)) < 8.0, (x0, y0, x1, y1)
