"""The tuning loop through the real widgets, against the demo fleet's real agents."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.cli.main import make_tuning
from trimtab.app.control.types import Agent
from trimtab.app.model.fleet import FleetModel
from trimtab.demo.fleet import DemoFleet, spawn_demo
from trimtab.widgets.change_dialogs import TtlDialog, WeightsDialog

ROUTE = "/products/{id}"






class DialogDriver:
    """Answers modal dialogs from a timer (they run nested event loops the test cannot see)."""

    def __init__(self) -> None:
        self.handlers: list[Callable[[QWidget], bool]] = []
        self.texts: list[str] = []
        self.problems: list[str] = []
        self._unhandled_since: float | None = None
        self._timer = QTimer()
        self._timer.timeout.connect(self._poll)
        self._timer.start(50)

    def expect(self, handler: Callable[[QWidget], bool]) -> None:
        self.handlers.append(handler)

    def _poll(self) -> None:
        widget = QApplication.activeModalWidget()
        if widget is None:
            self._unhandled_since = None
            return
        try:
            handled = bool(self.handlers) and self.handlers[0](widget)
        except Exception as exc:  # noqa: BLE001 - a failed expectation must not hang the test
            self.problems.append(f"{type(exc).__name__}: {exc}")
            self.handlers.clear()
            handled = False
        if handled:
            self.handlers.pop(0)
            self._unhandled_since = None
            return
        # A dialog nobody expected runs a nested event loop forever: close it, say so.
        self._unhandled_since = self._unhandled_since or time.monotonic()
        if time.monotonic() - self._unhandled_since > 2.0:
            text = widget.text() if isinstance(widget, QMessageBox) else widget.windowTitle()
            self.problems.append(f"unexpected dialog: {text}")
            self.handlers.clear()
            widget.reject()

    def wait_done(self, qtbot, timeout: int = 20_000) -> None:
        qtbot.waitUntil(lambda: not self.handlers, timeout=timeout)
        assert not self.problems, self.problems

    def click(self, button_text: str) -> Callable[[QWidget], bool]:
        """A handler for a message box: remember its text, press the button named so."""
        def handle(widget: QWidget) -> bool:
            if not isinstance(widget, QMessageBox):
                return False
            self.texts.append(widget.text())
            for button in widget.buttons():
                if button.text().replace("&", "") == button_text:
                    button.click()
                    return True
            raise AssertionError(f"no {button_text!r} in {[b.text() for b in widget.buttons()]}")
        return handle

    def stop(self) -> None:
        self._timer.stop()


def ttl_answer(ttl: float, reason: str, canary: str | None = None) -> Callable[[QWidget], bool]:
    def handle(widget: QWidget) -> bool:
        if not isinstance(widget, TtlDialog):
            return False
        widget.ttl.setValue(ttl)
        if canary:
            widget.scope_canary.setChecked(True)
            widget.canary.setCurrentText(canary)
        widget.reason.setText(reason)
        widget.accept()
        return True
    return handle


def mean_between(model: FleetModel, metric: str, key: str, start: float, end: float) -> float:
    t, v = model.snapshot(metric, start, [key])[key]
    chosen = v[(t >= start) & (t <= end) & ~np.isnan(v)]
    assert len(chosen) >= 5, f"too few {metric} points for {key}"
    return float(chosen.mean())


def reset_ttls(fleet: DemoFleet, ttl: float = 10) -> None:
    """Put every instance's TTL for ROUTE back, whatever a test left behind."""
    auth = {"authorization": f"Bearer {fleet.write_token}"}
    for t in fleet.targets:
        if t.kind == "instance":
            base = t.url.removesuffix("/metrics")
            etag = httpx.get(f"{base}/_trimtab/config", headers=auth).headers["etag"]
            httpx.patch(f"{base}/_trimtab/config", headers={**auth, "if-match": etag},
                        json={"routes": {ROUTE: {"ttl": ttl}}, "reason": "test cleanup"})


def ttls(fleet: DemoFleet) -> dict[str, float]:
    auth = {"authorization": f"Bearer {fleet.read_token}"}
    out = {}
    for t in fleet.targets:
        if t.kind == "instance":
            doc = httpx.get(t.url.removesuffix("/metrics") + "/_trimtab/config", headers=auth).json()
            out[t.name] = doc["routes"][ROUTE]["ttl"]
    return out


