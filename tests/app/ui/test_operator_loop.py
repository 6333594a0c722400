"""The operator's minute on the demo (issue 20's goal), driven through the real window.

From start, the Overview names the slowest route and the slowest backend in words; after a
weight change away from the slow backend (made in the Weights dialog once the judge has a
before window to compare with, see HISTORY), a click beside the
change's marker opens the card, which gives a stable "better" verdict for the slow route's
p95. The two timings are measured and printed (a loaded machine moves them; CI is not a
stopwatch); only the outcomes are asserted.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QWidget
from pytestqt.exceptions import TimeoutError as QtTimeout
from trimtab.app.cli.main import make_tuning, start_collection
from trimtab.app.model.fleet import FleetModel
from trimtab.app.slo.definition import SLO
from trimtab.app.ui.window import MainWindow
from trimtab.demo.fleet import INSTANCE_SLOWNESS, DemoFleet
from trimtab.widgets.change_dialogs import WeightsDialog

from tests.app.ui.test_tuning_gui import DialogDriver

SLOW_BACKEND = max(INSTANCE_SLOWNESS, key=INSTANCE_SLOWNESS.__getitem__)  # api-3
REASON = f"{SLOW_BACKEND} is slow"
STABLE_FOR = 15.0  # seconds the verdict must hold once given
# The judge splits the 120 s before a change into 6 parts and needs 3 of them to hold data
# (its normal spread): a change made sooner after the first data is never judged. With only
# 65 s, the demo's warm-up made the normal band of /search p95 129–289 ms and a 27 % drop
# read "within the normal spread" (a loaded machine, load 10 on 2 cores). So the operator
# here changes the weights once the slow route has a whole before window past the warm-up.
HISTORY = 135.0


class Loop:
    """A fresh demo fleet, its collector and the cockpit window, started the way
    ``trimtab demo`` starts them; ``started`` is the monotonic time the start began."""

    def __init__(self, qtbot) -> None:
        self.started = time.monotonic()
        self.fleet = DemoFleet(rps=100.0, log_dir=tempfile.mkdtemp(prefix="trimtab-test-loop-"))
        self.engine = None
        self.window: MainWindow | None = None
        self.fleet.start()
        self.model = FleetModel()
        self.engine = start_collection(self.fleet, self.model)
        self.window = MainWindow(self.model,
                                 tuning=make_tuning(self.fleet.write_token, self.fleet.targets))
        qtbot.addWidget(self.window)
        self.window.resize(1366, 768)
        self.window.show()
        self.window.tabs.setCurrentWidget(self.window.overview)

    def stop(self) -> None:
        if self.window is not None:
            self.window.close()
        if self.engine is not None:
            self.engine.stop()
        self.fleet.stop()


@pytest.fixture
def loop(qtbot) -> Iterator[Loop]:
    started = Loop.__new__(Loop)
    started.window, started.engine = None, None
    try:
        started.__init__(qtbot)
        yield started
    finally:
        started.stop()


def named(window: MainWindow) -> tuple[str, str] | None:
    """(route, backend) the headline names in words, once it names both."""
    facts = window.overview.headline_facts()
    text = window.overview.headline.text()
    if facts.route is None or not facts.stands_out or facts.backend is None:
        return None
    route, backend = facts.route.route, facts.backend.name
    if f"Slowest route: {route}" in text and f"Backend {backend} stands out" in text:
        return route, backend
    return None


def change_weights_away_from(qtbot, window: MainWindow, backend: str) -> None:
    """What the operator does: Balancer → Change weights…, the slow one to 0, a reason."""
    driver = DialogDriver()

    def answer(widget: QWidget) -> bool:
        if not isinstance(widget, WeightsDialog):
            return False
        widget.spins[backend].setValue(0)
        widget.reason.setText(REASON)
        widget.accept()
        return True

    driver.expect(answer)
    driver.expect(driver.click("OK"))
    qtbot.waitUntil(lambda: window.balancer.change_button.isEnabled(), timeout=30_000)
    window.tabs.setCurrentWidget(window.balancer)
    window.balancer.weights_requested.emit()
    try:
        driver.wait_done(qtbot, timeout=30_000)
    finally:
        driver.stop()
    assert "applied" in driver.texts[-1], driver.texts


def click_marker(qtbot, window: MainWindow, key: str) -> None:
    """Click 6 px right of the change's marker on the Overview's latency chart."""
    window.tabs.setCurrentWidget(window.overview)
    chart = window.overview.latency
    qtbot.waitUntil(lambda: key in chart.markers and chart.markers[key].isVisible(),
                    timeout=15_000)
    vb = chart.plot.getPlotItem().getViewBox()
    clicked: list[object] = []

    def record(which: object) -> None:
        clicked.append(which)

    chart.marker_clicked.connect(record)
    # The live time axis scrolls, and the first refresh after the tab is shown can move the
    # view by seconds: a position taken before that refresh missed (a CI run failed so). The
    # position is taken again just before each click, and the click is tried again.
    try:
        for _ in range(5):
            qtbot.wait(300)  # let a pending refresh move the view first
            x = vb.mapViewToScene(QPointF(chart.markers[key].value(), 0)).x() + 6
            at = chart.plot.mapFromScene(QPointF(x, vb.sceneBoundingRect().center().y()))
            QTest.mouseClick(chart.plot.viewport(), Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier, QPoint(at))
            try:
                qtbot.waitUntil(lambda: bool(clicked), timeout=2_000)
                break
            except QtTimeout:
                continue
    finally:
        chart.marker_clicked.disconnect(record)
    assert clicked == [key], clicked


def verdict(window: MainWindow, metric: str) -> str:
    table = window.change_card.table
    for name, label in zip(table.column_texts(0), table.column_texts(5)):
        if name == metric:
            return label
    return ""


def card_rows(window: MainWindow) -> list[tuple[str, ...]]:
    table = window.change_card.table
    return list(zip(*(table.column_texts(i) for i in range(7))))


@pytest.mark.slow
def test_the_operators_minute_on_the_demo(qtbot, loop: Loop) -> None:
    window = loop.window
    assert window is not None
    wrong: list[tuple[float, tuple[str, str]]] = []  # what it named before it named api-3

    def names_the_slow_backend() -> bool:
        found = named(window)
        if found is not None and found[1] != SLOW_BACKEND and found not in [w for _, w in wrong]:
            wrong.append((time.monotonic() - loop.started, found))
        return found is not None and found[1] == SLOW_BACKEND

    qtbot.waitUntil(names_the_slow_backend, timeout=120_000)
    to_named = time.monotonic() - loop.started
    route, backend = named(window) or ("", "")
    print(f"\noperator loop: the Overview named the slowest route ({route}) and backend "
          f"({backend}) {to_named:.1f} s after start (goal: 10 s)")
    for at, (other_route, other_backend) in wrong:
        print(f"operator loop: before that, at {at:.1f} s, it named {other_route} and "
              f"{other_backend}")

    # The promise the operator keeps on that route (issue 19): 90 % within 108 ms, a bucket
    # bound. Its live burn is judged on the card beside the p95.
    slo = SLO("slow-route-fast", route, "latency", 0.9, threshold_s=0.10842)
    window.slo.add(slo)

    def history() -> float:
        since = time.time() - HISTORY - 30
        t, _ = loop.model.snapshot("p95", since, [route]).get(route, ((), ()))
        return time.time() - float(t[0]) if len(t) else 0.0

    qtbot.waitUntil(lambda: history() >= HISTORY, timeout=200_000)
    change_weights_away_from(qtbot, window, backend)
    changed = time.monotonic()
    print(f"operator loop: weights changed {changed - loop.started:.1f} s after start "
          f"({HISTORY:.0f} s of {route} history first, for the judge's normal spread)")
    qtbot.waitUntil(lambda: any(r.reason == REASON for r in window.journal_rows.values()),
                    timeout=30_000)
    key = next(k for k, r in sorted(window.journal_rows.items(), key=lambda kr: kr[1].time)
               if r.reason == REASON)
    click_marker(qtbot, window, key)
    assert window.change_card.isVisible() and window.change_card_key == key

    metric = f"{route} p95"
    try:
        qtbot.waitUntil(lambda: verdict(window, metric).startswith("better"), timeout=180_000)
    except QtTimeout:
        pytest.fail(f"no 'better' for {metric}: {window.change_card.subtitle.text()} "
                    f"{card_rows(window)}")
    to_better = time.monotonic() - changed
    print(f"operator loop: {[r for r in card_rows(window) if r[0] == metric]}")
    print(f"operator loop: the card said '{verdict(window, metric)}' for {metric} "
          f"{to_better:.1f} s after the weight change (goal: 60 s)")

    # Stable: it keeps saying so while the card updates live.
    seen: list[str] = []
    held_until = time.monotonic() + STABLE_FOR
    version = window.change_card_version
    while time.monotonic() < held_until:
        qtbot.wait(500)
        seen.append(verdict(window, metric))
        if not seen[-1].startswith("better"):
            print(f"operator loop: at +{time.monotonic() - changed:.1f} s the card says "
                  f"{[r for r in card_rows(window) if r[0] == metric]}; "
                  f"{window.change_card.subtitle.text()}")
            break
    assert window.change_card_version != version  # the card did refresh meanwhile
    assert seen and all(v.startswith("better") for v in seen), seen

    # The SLO's burn falls on the same card: the slow backend was burning most of the budget.
    burn = f"{slo.name} burn"
    try:
        qtbot.waitUntil(lambda: verdict(window, burn).startswith("better"), timeout=120_000)
    except QtTimeout:
        pytest.fail(f"no 'better' for {burn}: {card_rows(window)}")
    print(f"operator loop: {[r for r in card_rows(window) if r[0] == burn]}")
    shots = os.environ.get("TRIMTAB_SHOT_DIR")  # pictures of the card for the docs, on request
    if shots:
        window.change_card.grab().save(os.path.join(shots, "verdict-card.png"))
        window.grab().save(os.path.join(shots, "verdict-window.png"))
