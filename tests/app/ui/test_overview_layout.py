"""The Overview's four charts share its height equally, whichever show their empty-state line:
a fleet with no cache yet once had its bottom row squashed to 88 px under a 491 px top row."""

from __future__ import annotations

from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.window import MainWindow

from tests.app.ui.test_overview_window import Feed


def test_a_chart_showing_its_empty_line_does_not_squash_the_row_below(qtbot) -> None:
    window = MainWindow(FleetModel(), refresh_hz=50)
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    qtbot.waitExposed(window)
    feed = Feed(window.model)
    window.clock = feed.clock
    feed.routes = {"/a": (40.0, 0.04), "/b": (20.0, 0.2)}  # no cache lookups at all
    feed.statuses = {"200": 0.9, "503": 0.1}
    feed.step(15)
    page = window.overview
    window.tabs.setCurrentWidget(page)
    window._force_refresh()
    qtbot.waitUntil(lambda: page.hit_ratio._empty.isVisible(), timeout=10_000)
    qtbot.wait(500)  # the layout settles over a few event-loop turns (it squashed only then)
    assert page.latency.data and not page.hit_ratio.data
    heights = [c.height() for c in (page.latency, page.hit_ratio, page.share_time,
                                    page.share_bars)]
    assert max(heights) - min(heights) <= 0.1 * max(heights), heights
    assert min(heights) > 200, heights
