"""Rate limit counters of every worker of an instance, summed for one /metrics.

The same scheme as :mod:`.worker_metrics` (which carries the request counters,
429s included): each worker writes a snapshot of its
:class:`~.ratelimit.RateLimitMetrics` to ``<state dir>/ratelimit-metrics/<instance>-<pid>.json``
(atomic replace) at most once per ``interval`` on the request path, with a
trailing write after a burst, and always right before it answers a scrape; the
scrape sums every snapshot. A dead worker's snapshot is kept until the next
worker start removes it, so sums stay monotonic while workers live.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from .procs import alive
from .ratelimit import RateLimitMetrics


class RateLimitShare:
    """Publishes this worker's rate limit counters and merges every worker's."""

    def __init__(self, directory: Path, instance: str, metrics: RateLimitMetrics,
                 interval: float = 1.0) -> None:
        self.dir, self.instance, self.metrics, self.interval = directory, instance, metrics, \
            interval
        self.dir.mkdir(parents=True, exist_ok=True)
        self._pid = -1
        self._last = 0.0
        self._scheduled = False

    @property
    def path(self) -> Path:
        """This process's snapshot (named at use: a forked worker gets its own)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._forget_dead()
        return self.dir / f"{self.instance}-{self._pid}.json"

    def maybe_publish(self) -> None:
        """Publish unless one was written within ``interval``; then make sure one follows."""
        now = time.monotonic()
        if now - self._last >= self.interval:
            self.publish(now)
            return
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a WSGI thread): the next request or scrape publishes
            return
        self._scheduled = True
        loop.call_later(self.interval, self._trailing)

    def _trailing(self) -> None:
        self._scheduled = False
        self.publish()

    def publish(self, now: float | None = None) -> None:
        """Write this worker's snapshot atomically."""
        self._last = time.monotonic() if now is None else now
        decisions, errors = self.metrics.snapshot()
        path = self.path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"decisions": [[*k, n] for k, n in decisions.items()],
                                   "store_errors": errors}))
        os.replace(tmp, path)

    def merged(self) -> RateLimitMetrics:
        """Every worker's counters summed (this worker's published first)."""
        self.publish()
        total = RateLimitMetrics()
        for path in sorted(self.dir.glob(f"{self.instance}-*.json")):
            try:
                snapshot = json.loads(path.read_text())
                for route, limit, result, n in snapshot["decisions"]:
                    key = (route, limit, result)
                    total.decisions[key] = total.decisions.get(key, 0) + int(n)
                for store, n in snapshot["store_errors"].items():
                    total.store_errors[store] = total.store_errors.get(store, 0) + int(n)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a worker between write and replace, or gone: next scrape has it
        return total

    def _forget_dead(self) -> None:
        for path in self.dir.glob(f"{self.instance}-*.json"):
            pid = path.stem.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
                path.unlink(missing_ok=True)