@pytest.fixture()
def window(qtbot, fleet: DemoFleet, model: FleetModel):
    from trimtab.app.ui.window import MainWindow

    qtbot.waitUntil(lambda: len(model.routes) == 3, timeout=20_000)  # charts have data
    window = MainWindow(model, tuning=make_tuning(fleet.write_token, fleet.targets))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.cache.can_write, timeout=15_000)
    yield window
    window.close()


def test_change_ttl_everywhere_marks_the_charts_and_reverts(qtbot, fleet, model, window) -> None:
    driver = DialogDriver()
    driver.expect(ttl_answer(30, "more hits at peak"))
    driver.expect(driver.click("OK"))
    window.tabs.setCurrentWidget(window.cache)
    window.cache.ttl_requested.emit(ROUTE)
    driver.wait_done(qtbot)
    assert "applied" in driver.texts[-1]
    assert ttls(fleet) == {"api-1": 30.0, "api-2": 30.0, "api-3": 30.0}
    # The journal lists it, and every chart carries its marker.
    qtbot.waitUntil(lambda: any("30" in t for t in window.journal.table.column_texts(4)),
                    timeout=10_000)
    keys = [k for k, r in window.journal_rows.items() if r.reason == "more hits at peak"]
    assert len(keys) == 3
    # one marker for the fleet-wide change (issue 20 item 7), naming the three instances
    assert all(len(set(keys) & set(chart.markers)) == 1 for chart in window.charts)
    window.show_change_card(keys[0])
    metrics = window.change_card.table.column_texts(0)
    assert f"{ROUTE} p95" in metrics and f"{ROUTE} hit_ratio" in metrics
    # Revert everything since just before the change, from the journal page.
    window.journal.since.setDateTime(window.journal.since.dateTime().fromSecsSinceEpoch(
        int(window.journal_rows[keys[0]].time) - 1))
    driver.expect(driver.click("Yes"))
    driver.expect(driver.click("OK"))
    window.journal.revert_since()
    driver.wait_done(qtbot)
    assert ttls(fleet) == {"api-1": 10.0, "api-2": 10.0, "api-3": 10.0}
    driver.stop()


def balancer_weights(fleet: DemoFleet) -> dict[str, int]:
    auth = {"authorization": f"Bearer {fleet.read_token}"}
    doc = httpx.get(f"{fleet.balancer_url}/_trimtab/balancer", headers=auth).json()
    return {s["name"]: s["weight"] for s in doc["servers"]}


def type_then_enter(field_of: Callable[[Any], Any], dialog_type: type,
                    bad: Sequence[str], seen: list[tuple[str, bool, bool, str]],
                    reason: str = "") -> Callable[[QWidget], bool]:
    """Type each bad value into the real dialog key by key and press Enter; record whether the
    dialog stayed open, whether Apply was enabled and the error shown; then cancel."""
    def handle(widget: QWidget) -> bool:
        if not isinstance(widget, dialog_type):
            return False
        dialog: Any = widget
        if reason:
            QTest.keyClicks(dialog.reason, reason)
        field = field_of(dialog)
        for text in bad:
            field.edit.selectAll()
            QTest.keyClick(field.edit, Qt.Key.Key_Backspace)
            QTest.keyClicks(field.edit, text)
            QTest.keyClick(field.edit, Qt.Key.Key_Return)
            seen.append((text, dialog.isVisible(), dialog.apply.isEnabled(), field.error.text()))
        dialog.reject()
        return True
    return handle


