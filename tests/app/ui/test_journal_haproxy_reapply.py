"""Journal entries the HAProxy adapter cannot set back are never offered an undo (issue 18).

A real HAProxy 2.6 with one enforced limit read from a map and its agent (the fixture of
``tests/agent/balance/test_haproxy_limits.py``). The operator sets the limit's mode to off;
HAProxy reloads (the map file is read again: mode enforce) and the agent re-applies off,
journaled with HAProxy's map values (``{"mode": "2"}`` → ``{"mode": 0}``). Reverting that
entry is refused by the agent (409, then 422 when forced). On the Journal page its "Revert
selected change" is disabled and says why; "Revert everything since" says it skips it and
undoes the operator's change, sending nothing for the re-apply.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from trimtab.app.cli.main import make_tuning
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import APPLIED, SKIPPED, Agent, JournalRow
from trimtab.app.ui.pages.journal import JournalPage
from trimtab.collectors.scrape import ScrapeTarget

from tests.agent.balance.test_balancer_limits import Upstream, upstreams  # noqa: F401
from tests.agent.balance.test_haproxy_limits import READ, Fleet, fleet, patch  # noqa: F401
from tests.app.ui.test_tuning_gui import DialogDriver
from tests.support import poll

WRITE_TOKEN = "w-secret-8"  # of test_haproxy_limits.TOKENS
REASON = "quiet the edge for the migration"


def reload_haproxy(fleet: Fleet) -> None:  # noqa: F811
    """SIGUSR2 until a new worker answers (the master may not have its handler yet)."""
    old = fleet.client.show_info()["Pid"]
    for _ in range(20):
        fleet.haproxy.send_signal(signal.SIGUSR2)
        pid = poll(lambda: fleet.client.show_info().get("Pid") if fleet._answers() else None,
                   lambda p: p not in (None, old), timeout=2)
        if pid not in (None, old):
            return
    raise AssertionError("haproxy did not reload")


def entries(url: str) -> list[dict]:
    return httpx.get(f"{url}/_trimtab/balancer/journal", headers=READ,
                     timeout=10).json()["entries"]


@pytest.fixture
def reapplied(fleet: Fleet) -> Iterator[tuple[Fleet, Agent, float]]:  # noqa: F811
    """The operator's mode change and the agent's re-apply of it after a reload."""
    since = time.time() - 1
    url = fleet.agent()
    assert patch(url, {"per-ip": {"mode": "off"}}).status_code == 200
    reload_haproxy(fleet)
    poll(lambda: [e for e in entries(url) if e["who"] == "trimtab-agent"], bool, timeout=30)
    assert "per-ip.mode 0" in fleet.client.command(f"show map {fleet.map}")
    yield fleet, Agent("haproxy", url, "balancer"), since


def test_the_reapply_entry_is_refused_by_the_agent_and_read_as_not_revertible(
        reapplied) -> None:
    _, agent, _ = reapplied
    with ControlClient(WRITE_TOKEN) as client:
        rows, errors = client.journal([agent])
        assert not errors
        change, again = sorted(rows, key=lambda r: r.id)
        assert (change.who, again.who) == ("admin", "trimtab-agent")
        # What the agent answers when asked to set the re-apply back, forced or not.
        assert [client.revert(again, "try", force).http_status for force in (False, True)] \
            == [409, 422]
    assert change.revertible and not change.not_revertible
    assert not again.revertible
    assert "HAProxy map values" in again.not_revertible and "422" in again.not_revertible
    assert "mode '2' → 0" in again.not_revertible


def _row(rows: list[JournalRow], who: str) -> JournalRow:
    return next(r for r in rows if r.who == who and r.result == "accepted")


def test_the_journal_page_disables_its_revert_and_revert_since_skips_it(
        qtbot, reapplied) -> None:
    haproxy, agent, since = reapplied
    before = entries(agent.base_url)
    target = ScrapeTarget("haproxy", f"{haproxy.url}/no-exporter", "balancer", token=WRITE_TOKEN,
                          control_url=agent.base_url)
    tuning = make_tuning(WRITE_TOKEN, [target])
    page = JournalPage(tuning)
    qtbot.addWidget(page)
    driver = DialogDriver()
    try:
        page.set_write_access(True, "")
        with ControlClient(WRITE_TOKEN) as client:
            rows, _ = client.journal([agent])
        page.show_rows(rows)
        reapply, change = _row(rows, "trimtab-agent"), _row(rows, "admin")
        assert page.table.select_key(f"haproxy#{reapply.id}")
        assert not page.revert_button.isEnabled()
        tip = page.revert_button.toolTip()
        assert tip.startswith("Disabled: this change cannot be undone") and "422" in tip, tip
        assert page.table.select_key(f"haproxy#{change.id}")
        assert page.revert_button.isEnabled() and page.revert_button.toolTip() == ""
        page.set_write_access(False, "read-only token")  # no write access says that first
        assert page.revert_button.toolTip() == "Disabled: read-only token"
        page.set_write_access(True, "")
        # Revert everything since: the question says what is skipped, the report too.
        page.since.setDateTime(page.since.dateTime().fromSecsSinceEpoch(int(since)))
        driver.expect(driver.click("Yes"))
        driver.expect(driver.click("OK"))
        page.revert_since()
        driver.wait_done(qtbot, timeout=60_000)
    finally:
        driver.stop()
        tuning.close()
    question, report = driver.texts
    assert "1 of them cannot be undone and will be skipped" in question, question
    assert f"haproxy (haproxy/be) #{reapply.id}: the balancer re-applied" in question, question
    assert f"#{reapply.id} limits.per-ip: {SKIPPED} — not undone: the balancer re-applied" \
        in report, report
    assert f"#{change.id} limits.per-ip: {APPLIED}" in report, report
    # The operator's change is undone (enforce again); nothing was sent for the re-apply.
    assert "per-ip.mode 2" in haproxy.client.command(f"show map {haproxy.map}")
    new = entries(agent.base_url)[len(before):]
    assert [(e["result"], e["reverts"]) for e in new] == [("accepted", change.id)], new
