"""Change limit… as a staged rollout on the real window and the demo fleet's real agents
(issue 18): bad staged input reaches no agent; a canary refusing more of the route than the
429-share gate allows is reverted and the other instances are never touched (their journals
say so); a harmless change reaches every instance."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QWidget
from trimtab.app.cli.main import make_tuning
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.limit_share import refused_share
from trimtab.demo.app import DEMO_LIMIT, DEMO_LIMIT_NAME
from trimtab.demo.fleet import DemoFleet
from trimtab.widgets.limit_dialog import LimitDialog

from tests.app.ui.test_tuning_gui import DialogDriver

ROUTE = DEMO_LIMIT["route"]
INSTANCES = ["api-1", "api-2", "api-3"]


@pytest.fixture()
def window(qtbot, fleet: DemoFleet, model: FleetModel) -> Iterator:
    from trimtab.app.ui.window import MainWindow

    # The limit's rows must be in the model before a gate can read them.
    qtbot.waitUntil(lambda: {r.target for r in model.limits if r.limit == DEMO_LIMIT_NAME}
                    >= set(INSTANCES), timeout=30_000)
    window = MainWindow(model, tuning=make_tuning(fleet.write_token, fleet.targets))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.cache.can_write, timeout=15_000)
    yield window
    window.close()


@pytest.fixture()
def control(fleet: DemoFleet) -> Iterator[tuple[ControlClient, list[Agent]]]:
    """A client of our own (not the window's) to read the agents and put the limit back."""
    client = ControlClient(fleet.write_token)
    agents = [Agent.from_target(t) for t in fleet.targets if t.kind == "instance"]
    try:
        yield client, agents
    finally:
        reads = {a: client.read_config(a) for a in agents}
        client.set_limit(agents, DEMO_LIMIT_NAME, DEMO_LIMIT, "test cleanup",
                         {a: r.etag for a, r in reads.items()})
        client.close()


def settings(client: ControlClient, agents: list[Agent]) -> dict[str, tuple[str, float, int]]:
    out = {}
    for agent in agents:
        limit = client.read_config(agent).limits()[DEMO_LIMIT_NAME]
        out[agent.name] = (limit.mode, limit.rate, limit.burst)
    return out


def limit_rows(client: ControlClient, agents: list[Agent], since: float) -> list[JournalRow]:
    rows, errors = client.journal(agents, since=since)
    assert not errors, errors
    return [r for r in rows if DEMO_LIMIT_NAME in f"{r.what} {r.target} {r.new} {r.old}"]


def staged_limit(mode: str, rate: float, burst: int, canary: str, watch: float,
                 refused_pct: float) -> Callable[[QWidget], bool]:
    def handle(widget: QWidget) -> bool:
        if not isinstance(widget, LimitDialog):
            return False
        widget.rate.setValue(rate)
        widget.burst.setValue(burst)
        widget.mode.setCurrentText(mode)
        widget.reason.setText("staged limit test")
        widget.staged.setChecked(True)
        widget.canary.setCurrentText(canary)
        widget.watch.setValue(watch)
        widget.refused_max.setValue(refused_pct)
        widget.err_max.setValue(50.0)  # 5xx are not what this test is about
        assert widget.problem() is None, widget.problem()
        widget.accept()
        return True
    return handle


def test_bad_staged_input_reaches_no_agent(qtbot, window, control) -> None:
    client, agents = control
    before, since = settings(client, agents), time.time()
    seen: list[str] = []

    def bad_then_enter(widget: QWidget) -> bool:
        if not isinstance(widget, LimitDialog):
            return False
        widget.mode.setCurrentText("enforce")
        widget.reason.setText("staged limit test")
        widget.staged.setChecked(True)
        for field, text in (("watch", "2"), ("refused_max", "250"), ("err_max", "-3"),
                            ("refused_max", "5 %")):
            for name in ("watch", "refused_max", "err_max"):  # one bad field at a time
                getattr(widget, name).setValue({"watch": 60, "refused_max": 5,
                                                "err_max": 1}[name])
            getattr(widget, field).setText(text)
            seen.append(widget.blocked.text())
            assert not widget.apply.isEnabled()
            QTest.keyClick(getattr(widget, field).edit, Qt.Key.Key_Return)
            assert widget.isVisible() and widget.choice() is None
        widget.reject()
        return True

    driver = DialogDriver()
    driver.expect(bad_then_enter)
    window.limits.change_requested.emit(DEMO_LIMIT_NAME)
    driver.wait_done(qtbot, 60_000)
    driver.stop()
    assert seen == ["Watch: 2 is out of range: enter from 5 to 3600 s",
                    "429-share gate: 250 is out of range: enter from 0 to 100 %",
                    "error-rate gate: -3 is out of range: enter from 0 to 100 %",
                    "429-share gate: “5 %” is not a number: enter from 0 to 100 %"]
    qtbot.wait(3000)  # anything sent would be applied and journaled by now
    assert window.tuning.rollout is None
    assert settings(client, agents) == before
    assert limit_rows(client, agents, since) == []


def test_a_canary_refusing_over_the_gate_is_reverted_and_the_rest_never_touched(
        qtbot, model, window, control) -> None:
    """Enforcing the demo limit turns away most of the greedy client's requests, about half
    of /search on each instance: far above a 5 % gate."""
    client, agents = control
    since = time.time()
    driver = DialogDriver()
    driver.expect(staged_limit("enforce", DEMO_LIMIT["rate"], DEMO_LIMIT["burst"], "api-2",
                                watch=120, refused_pct=5.0))
    driver.expect(driver.click("OK"))
    window.limits.change_requested.emit(DEMO_LIMIT_NAME)
    driver.wait_done(qtbot, 150_000)
    driver.stop()
    report = driver.texts[-1]
    assert "applied to canary api-2" in report, report
    assert "gate failed on api-2: 429 share" in report, report
    assert "canary reverted automatically" in report, report
    assert window.tuning.rollout is not None and window.tuning.rollout.rollout.state == \
        "rolled_back"
    assert {m for m, _, _ in settings(client, agents).values()} == {"shadow"}
    rows = limit_rows(client, agents, since)
    assert {r.source.name for r in rows} == {"api-2"}, rows  # the rest never touched
    assert len(rows) == 2 and rows[1].reverts == rows[0].id, rows  # the change, its revert
    # The share the gate read is the model's: the limit's refusals on api-2 only.
    assert refused_share(model.limits, ROUTE, DEMO_LIMIT_NAME, "api-1") == 0.0


def test_a_harmless_staged_change_reaches_every_instance(qtbot, window, control) -> None:
    """Enforcing a rate nobody reaches refuses nothing: after the watch, every instance.

    A raised limit judges the greedy key by the new limit at once (a stored time beyond the
    new limit's empty bucket is capped), so nothing is refused after the change.
    """
    client, agents = control
    since = time.time()
    driver = DialogDriver()
    driver.expect(staged_limit("enforce", 100.0, 1000, "api-1", watch=8, refused_pct=5.0))
    driver.expect(driver.click("OK"))
    window.limits.change_requested.emit(DEMO_LIMIT_NAME)
    driver.wait_done(qtbot, 150_000)
    driver.stop()
    report = driver.texts[-1]
    assert "gates held" in report and "applied to api-2, api-3" in report, report
    assert settings(client, agents) == {name: ("enforce", 100.0, 1000) for name in INSTANCES}
    rows = limit_rows(client, agents, since)
    assert sorted(r.source.name for r in rows) == INSTANCES, rows
    assert min(rows, key=lambda r: r.time).source.name == "api-1"  # the canary first