def test_typed_bad_ttls_and_weights_reach_no_agent(qtbot, fleet, window) -> None:
    """Issue 20: "-5" and 99999999 once applied 9999 s everywhere, 9000 became weight 90."""
    before_ttls, before_weights = ttls(fleet), balancer_weights(fleet)
    driver = DialogDriver()
    seen_ttl: list[tuple[str, bool, bool, str]] = []
    seen_weights: list[tuple[str, bool, bool, str]] = []
    driver.expect(type_then_enter(lambda d: d.ttl, TtlDialog, ["-5", "99999999", "-", ""],
                                  seen_ttl, reason="typo test"))
    window.cache.ttl_requested.emit(ROUTE)
    driver.wait_done(qtbot)
    driver.expect(type_then_enter(lambda d: d.spins["api-1"], WeightsDialog,
                                  ["9000", "-1"], seen_weights, reason="typo test"))
    window.balancer.weights_requested.emit()
    driver.wait_done(qtbot)
    try:
        assert [s[:3] for s in seen_ttl] == [(t, True, False)
                                             for t in ("-5", "99999999", "-", "")]
        assert all("from 0 to 86400 s" in s[3] for s in seen_ttl), seen_ttl
        assert [s[:3] for s in seen_weights] == [("9000", True, False), ("-1", True, False)]
        assert all("from 0 to 256" in s[3] for s in seen_weights), seen_weights
        # Anything sent by mistake would have finished once the runner is idle (and its report
        # box would be closed by the driver and listed as a problem).
        qtbot.waitUntil(lambda: window.tuning.runner.busy == 0, timeout=10_000)
        assert ttls(fleet) == before_ttls and balancer_weights(fleet) == before_weights
        assert not any(r.reason == "typo test" for r in window.journal_rows.values())
        assert not driver.problems, driver.problems
    finally:
        driver.stop()


def test_stale_etag_shows_the_other_change_and_overwrites_nothing(qtbot, fleet, window) -> None:
    driver = DialogDriver()
    canary = next(t for t in fleet.targets if t.name == "api-2").url.removesuffix("/metrics")
    auth = {"authorization": f"Bearer {fleet.write_token}"}

    def someone_else_then_answer(widget: QWidget) -> bool:
        if not isinstance(widget, TtlDialog):
            return False
        etag = httpx.get(f"{canary}/_trimtab/config", headers=auth).headers["etag"]
        httpx.patch(f"{canary}/_trimtab/config", headers={**auth, "if-match": etag},
                    json={"routes": {ROUTE: {"ttl": 12}}, "reason": "other operator"})
        return ttl_answer(40, "mine")(widget)

    driver.expect(someone_else_then_answer)
    driver.expect(driver.click("Keep as is"))
    window.cache.ttl_requested.emit(ROUTE)
    driver.wait_done(qtbot)
    report = driver.texts[-1]
    assert "api-2: conflict" in report and "10.0 → 12" in report.replace("10 →", "10.0 →")
    assert ttls(fleet)["api-2"] == 12.0  # theirs kept, not silently overwritten
    reset_ttls(fleet)  # put the fleet back for the other tests
    driver.stop()


def test_an_instance_lost_midway_is_reported_and_the_rest_rolled_back(qtbot, fleet,
                                                                      model) -> None:
    from trimtab.app.ui.window import MainWindow

    port = free_port()
    env = {"TRIMTAB_TOKENS": f"operator:write:{fleet.write_token}"}
    doomed = spawn_demo(["instance", "--name", "api-x", "--port", str(port)], env=env)
    wait_http(f"http://127.0.0.1:{port}/metrics", doomed)
    tuning = make_tuning(fleet.write_token, fleet.targets)
    tuning.instances.append(Agent("api-x", f"http://127.0.0.1:{port}"))
    window = MainWindow(model, tuning=tuning)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.cache.can_write, timeout=15_000)
    driver = DialogDriver()

    def lose_one_then_apply(widget: QWidget) -> bool:
        if not isinstance(widget, TtlDialog):
            return False
        assert "api-x" in widget.current  # it answered when the dialog opened
        stop_all([doomed])  # ... and dies before the change is sent
        return ttl_answer(25, "partial")(widget)

    driver.expect(lose_one_then_apply)
    driver.expect(driver.click("Roll back what was applied"))
    driver.expect(driver.click("OK"))
    try:
        window.cache.ttl_requested.emit(ROUTE)
        driver.wait_done(qtbot, 30_000)
    finally:
        stop_all([doomed])
        driver.stop()
    first, rollback = driver.texts[-2], driver.texts[-1]
    assert "api-x: unreachable" in first and "nothing changed there" in first
    assert all(f"api-{n}: applied" in first for n in (1, 2, 3))
    assert "applied" in rollback
    assert ttls(fleet) == {"api-1": 10.0, "api-2": 10.0, "api-3": 10.0}
    window.close()


def test_read_only_token_disables_the_controls_and_says_why(qtbot, fleet, model) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model, tuning=make_tuning(fleet.read_token, fleet.targets))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: "read" in window.cache.change_button.toolTip(), timeout=15_000)
    assert not window.cache.change_button.isEnabled()
    assert not window.balancer.change_button.isEnabled()
    assert not window.journal.revert_button.isEnabled()
    window.close()


