"""Change markers (issue 20 item 7): one marker per action naming every target, a click area
wide enough to hit, labels that never overlap. Real widgets, real mouse events (offscreen)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from trimtab.app.control.actions import group_changes
from trimtab.app.control.types import BALANCER, Agent, JournalRow
from trimtab.app.replay.change_markers import card, marker_key, markers
from trimtab.widgets.heatmap import HeatmapView
from trimtab.widgets.marker_layer import CLICK_PX, Placed, place_labels
from trimtab.widgets.timeseries import TimeSeriesView

T = 1_700_000_000.0
BALANCER_AGENT = Agent("balancer", "http://127.0.0.1:2", BALANCER)


def ttl_row(instance: str, at: float, route: str = "/search", old: float = 10.0,
            new: float = 60.0, ident: int = 1, result: str = "accepted") -> JournalRow:
    return JournalRow(Agent(instance, f"http://127.0.0.1:1/{instance}"), ident, at, "ops",
                      instance, "config", {"routes": {route: {"ttl": old}}},
                      {"routes": {route: {"ttl": new}}}, "peak hour", result)


def weight_row(server: str, at: float, old: int, new: int, ident: int) -> JournalRow:
    return JournalRow(BALANCER_AGENT, ident, at, "ops", "balancer", f"servers.{server}.weight",
                      old, new, "drain the slow one", "accepted")


FLEET_WIDE = [ttl_row("api-1", T), ttl_row("api-2", T + 0.4), ttl_row("api-3", T + 0.9)]


@pytest.fixture
def chart(qtbot) -> TimeSeriesView:
    view = TimeSeriesView("p95", "latency", "s", "empty")
    qtbot.addWidget(view)
    view.resize(1366, 400)
    view.show()
    qtbot.waitExposed(view)
    view.set_series({"/search": (np.arange(T - 300, T + 1), np.linspace(0.1, 0.2, 301))})
    view.plot.setXRange(T - 240, T + 60, padding=0)  # a live 5 min window
    view.plot.setYRange(0, 0.3, padding=0)
    return view


def pixel(view: TimeSeriesView | HeatmapView, t: float, dx: int = 0) -> QPoint:
    """The viewport pixel ``dx`` px right of time ``t``, halfway down the plot."""
    vb = view.plot.getPlotItem().getViewBox()
    centre = vb.sceneBoundingRect().center()
    x = vb.mapViewToScene(QPointF(t, 0)).x() + dx
    return view.plot.mapFromScene(QPointF(x, centre.y()))


def click(view: TimeSeriesView | HeatmapView, at: QPoint) -> None:
    QTest.mouseClick(view.plot.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, at)


def test_a_fleet_wide_change_is_one_marker_naming_every_target(qtbot, chart) -> None:
    refused = ttl_row("api-2", T + 0.5, new=-1, ident=9, result="refused")
    marks = markers([*FLEET_WIDE, refused])
    assert len(marks) == 1
    key, when, label = marks[0]
    assert (key, when) == (marker_key(FLEET_WIDE[0]), T)
    assert label == "TTL /search 10→60 s · api-1, api-2, api-3"
    chart.set_markers(marks)
    assert list(chart.markers) == [key]
    shown = chart._markers.labels[key]
    assert shown.isVisible() and shown.text.text() == label  # drawn whole, not elided
    assert label in chart.markers[key].toolTip()


def test_the_card_of_one_of_its_rows_names_the_whole_action() -> None:
    from trimtab.app.model.fleet import FleetModel

    content = card(FleetModel(), FLEET_WIDE[1], now=T + 30, journal=FLEET_WIDE)
    assert "TTL /search 10→60 s · api-1, api-2, api-3" in content.subtitle


def test_what_stays_apart_and_what_goes_together() -> None:
    # The same instance patched twice 1 s apart: two actions, even with the same reason.
    twice = [ttl_row("api-1", T), ttl_row("api-1", T + 1, route="/items", ident=2)]
    assert [len(g) for g in group_changes(twice)] == [1, 1]
    # Other values on other instances: not the same change.
    other = [ttl_row("api-1", T), ttl_row("api-2", T + 0.5, new=30.0)]
    assert [len(g) for g in group_changes(other)] == [1, 1]
    # Far apart in time: two actions.
    late = [ttl_row("api-1", T), ttl_row("api-2", T + 5)]
    assert [len(g) for g in group_changes(late)] == [1, 1]
    # A balancer journals one row per server field: one action, both fields named.
    weights = [weight_row("api-1", T, 1, 2, 1), weight_row("api-3", T + 0.1, 1, 0, 2)]
    assert markers(weights) == [("balancer#1", T,
                                 "weight api-1 1→2, weight api-3 1→0 · balancer")]
    # Many targets: the label stays short.
    six = [ttl_row(f"api-{i}", T + i / 10) for i in range(1, 7)]
    assert markers(six)[0][2] == "TTL /search 10→60 s · api-1, api-2 +4 more"
    # Instances that held different old values.
    mixed = [ttl_row("api-1", T), ttl_row("api-2", T + 0.2, old=20.0)]
    assert markers(mixed)[0][2] == "TTL /search 10/20→60 s · api-1, api-2"


@pytest.mark.parametrize("dx", [-6, 6, -CLICK_PX + 2, CLICK_PX - 2])
def test_a_click_beside_the_line_opens_that_change(qtbot, chart, dx: int) -> None:
    points: list[tuple[float, float]] = []
    chart.pointClicked.connect(lambda x, y: points.append((x, y)))
    chart.set_markers(markers(FLEET_WIDE))
    with qtbot.waitSignal(chart.marker_clicked, timeout=2000) as blocker:
        click(chart, pixel(chart, T, dx))
    assert blocker.args == [marker_key(FLEET_WIDE[0])]
    assert points == []  # a marker click is not also a click on the data


def test_a_click_well_away_from_the_line_is_a_point_not_a_marker(qtbot, chart) -> None:
    chart.set_markers(markers(FLEET_WIDE))
    opened: list[str] = []
    chart.marker_clicked.connect(opened.append)
    with qtbot.waitSignal(chart.pointClicked, timeout=2000):
        click(chart, pixel(chart, T, 30))
    assert opened == []


def test_hovering_beside_the_line_highlights_it(qtbot, chart) -> None:
    chart.set_markers(markers(FLEET_WIDE))
    line = chart.markers[marker_key(FLEET_WIDE[0])]
    assert line.cursor().shape() == Qt.CursorShape.PointingHandCursor
    assert line.currentPen.width() == 1
    label = chart._markers.labels[marker_key(FLEET_WIDE[0])]
    assert label.pen().style() == Qt.PenStyle.NoPen
    # pyqtgraph drops mouse moves that follow each other within a few ms: move until seen
    hover(qtbot, chart, pixel(chart, T, 6), lambda: line.currentPen.width() == 3)
    assert label.pen().style() != Qt.PenStyle.NoPen  # its label is outlined too
    hover(qtbot, chart, pixel(chart, T, 60), lambda: line.currentPen.width() == 1)
    assert label.pen().style() == Qt.PenStyle.NoPen


def hover(qtbot, view: TimeSeriesView, at: QPoint, seen: Callable[[], bool]) -> None:
    """Move the pointer over the chart until ``seen``. The move event is sent to the chart's
    viewport itself: ``QTest.mouseMove`` goes through the screen's cursor, and in a full test
    run another test's top-level window can lie under that point and take the move."""
    viewport = view.plot.viewport()
    jiggle = [at, at + QPoint(0, 1)]  # a move to where the pointer already is is dropped

    def moved() -> bool:
        jiggle.reverse()
        local = QPointF(jiggle[0])
        event = QMouseEvent(QEvent.Type.MouseMove, local, viewport.mapToGlobal(local),
                            Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)
        return seen()
    qtbot.waitUntil(moved, timeout=5000)


