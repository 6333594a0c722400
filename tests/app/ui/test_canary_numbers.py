"""What the real window feeds a staged rollout's gates about its canary: the canary's own p95
and its own error ratio, not the route's fleet-wide one (which healthy peers dilute)."""

from __future__ import annotations

import math

from trimtab.app.model.fleet import FleetModel
from trimtab.app.ui.window import MainWindow

from tests.app.model.test_model import API, API2, exposition, scrape


def test_the_canary_is_judged_by_its_own_errors(qtbot) -> None:
    model = FleetModel()
    for target, errors, at in ((API, 40, 0.32), (API2, 0, 0.22)):
        scrape(model, target, 100.0, exposition(0, at))
        scrape(model, target, 101.0, exposition(100, at, errors=errors))
    model.tick(101.0)
    window = MainWindow(model)
    window.clock = lambda: 101.0  # the scrapes' time
    qtbot.addWidget(window)
    try:
        assert model.routes["/r"].error_ratio == 0.2  # 40 of 200 route-wide
        p95_ms, errors = window.canary_numbers("/r", "api-1")
        assert errors == 0.4  # the canary's own 40 of 100
        assert 300.0 < p95_ms <= 450.0  # its own bucket (0.3–0.45 s), not the peer's
        assert window.canary_numbers("/r", "api-2")[1] == 0.0
        # A canary serving none of /r (crashed, ejected) passes no gate: NaN, not 0 %.
        p95_ms, errors = window.canary_numbers("/r", "api-9")
        assert math.isnan(p95_ms) and math.isnan(errors)
        # Nor does one whose last p95 is old: it stopped serving a minute ago.
        window.clock = lambda: 161.0
        assert math.isnan(window.canary_numbers("/r", "api-1")[0])
    finally:
        window.close()