def wait_for_history(qtbot, model: FleetModel, metric: str, key: str, seconds: float = 25) -> None:
    """Enough points before a change to compare against."""
    def enough() -> None:
        t, _ = model.snapshot(metric, time.time() - seconds, [key]).get(key, ((), ()))
        assert len(t) >= seconds * 0.8
    qtbot.waitUntil(enough, timeout=int(seconds * 1000) + 30_000)


@pytest.mark.slow
def test_lowering_the_slow_instance_weight_moves_the_share(qtbot, fleet, model, window) -> None:
    wait_for_history(qtbot, model, "p95", "/search")
    driver = DialogDriver()

    def weights(widget: QWidget) -> bool:
        if not isinstance(widget, WeightsDialog):
            return False
        widget.spins["api-3"].setValue(0)
        widget.reason.setText("api-3 is slow")
        assert widget.shares["api-3"].text() == "0.0 %"  # the preview, before applying
        assert widget.shares["api-1"].text() == "50.0 %"
        widget.accept()
        return True

    driver.expect(weights)
    driver.expect(driver.click("OK"))
    window.balancer.weights_requested.emit()
    driver.wait_done(qtbot)
    assert "applied" in driver.texts[-1]
    changed_at = time.time()

    def api3_share_dropped() -> None:
        _, v = model.snapshot("share", changed_at + 11)["api-3"]
        assert len(v) >= 2 and (v < 0.05).all()

    try:
        qtbot.waitUntil(api3_share_dropped, timeout=30_000)
        # ... and the fleet's p95 of the slow route falls: the slow instance no longer serves.
        qtbot.wait(10_000)
        before = mean_between(model, "p95", "/search", changed_at - 25, changed_at - 1)
        after = mean_between(model, "p95", "/search", changed_at + 11, time.time())
        print(f"/search p95 before {before * 1000:.0f} ms, after {after * 1000:.0f} ms")
        # Direction only: how far it falls depends on the host's load (api-1 and api-2 queue
        # more once they take api-3's share), which CI machines do not promise.
        assert after < before, (before, after)
    finally:
        auth = {"authorization": f"Bearer {fleet.write_token}"}
        etag = httpx.get(f"{fleet.balancer_url}/_trimtab/balancer", headers=auth).headers["etag"]
        httpx.patch(f"{fleet.balancer_url}/_trimtab/balancer", headers={**auth, "if-match": etag},
                    json={"servers": {"api-3": {"weight": 1}}, "reason": "test cleanup"})
    driver.stop()


@pytest.mark.slow
def test_raising_the_ttl_raises_the_hit_ratio(qtbot, fleet, model, window) -> None:
    wait_for_history(qtbot, model, "hit_ratio", ROUTE)
    driver = DialogDriver()
    driver.expect(ttl_answer(300, "cache longer"))
    driver.expect(driver.click("OK"))
    window.cache.ttl_requested.emit(ROUTE)
    driver.wait_done(qtbot)
    changed_at = time.time()
    try:
        # Old entries keep their 10 s expiry; new ones live 300 s, so the ratio climbs as
        # the popular products stay cached. Compare the settled tail with before.
        qtbot.wait(40_000)
        before = mean_between(model, "hit_ratio", ROUTE, changed_at - 20, changed_at - 1)
        after = mean_between(model, "hit_ratio", ROUTE, changed_at + 25, time.time())
        print(f"hit ratio before {before:.3f}, after {after:.3f}")
        # Direction only: how much it climbs depends on how much traffic the loaded host lets
        # the demo's generator send in the 40 s (once 0.674 -> 0.693 at load 8).
        assert after > before, (before, after)
    finally:
        reset_ttls(fleet)
        driver.stop()


def test_invalidate_a_route_everywhere(qtbot, fleet, window) -> None:
    from PySide6.QtWidgets import QInputDialog

    driver = DialogDriver()

    def reason(widget: QWidget) -> bool:
        if not isinstance(widget, QInputDialog):
            return False
        assert ROUTE in widget.labelText()
        widget.setTextValue("stale prices")
        widget.accept()
        return True

    driver.expect(reason)
    driver.expect(driver.click("OK"))
    window.cache.invalidate_requested.emit(ROUTE)
    driver.wait_done(qtbot)
    driver.stop()
    report = driver.texts[-1]
    assert all(f"api-{n}: applied" in report for n in (1, 2, 3))
    qtbot.waitUntil(lambda: any(r.reason == "stale prices" for r in window.journal_rows.values())
                    or any("stale prices" in t for t in window.journal.table.column_texts(5)),
                    timeout=10_000)


