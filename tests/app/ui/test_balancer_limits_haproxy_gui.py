"""What the HAProxy adapter cannot change live, refused in the cockpit's own dialogs (issue 18).

A real HAProxy 2.6 with one enforced limit read from a map (the fixture of
``tests/agent/balance/test_haproxy_limits.py``), its agent (``python -m trimtab.agent haproxy
--limits-map ...``), a scrape engine following the agent's limits, and the real window. A rate
off ``burst = rate × period`` and a removal are refused by the adapter (422): the Change
dialog opens again with the values as typed and the adapter's words, the removal's report says
them, and the map is what it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PySide6.QtWidgets import QInputDialog, QWidget
from trimtab.app.cli.main import make_tuning
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget
from trimtab.widgets.limit_dialog import LimitDialog

from tests.agent.balance.test_balancer_limits import Upstream, upstreams  # noqa: F401
from tests.agent.balance.test_haproxy_limits import READ, TOKENS, Fleet
from tests.app.ui.test_tuning_gui import DialogDriver

WRITE_TOKEN = "w-secret-8"  # of TOKENS
NAME, LIMIT = "haproxy", "per-ip"


def haproxy_map(fleet: Fleet) -> str:
    return fleet.client.command(f"show map {fleet.map}")


def journal(url: str) -> list[dict]:
    return httpx.get(f"{url}/_trimtab/balancer/journal", headers=READ, timeout=10).json()["entries"]


@pytest.fixture
def cockpit(qtbot, tmp_path: Path, upstreams: list[Upstream],  # noqa: F811
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Fleet, str, object]]:
    from trimtab.app.ui.window import MainWindow

    monkeypatch.setenv("TRIMTAB_TOKENS", TOKENS)
    fleet = Fleet(tmp_path, upstreams)
    engine = window = None
    try:
        agent = fleet.agent()
        # HAProxy's own exporter is not configured here: the target is down, its limits
        # still come from the agent (control_url).
        target = ScrapeTarget(NAME, f"{fleet.url}/no-exporter", "balancer", token=WRITE_TOKEN,
                              control_url=agent)
        model = FleetModel()
        engine = ScrapeEngine([target], model.ingest, on_cycle=model.tick,
                              on_balancer_limits=model.ingest_balancer_limits).start()
        window = MainWindow(model, tuning=make_tuning(WRITE_TOKEN, [target]))
        qtbot.addWidget(window)
        window.show()
        window.tabs.setCurrentWidget(window.limits)
        qtbot.waitUntil(lambda: window.limits.can_write, timeout=30_000)
        qtbot.waitUntil(lambda: window.limits.select_balancer_limit(NAME, LIMIT),
                        timeout=30_000)
        yield fleet, agent, window
    finally:
        if window is not None:
            window.close()
        if engine is not None:
            engine.stop()
        fleet.close()


def test_a_rate_off_the_period_is_refused_in_the_dialog_and_the_map_kept(
        qtbot, cockpit) -> None:
    fleet, agent, window = cockpit
    line = next(line for line in window.limits.lines if line.at_balancer)
    assert (line.instance, line.name, line.key, line.burst, line.mode) == \
        (NAME, LIMIT, "ip", 3, "enforce")
    before, refusals = haproxy_map(fleet), []

    def off_the_period(dialog: QWidget) -> bool:
        if not isinstance(dialog, LimitDialog):
            return False
        assert dialog.at_balancer and not dialog.refusal.isVisible()
        dialog.rate.setText("0.01")  # burst stays 3: 10 per 1000 s is not 3 per 1000 s
        dialog.reason.setText("looser at the edge")
        assert dialog.problem() is None, dialog.problem()
        dialog.accept()
        return True

    def refused(dialog: QWidget) -> bool:
        if not isinstance(dialog, LimitDialog) or not dialog.refusal.isVisible():
            return False
        refusals.append(dialog.refusal.text())
        assert dialog.rate.edit.text() == "0.01"  # as typed, to be corrected
        dialog.rate.setText("0.02")  # any edit hides the old refusal
        assert not dialog.refusal.isVisible()
        dialog.reject()
        return True

    driver = DialogDriver()
    driver.expect(off_the_period)
    driver.expect(refused)
    window.limits.change_button.click()
    driver.wait_done(qtbot, timeout=60_000)
    driver.stop()
    assert "Refused, nothing changed" in refusals[0], refusals
    assert "burst = rate × 1000" in refusals[0], refusals
    assert haproxy_map(fleet) == before
    entries = journal(agent)
    assert entries and {e["result"] for e in entries} == {"refused"}, entries


def test_removing_a_limit_haproxy_keeps_in_its_config_is_refused_with_its_reason(
        qtbot, cockpit) -> None:
    fleet, agent, window = cockpit
    before = haproxy_map(fleet)

    def reason(widget: QWidget) -> bool:
        if not isinstance(widget, QInputDialog):
            return False
        widget.setTextValue("not needed")
        widget.accept()
        return True

    driver = DialogDriver()
    driver.expect(reason)
    driver.expect(driver.click("Keep as is"))
    window.limits.remove_button.click()
    driver.wait_done(qtbot, timeout=60_000)
    driver.stop()
    assert f"{NAME}: refused" in driver.texts[-1], driver.texts
    assert "cannot delete a limit at runtime" in driver.texts[-1], driver.texts
    assert haproxy_map(fleet) == before
    assert {e["result"] for e in journal(agent)} == {"refused"}
