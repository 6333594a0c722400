"""The Limits page's top limited keys table (real widgets, offscreen): asked for the selected
limit, shown most refused first with its share, each empty state said in words, answers for
a limit no longer selected dropped, and an old agent never a crash."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from trimtab.app.control.top_keys import InstanceTopKeys, merge
from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.pages import limits as limits_page
from trimtab.app.ui.pages.limits import LimitsPage

LIMIT = {"route": "/search", "key": "header:x-api-key", "rate": 2.0, "burst": 10,
         "mode": "shadow"}
OTHER = {"route": "*", "key": "ip", "rate": 100.0, "burst": 200, "mode": "enforce"}


class Source:
    """Records what the page asks for; the test answers each ask by hand."""

    def __init__(self) -> None:
        self.asks: list[tuple[str, Callable[[Any], None]]] = []

    def __call__(self, name: str, done: Callable[[Any], None]) -> None:
        self.asks.append((name, done))

    def names(self) -> list[str]:
        return [name for name, _ in self.asks]


@pytest.fixture()
def page(qtbot) -> Iterator[LimitsPage]:
    model = FleetModel()
    model.configs = {f"api-{n}": {"limits": {"per-key": dict(LIMIT), "global": dict(OTHER)}}
                     for n in (1, 2, 3)}
    page = LimitsPage(model)
    page.resize(1366, 700)
    qtbot.addWidget(page)
    page.show()
    page.refresh(time.time() - 60)
    yield page
    page.close()


def rows(page: LimitsPage) -> list[list[str]]:
    table = page.top_keys.table
    return [[table.model().index(r, c).data() for c in range(table.model().columnCount())]
            for r in range(table.model().rowCount())]


def answer(*per_instance: tuple[str, float, tuple[tuple[str, int, int], ...]] | None,
           limit: str = "per-key"):
    names = [f"api-{n}" for n in range(1, len(per_instance) + 1)]
    return merge(limit, {n: None if a is None else InstanceTopKeys(n, a[1], a[2])
                         for n, a in zip(names, per_instance, strict=True)})


def test_the_selected_limits_keys_most_refused_first_with_their_share(page) -> None:
    source = Source()
    page.top_keys_source = source
    assert "Select a limit" in page.top_keys.state.text() and not rows(page)
    assert page.select_limit("per-key")
    assert source.names() == ["per-key"]
    assert "Asking the agents" in page.top_keys.state.text()
    source.asks[-1][1](answer(("api-1", 300.0, (("#0badc0de", 0, 240), ("10.0.0.7", 0, 12))),
                              ("api-2", 300.0, (("#5ca1ab1e", 0, 230),)),
                              ("api-3", 300.0, (("10.0.0.7", 0, 18),))))
    assert rows(page) == [
        ["#0badc0de", "0", "240", "0.8/s", "48%", "api-1"],
        ["#5ca1ab1e", "0", "230", "0.8/s", "46%", "api-2"],
        ["10.0.0.7", "0", "30", "0.1/s", "6%", "api-1, api-3"],
    ], rows(page)
    title = page.top_keys.title.text()
    assert "per-key" in title and "last 5 min" in title and "api-1, api-2, api-3" in title
    assert not page.top_keys.state.isVisible()
    # The next refresh within TOP_KEYS_EVERY asks nothing; later, it asks again.
    page.refresh(time.time() - 60)
    assert source.names() == ["per-key"]


def test_an_answer_for_a_limit_no_longer_selected_is_dropped(page) -> None:
    source = Source()
    page.top_keys_source = source
    page.select_limit("per-key")
    page.select_limit("global")
    assert source.names() == ["per-key", "global"]
    source.asks[0][1](answer(("api-1", 60.0, (("#0badc0de", 0, 9),))))  # late, for per-key
    assert not rows(page) and "Asking the agents which keys global" in \
        page.top_keys.state.text()
    source.asks[1][1](answer(("api-1", 60.0, (("10.0.0.1", 4, 0),)), limit="global"))
    assert [r[0] for r in rows(page)] == ["10.0.0.1"]


def test_each_empty_state_is_said(page, monkeypatch) -> None:
    page.select_limit("per-key")
    assert "No control token" in page.top_keys.state.text()  # nobody to ask
    source = Source()
    page.top_keys_source = source
    monkeypatch.setattr(limits_page, "TOP_KEYS_EVERY", 0.0)  # every refresh asks again

    def reply(result: Any) -> None:
        page.refresh(time.time() - 60)
        source.asks[-1][1](result)

    reply(answer(None, None, None))  # agents older than top keys
    assert "the agent does not report top keys (upgrade the agent)" in \
        page.top_keys.state.text() and not rows(page)
    reply(answer(("api-1", 40.0, ()), ("api-2", 40.0, ()), None))
    state = page.top_keys.state.text()
    assert "Nobody was limited by per-key in the last 40 s" in state
    assert "api-3: the agent does not report top keys (upgrade the agent)" in state
    reply(ConnectionError("all three unreachable"))
    assert "unavailable: all three unreachable" in page.top_keys.state.text()
    reply(answer(("api-1", 40.0, (("10.0.0.2", 3, 0),)), None))  # one old agent of two
    assert [r[0] for r in rows(page)] == ["10.0.0.2"]
    assert page.top_keys.state.isVisible()
    assert "Not included: api-2: the agent does not report" in page.top_keys.state.text()
    page.table.clearSelection()
    assert "Select a limit" in page.top_keys.state.text() and not rows(page)