def test_closing_the_window_stops_every_control_call(qtbot, fleet, model) -> None:
    from trimtab.app.ui.window import MainWindow

    window = MainWindow(model, tuning=make_tuning(fleet.write_token, fleet.targets))
    qtbot.addWidget(window)
    window.show()
    window.close()
    window.tuning.refresh_journal()  # a late timer or click after close must be harmless
    qtbot.wait(3500)  # past the journal poll period: no call may be scheduled
    assert window.tuning.runner.busy == 0


def staged_answer(ttl: float, canary: str, watch: int, p95_max_ms: int) -> Callable[[QWidget], bool]:
    def handle(widget: QWidget) -> bool:
        if not isinstance(widget, TtlDialog):
            return False
        widget.ttl.setValue(ttl)
        widget.staged.setChecked(True)
        widget.canary.setCurrentText(canary)
        widget.watch.setValue(watch)
        widget.p95_max.setValue(p95_max_ms)
        widget.err_max.setValue(50.0)
        widget.reason.setText("staged")
        widget.accept()
        return True
    return handle


def test_staged_rollout_reverts_the_canary_when_a_gate_fails(qtbot, fleet, window) -> None:
    driver = DialogDriver()
    driver.expect(staged_answer(45, "api-2", watch=30, p95_max_ms=1))  # 1 ms: bound to fail
    driver.expect(driver.click("OK"))
    window.cache.ttl_requested.emit(ROUTE)
    driver.wait_done(qtbot, 40_000)
    driver.stop()
    report = driver.texts[-1]
    assert "gate failed on api-2" in report and "canary reverted automatically" in report
    assert ttls(fleet) == {"api-1": 10.0, "api-2": 10.0, "api-3": 10.0}


def test_staged_rollout_applies_to_the_rest_when_the_gates_hold(qtbot, fleet, window) -> None:
    driver = DialogDriver()
    driver.expect(staged_answer(20, "api-1", watch=8, p95_max_ms=60_000))
    driver.expect(driver.click("OK"))
    window.cache.ttl_requested.emit(ROUTE)
    try:
        driver.wait_done(qtbot, 60_000)
        report = driver.texts[-1]
        assert "gates held" in report and "applied to api-2, api-3" in report
        assert ttls(fleet) == {"api-1": 20.0, "api-2": 20.0, "api-3": 20.0}
    finally:
        driver.stop()
        reset_ttls(fleet)


def test_staged_rollout_reverts_a_canary_burning_its_slo(qtbot, fleet, model, window,
                                                         tmp_path) -> None:
    """An SLO on the route gates the canary on its own burn rate (issue 19): a promise no
    instance keeps (99.9 % within 1 ms) burns ~1000× the budget, so the canary is reverted
    although the p95 and error gates hold."""
    from trimtab.app.slo.definition import SLO
    from trimtab.app.store.store import Store

    store = Store(tmp_path / "history.sqlite")
    model.store = store
    try:
        window.slo.add(SLO("products-instant", ROUTE, "latency", 0.999, threshold_s=0.001))
        qtbot.waitUntil(lambda: (store.last_cycle() or (0, 0.0))[0] > 12, timeout=30_000)
        assert window.canary_burn(ROUTE, "api-2") > 14.4
        assert window.canary_burn("/orders", "api-2") is None  # no SLO there: no gate
        driver = DialogDriver()
        driver.expect(staged_answer(45, "api-2", watch=30, p95_max_ms=60_000))
        driver.expect(driver.click("OK"))
        window.cache.ttl_requested.emit(ROUTE)
        driver.wait_done(qtbot, 40_000)
        driver.stop()
        report = driver.texts[-1]
        assert "gate failed on api-2: SLO burn rate" in report and "> 14.4×" in report
        assert ttls(fleet) == {"api-1": 10.0, "api-2": 10.0, "api-3": 10.0}
    finally:
        model.store = None
        store.close()
        reset_ttls(fleet)
