"""The balancer's own rate limits in the cockpit (issue 18): a real built-in balancer process
(``python -m trimtab.agent balance --limit ...``, one limit in shadow) in front of a real
upstream that counts what reaches it, scraped by a real scrape engine into the model, shown
on the real window's Limits page and changed through its dialog.

Bad input first: a value the dialog refuses reaches nothing, and a value the balancer
refuses is journaled there as refused and changes nothing. Then enforce from the page: the
balancer answers 429 and the upstream sees fewer of the requests sent; the journal has the
change and the Limits chart its marker. Outcomes and directions only, never timing sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PySide6.QtWidgets import QInputDialog, QWidget
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.cli.main import make_tuning
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import APPLIED, CONFLICT, REFUSED, Agent
from trimtab.app.model.fleet import FleetModel, limit_key
from trimtab.app.store.store import Store
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget
from trimtab.widgets.limit_dialog import LimitDialog

from tests.agent.balance.test_balancer_limits import Upstream
from tests.app.ui.test_tuning_gui import DialogDriver

WRITE_TOKEN = "w-secret-18"
TOKENS = f"admin:write:{WRITE_TOKEN},viewer:read:r-secret-18"
BALANCER = "edge-lb"  # not named "balancer": the page must say it is one
LIMIT = "per-ip"
# Every request comes from 127.0.0.1: at 1/s with a burst of 2 nearly all would be refused.
SPEC = f"{LIMIT}:route=*,key=ip,rate=1,burst=2,mode=shadow"
KEY = limit_key("*", LIMIT)


class Traffic:
    """Requests through the balancer from a thread, counted by answer status."""

    def __init__(self, url: str, rps: float = 20.0) -> None:
        self.url, self.pause = url, 1.0 / rps
        self.status: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.wait(self.pause):
                try:
                    code = client.get("/search", params={"q": "x"}).status_code
                except httpx.HTTPError:
                    code = 0
                with self._lock:
                    self.status[code] = self.status.get(code, 0) + 1

    def sent(self) -> int:
        with self._lock:
            return sum(self.status.values())

    def count(self, code: int) -> int:
        with self._lock:
            return self.status.get(code, 0)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(15)


class Setup:
    """Upstream, balancer process, traffic, scrape engine and model; all stopped by close()."""

    def __init__(self, store: Store | None = None) -> None:
        """``store``: the model's history database (a snapshot can be exported from it)."""
        self.upstream = Upstream("u1")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.traffic: Traffic | None = None
        self.engine: ScrapeEngine | None = None
        try:
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "TRIMTAB_TOKENS": TOKENS}
            env.pop("TRIMTAB_RATELIMIT_STORE", None)
            proc = subprocess.Popen(
                [sys.executable, "-m", "trimtab.agent", "balance", "--port", str(port),
                 "--limit", SPEC, f"u1={self.upstream.url}"], stdin=subprocess.DEVNULL, env=env)
            self.procs.append(proc)
            wait_http(f"{self.url}/_trimtab/metrics", proc)
            self.target = ScrapeTarget(BALANCER, f"{self.url}/_trimtab/metrics", "balancer",
                                       token=WRITE_TOKEN)
            self.model = FleetModel(store=store)
            self.engine = ScrapeEngine(
                [self.target], self.model.ingest, on_cycle=self.model.tick,
                on_config=self.model.ingest_config,
                on_balancer_limits=self.model.ingest_balancer_limits).start()
            self.traffic = Traffic(self.url)
        except BaseException:
            self.close()
            raise

    def journal(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/_trimtab/balancer/journal", timeout=10,
                      headers={"authorization": f"Bearer {WRITE_TOKEN}"})
        return r.json()["entries"]

    def limits(self) -> httpx.Response:
        return httpx.get(f"{self.url}/_trimtab/balancer/limits", timeout=10,
                         headers={"authorization": f"Bearer {WRITE_TOKEN}"})

    def close(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        if self.engine is not None:
            self.engine.stop()
        stop_all(self.procs)
        self.upstream.close()


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    s = Setup()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def window(qapp, setup: Setup):
    from trimtab.app.ui.window import MainWindow

    from tests.support import wait_for

    window = MainWindow(setup.model, tuning=make_tuning(WRITE_TOKEN, [setup.target]))
    window.resize(1366, 768)
    window.show()
    window.tabs.setCurrentWidget(window.limits)
    wait_for(lambda: (qapp.processEvents(), window.limits.can_write)[1], timeout=30,
             what="write access")
    yield window
    window.close()


def _balancer_line(window) -> Any:
    return next((line for line in window.limits.lines if line.at_balancer), None)


def _last(model: FleetModel, metric: str) -> float:
    series = model.snapshot(metric, keys=[KEY]).get(KEY)
    return float(series[1][-1]) if series is not None and len(series[1]) else float("nan")


def test_the_client_reads_the_balancers_limits_and_refuses_bad_or_stale_patches(
        setup: Setup) -> None:
    agent = Agent.from_target(setup.target)
    with ControlClient(WRITE_TOKEN) as client:
        read = client.read_balancer_limits(agent)
        view = read.limits[LIMIT]
        assert (view.route, view.key, view.rate, view.burst, view.mode) == \
            ("*", "ip", 1.0, 2, "shadow")
        assert read.store == "memory" and read.etag
        before = len(setup.journal())
        bad = client.set_balancer_limit(agent, LIMIT, {"rate": -5}, "bad", read.etag)
        outcome = bad.outcomes[agent]
        assert outcome.status == REFUSED and outcome.http_status == 422, outcome
        assert "rate" in outcome.message, outcome
        stale = client.set_balancer_limit(agent, LIMIT, {"rate": 2}, "stale", '"lstale"')
        assert stale.outcomes[agent].status == CONFLICT, stale.outcomes[agent]
        after = client.read_balancer_limits(agent)
        now = after.limits[LIMIT]
        assert after.etag == read.etag and (now.rate, now.burst, now.mode) == (1.0, 2, "shadow")
        entries = setup.journal()[before:]
        assert entries and {e["result"] for e in entries} == {"refused"}, entries
        # An instance call is never sent to a balancer.
        with pytest.raises(Exception, match="balancer, not an instance"):
            client.read_limits(agent)


def test_the_page_shows_the_balancers_limit_and_its_would_be_limited_rate(
        qtbot, setup: Setup, window) -> None:
    model, page = setup.model, window.limits
    qtbot.waitUntil(lambda: _last(model, "limit_shadow") > 0, timeout=60_000)
    assert any(r.target == BALANCER and r.limit == LIMIT and r.shadow_limited > 0
               for r in model.limits)
    qtbot.waitUntil(lambda: (line := _balancer_line(window)) is not None
                    and line.shadow_limited > 0, timeout=30_000)
    line = _balancer_line(window)
    assert (line.instance, line.name, line.route, line.key, line.rate, line.burst,
            line.mode) == (BALANCER, LIMIT, "*", "ip", 1.0, 2, "shadow")
    assert line.limited == 0  # shadow refuses nobody
    assert setup.traffic is not None and setup.traffic.count(429) == 0
    texts = page.table.column_texts(0)
    assert f"{BALANCER} (balancer)" in texts, texts
    assert f"* {LIMIT} would-be-limited/s" in page.limited.data
    assert page.select_balancer_limit(BALANCER, LIMIT)
    assert page.selected_balancer() == BALANCER
    assert page.enforce_button.isEnabled()
    assert "at the balancer" in page.enforce_button.toolTip()
    qtbot.waitUntil(lambda: "Not reported by the balancer" in page.top_keys.state.text(),
                    timeout=10_000)


def test_a_wrong_value_is_refused_in_the_dialog_and_nothing_is_sent(
        qtbot, setup: Setup, window) -> None:
    before_journal, before_tag = len(setup.journal()), setup.limits().headers["etag"]
    seen: list[str] = []

    def fill(dialog: QWidget) -> bool:
        if not isinstance(dialog, LimitDialog):
            return False
        assert dialog.at_balancer and BALANCER in dialog.windowTitle()
        assert not dialog.staged.isVisible() and not dialog.scope_one.isVisible()
        dialog.reason.setText("trying a wrong value")
        dialog.rate.setText("-5")
        seen.append(dialog.problem() or "")
        assert not dialog.apply.isEnabled() and dialog.choice() is None
        dialog.accept()  # Enter or a caller: refused while invalid
        assert dialog.isVisible()
        dialog.reject()
        return True

    driver = DialogDriver()
    driver.expect(fill)
    page = window.limits
    qtbot.waitUntil(lambda: page.select_balancer_limit(BALANCER, LIMIT), timeout=10_000)
    page.change_button.click()
    driver.wait_done(qtbot, timeout=30_000)
    driver.stop()
    assert seen and "Rate" in seen[0] and "out of range" in seen[0], seen
    qtbot.wait(1000)  # anything sent would be journaled by now
    assert len(setup.journal()) == before_journal  # not even a refusal: nothing was sent
    assert setup.limits().headers["etag"] == before_tag


def test_enforce_from_the_page_makes_the_balancer_refuse_and_is_journaled(
        qtbot, setup: Setup, window) -> None:
    traffic = setup.traffic
    assert traffic is not None
    previews: list[str] = []

    def enforce(dialog: QWidget) -> bool:
        if not isinstance(dialog, LimitDialog):
            return False
        assert dialog.mode.currentText() == "enforce"  # the button presets it
        if "not offered by the balancer" not in dialog.preview.text():
            return False  # look again at the next poll
        previews.append(dialog.preview.text())
        dialog.reason.setText("greedy client at the edge")
        dialog.accept()
        return True

    driver = DialogDriver()
    driver.expect(enforce)
    driver.expect(driver.click("OK"))
    page = window.limits
    qtbot.waitUntil(lambda: page.select_balancer_limit(BALANCER, LIMIT), timeout=10_000)
    page.enforce_button.click()
    driver.wait_done(qtbot, timeout=60_000)
    driver.stop()
    assert f"{BALANCER}: applied" in driver.texts[-1], driver.texts
    assert "limits.per-ip.mode: shadow → enforce" in driver.texts[-1], driver.texts
    assert setup.limits().json()["limits"][LIMIT]["mode"] == "enforce"
    entries = [e for e in setup.journal() if e["what"] == f"limits.{LIMIT}"
               and e["result"] == "accepted"]
    assert entries and entries[-1]["new"] == {"mode": "enforce"}, entries
    assert entries[-1]["reason"] == "greedy client at the edge"

    # Enforced: the balancer answers 429 and the upstream sees fewer than were sent.
    sent, seen, refused = traffic.sent(), setup.upstream.total(), traffic.count(429)
    qtbot.waitUntil(lambda: traffic.count(429) > refused and traffic.sent() - sent >= 20,
                    timeout=60_000)
    assert setup.upstream.total() - seen < traffic.sent() - sent
    qtbot.waitUntil(lambda: _last(setup.model, "limit_limited") > 0, timeout=60_000)
    qtbot.waitUntil(lambda: (line := _balancer_line(window)) is not None
                    and line.mode == "enforce" and line.limited > 0, timeout=30_000)
    assert f"* {LIMIT} limited/s" in page.limited.data

    # The change is a marker on the Limits chart, named as an operator says it.
    qtbot.waitUntil(lambda: any(r.reason == "greedy client at the edge"
                                for r in window.journal_rows.values()), timeout=30_000)
    keys = [k for k, r in window.journal_rows.items() if r.reason == "greedy client at the edge"]
    qtbot.waitUntil(lambda: bool(set(keys) & set(page.limited.markers)), timeout=15_000)
    labels = {key: label for key, _, label in window._change_marks}
    assert labels[next(k for k in keys if k in labels)] == \
        f"Limit {LIMIT} on every route: shadow → enforce · {BALANCER}"
    row = window.journal_rows[keys[0]]
    assert row.revertible and row.source.kind == "balancer"


def test_remove_goes_to_the_balancer_and_a_revert_brings_the_limit_back(
        qtbot, setup: Setup, window) -> None:
    def reason(widget: QWidget) -> bool:
        if not isinstance(widget, QInputDialog):
            return False
        assert LIMIT in widget.labelText() and BALANCER in widget.labelText()
        widget.setTextValue("not needed at the edge")
        widget.accept()
        return True

    driver = DialogDriver()
    driver.expect(reason)
    driver.expect(driver.click("OK"))
    page = window.limits
    qtbot.waitUntil(lambda: page.select_balancer_limit(BALANCER, LIMIT), timeout=10_000)
    page.remove_button.click()
    driver.wait_done(qtbot, timeout=30_000)
    driver.stop()
    assert LIMIT not in setup.limits().json()["limits"]
    qtbot.waitUntil(lambda: _balancer_line(window) is None, timeout=30_000)
    agent = Agent.from_target(setup.target)
    with ControlClient(WRITE_TOKEN) as client:
        rows, errors = client.journal([agent])
        assert not errors
        removal = next(r for r in reversed(rows) if r.reason == "not needed at the edge")
        assert removal.revertible
        assert client.revert(removal, "bring it back").status == APPLIED
    assert setup.limits().json()["limits"][LIMIT]["mode"] == "enforce"
    qtbot.waitUntil(lambda: _balancer_line(window) is not None, timeout=30_000)
