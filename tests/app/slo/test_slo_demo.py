"""An SLO on the real demo fleet: the slow instance (api-3, 2.5× slower) burns the /search
latency budget, and the cockpit's burn rate matches a hand computation from the same
stored buckets within 5 %.

The hand computation is deliberately plain: per instance, the increase of the bucket at
the threshold and of ``+Inf`` between the first and last stored sample of the window (no
extrapolation), bad = total − good, summed over instances. The cockpit extrapolates each
series to the window's ends as Prometheus does, hence "within 5 %", not equal.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from trimtab.app.cli.main import start_collection
from trimtab.app.model.fleet import FleetModel
from trimtab.app.slo.burn import BurnAlert
from trimtab.app.slo.definition import SLO
from trimtab.app.slo.track import StoreSource, evaluate
from trimtab.app.store.store import Store
from trimtab.collectors.canonical import HIST_BUCKET
from trimtab.demo.fleet import DemoFleet

from tests.support import poll

THRESHOLD = 0.10842  # a bucket bound of the agent's layout
SLO_SEARCH = SLO("search-fast", "/search", "latency", 0.9, threshold_s=THRESHOLD)
WINDOW = 30.0


def _hand(store: Store, at: float) -> dict[str, tuple[float, float]]:
    """Per instance: (bad, total) requests of /search over [at - WINDOW, at], by hand."""
    found = store.query(HIST_BUCKET, {"route": "/search"}, start=at - WINDOW, end=at,
                        max_points=10_000)
    out: dict[str, list[float]] = {}
    for key, (t, v) in found.items():
        le = dict(key.labels)["le"]
        if le not in (repr(THRESHOLD), "+Inf") or len(v) < 2:
            continue
        increase = float(v[-1] - v[0])
        per = out.setdefault(key.target, [0.0, 0.0])
        per[0 if le != "+Inf" else 1] += increase
    return {target: (total - good, total) for target, (good, total) in out.items()}


@pytest.mark.slow
def test_the_slow_instance_burns_the_budget_at_the_hand_computed_rate(tmp_path: Path) -> None:
    fleet = DemoFleet(rps=100.0, log_dir=str(tmp_path))
    store = Store(tmp_path / "history.sqlite")
    model = FleetModel(store=store)
    engine = None
    try:
        fleet.start()
        engine = start_collection(fleet, model)
        started = time.time()
        assert poll(lambda: store.last_cycle() is not None
                    and store.last_cycle()[1] - started > WINDOW + 5, bool, 120.0, interval=1.0)
        at = store.last_cycle()[1]
        [status] = evaluate([SLO_SEARCH], StoreSource(store), at, sli_window_s=WINDOW,
                            alerts=(BurnAlert(WINDOW, 10.0, 14.4, "page"),))
        hand = _hand(store, at)
    finally:
        if engine is not None:
            engine.stop()
        fleet.stop()
        store.close()
    bad = sum(b for b, _ in hand.values())
    total = sum(t for _, t in hand.values())
    expected = bad / total / SLO_SEARCH.budget
    burn = status.burns[0].long_burn
    per_instance = {target: b / t / SLO_SEARCH.budget for target, (b, t) in hand.items() if t}
    print(f"burn: cockpit {burn:.4f}, by hand {expected:.4f} "
          f"({abs(burn - expected) / expected:.2%} apart); per instance {per_instance}")
    assert burn == pytest.approx(expected, rel=0.05)
    slow = [t for t in per_instance if t.endswith("api-3") or "api-3" in t]
    assert slow, per_instance
    others = [b for t, b in per_instance.items() if t not in slow]
    assert per_instance[slow[0]] > 2 * max(others)  # the slow instance is the one burning
    assert status.sli.exact  # the threshold is a bucket bound: no interpolation