def test_labels_of_two_changes_one_second_apart_do_not_overlap(qtbot, chart) -> None:
    second = [weight_row("api-3", T + 1, 1, 0, 7)]
    marks = markers([*FLEET_WIDE, *second])
    assert len(marks) == 2
    chart.set_markers(marks)
    rects = [chart._markers.label_rect(key) for key, _, _ in marks]
    assert all(r is not None and r.width() > 20 for r in rects)
    assert not rects[0].intersects(rects[1])
    # Each label opens its own change.
    for (key, _, _), rect in zip(marks, rects):
        with qtbot.waitSignal(chart.marker_clicked, timeout=2000) as blocker:
            click(chart, chart.plot.mapFromScene(rect.center()))
        assert blocker.args == [key]
    # Still apart when the live window slides on and after a resize.
    chart.plot.setXRange(T - 200, T + 100, padding=0)
    chart.resize(700, 400)
    qtbot.waitUntil(lambda: chart.plot.width() < 720, timeout=2000)
    rects = [chart._markers.label_rect(key) for key, _, _ in marks]
    assert all(r is not None for r in rects) and not rects[0].intersects(rects[1])


def test_labels_near_the_right_edge_turn_left_and_a_crowd_is_hidden() -> None:
    placed = place_labels([("a", 950.0, 100.0)], plot_width=1000.0)
    assert placed["a"] is not None and placed["a"].left + 100 <= 950
    # one turned left is not put in a row beside a line whose label there points away
    placed = place_labels([("a", 900.0, 50.0), ("b", 903.0, 200.0)], plot_width=1000.0)
    assert placed == {"a": Placed(906.0, 0), "b": Placed(697.0, 1)}
    crowd = [(str(i), 100.0 + i, 80.0) for i in range(5)]
    placed = place_labels(crowd, plot_width=1000.0, rows=3)
    assert [p.row if p else None for p in placed.values()] == [0, 1, 2, None, None]


def test_markers_go_when_their_changes_go_and_labels_follow_a_grown_action(qtbot,
                                                                            chart) -> None:
    chart.set_markers(markers(FLEET_WIDE[:2]))
    key = marker_key(FLEET_WIDE[0])
    assert chart._markers.labels[key].full.endswith("api-1, api-2")
    chart.set_markers(markers(FLEET_WIDE))  # the third agent's journal arrived later
    assert chart._markers.labels[key].full.endswith("api-1, api-2, api-3")
    chart.set_markers([])
    assert chart.markers == {} and chart._markers.labels == {}


def test_the_heatmap_marker_is_as_easy_to_click(qtbot) -> None:
    view = HeatmapView("heat", "empty")
    qtbot.addWidget(view)
    view.resize(1366, 400)
    view.show()
    qtbot.waitExposed(view)
    t = np.arange(T - 300, T + 1, 5.0)
    bounds = np.array([0.05, 0.1, 0.2, np.inf])
    view.set_heat(t, bounds, np.ones((len(t), len(bounds)), dtype=np.float32))
    view.set_x_window(T - 240, T + 60)
    view.set_markers(markers(FLEET_WIDE))
    cells: list[tuple] = []
    view.cellClicked.connect(lambda *a: cells.append(a))
    with qtbot.waitSignal(view.marker_clicked, timeout=2000) as blocker:
        click(view, pixel(view, T, 6))
    assert blocker.args == [marker_key(FLEET_WIDE[0])] and cells == []
    assert view._markers.label_rect(marker_key(FLEET_WIDE[0])) is not None
