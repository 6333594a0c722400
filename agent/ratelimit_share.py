"""Rate limit counters of every worker of an instance, summed for one /metrics.

The same mechanism as :mod:`.worker_metrics` (:class:`~.worker_metrics.SnapshotShare`) (which carries the request counters,
429s included): each worker writes a snapshot of its
:class:`~.ratelimit.RateLimitMetrics` to ``<state dir>/ratelimit-metrics/<instance>-<pid>.json``
(atomic replace) at most once per ``interval`` on the request path, with a
trailing write after a burst, and always right before it answers a scrape; the
scrape sums every snapshot. A dead worker's snapshot is kept until the next
worker start removes it, so sums stay monotonic while workers live.

:class:`TopKeysShare` does the same for the top limited keys
(:mod:`.ratelimit_topkeys`) in ``<state dir>/ratelimit-topkeys/``: published while a
worker refuses, merged by key when ``GET /_trimtab/limits`` is answered; tallies older
than the span (a dead or idle worker's) are left out, so they never stay forever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .ratelimit import RateLimitMetrics
from .ratelimit_topkeys import MergedTop, TopKeys
from .worker_metrics import SnapshotShare


class RateLimitShare(SnapshotShare):
    """Publishes this worker's rate limit counters and merges every worker's."""

    def __init__(self, directory: Path, instance: str, metrics: RateLimitMetrics,
                 interval: float = 1.0) -> None:
        super().__init__(directory, instance, interval)
        self.metrics = metrics

    def dump(self) -> dict[str, Any]:
        decisions, errors = self.metrics.snapshot()
        return {"decisions": [[*k, n] for k, n in decisions.items()], "store_errors": errors}

    def empty(self) -> RateLimitMetrics:
        return RateLimitMetrics()

    def add(self, total: RateLimitMetrics, snapshot: dict[str, Any]) -> None:
        for route, limit, result, n in snapshot["decisions"]:
            key = (route, limit, result)
            total.decisions[key] = total.decisions.get(key, 0) + int(n)
        for store, n in snapshot["store_errors"].items():
            total.store_errors[store] = total.store_errors.get(store, 0) + int(n)


class TopKeysShare(SnapshotShare):
    """Publishes this worker's top-key tallies and merges every worker's."""

    def __init__(self, directory: Path, instance: str, top: TopKeys,
                 interval: float = 1.0) -> None:
        super().__init__(directory, instance, interval)
        self.top = top

    def dump(self) -> dict[str, Any]:
        return self.top.dump()

    def empty(self) -> MergedTop:
        return MergedTop(self.top.span)

    def add(self, total: MergedTop, snapshot: dict[str, Any]) -> None:
        total.add(snapshot)
