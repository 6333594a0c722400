"""A rate limit's series leave the model once it decided nothing for ``expire_after`` (issue
18): the agent keeps exporting a removed limit's counters, so their rate reads 0, never NaN,
and without this every limit ever set would be derived every tick for as long as the window
is open. A limit that keeps deciding stays; one that decides again comes back."""

from __future__ import annotations

from trimtab.app.model.fleet import EXPIRE_EVERY, FleetModel, limit_key

from tests.app.model.test_model import API, exposition, scrape

LIMITS = ("limit_allowed", "limit_limited", "limit_shadow")


def _text(n: int, old: int, live: int) -> str:
    """The request histogram plus the decisions of two limits: ``old`` (counters frozen once
    it was removed) and ``live`` (still deciding)."""
    lines = ["# TYPE trimtab_ratelimit_requests_total counter"]
    for name, count in (("old", old), ("live", live)):
        for result, share in (("allowed", 1), ("shadow_limited", 0)):
            lines.append(f'trimtab_ratelimit_requests_total{{route="/r",limit="{name}",'
                         f'result="{result}"}} {count * share}')
    return exposition(n) + "\n".join(lines) + "\n"


def test_a_limit_that_decides_nothing_for_expire_after_is_forgotten() -> None:
    model = FleetModel(expire_after=30.0)
    t = 100.0
    for i in range(5):  # both limits decide
        scrape(model, API, t, _text(10 * i, 5 * i, 5 * i))
        model.tick(t)
        t += 1.0
    old, live = limit_key("/r", "old"), limit_key("/r", "live")
    assert all((m, old) in model.series and (m, live) in model.series for m in LIMITS)
    frozen = 5 * 4
    for i in range(5, 5 + 3 * EXPIRE_EVERY):  # "old" removed: its counters stay as they were
        scrape(model, API, t, _text(10 * i, frozen, 5 * i))
        model.tick(t)
        t += 1.0
    assert not [k for k in model.series if k[1] == old]
    assert all((m, live) in model.series for m in LIMITS)
    assert {(r.route, r.limit) for r in model.limits} >= {("/r", "live")}
    i = 5 + 3 * EXPIRE_EVERY
    for j in range(3):  # "old" is set again and decides: it comes back
        scrape(model, API, t, _text(10 * (i + j), frozen + 5 * (j + 1), 5 * (i + j)))
        model.tick(t)
        t += 1.0
    assert ("limit_allowed", old) in model.series


def test_nothing_of_a_limit_expires_before_expire_after() -> None:
    model = FleetModel(expire_after=10_000.0)
    t = 100.0
    for i in range(2 + 2 * EXPIRE_EVERY):
        scrape(model, API, t, _text(10 * i, 5 if i else 0, 5 * i))
        model.tick(t)
        t += 1.0
    assert ("limit_allowed", limit_key("/r", "old")) in model.series
