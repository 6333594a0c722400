"""One /metrics for all workers of an instance (``uvicorn --workers N`` with a state dir).

Each worker counts in its own memory; a scrape lands on one worker. Without
sharing, every scrape would see a different worker's counters and the cockpit
would read each switch as a counter reset. So each worker publishes a snapshot
of its counters to ``<state dir>/metrics/<instance>-<pid>.json`` (atomic
replace, at most once per ``interval`` on the request path, and always right
before it answers a scrape), and /metrics sums every worker's snapshot.

Sums stay monotonic while workers live: a snapshot only grows. A dead worker's
snapshot is kept (its requests happened) until the next worker start, which
removes snapshots of processes that no longer exist — a restart then reads as
one counter reset, as it should. Exemplars keep the newest per bucket.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from .metrics import RouteMetrics, _Hist
from .procs import alive


class SnapshotShare:
    """One worker's counters published as ``<dir>/<instance>-<pid>.json`` and every
    worker's summed: the mechanism this module describes, for any kind of counters.

    A subclass says what a snapshot holds (:meth:`dump`), what an empty sum is
    (:meth:`empty`) and how one snapshot adds into it (:meth:`add`).
    """

    def __init__(self, directory: Path, instance: str, interval: float = 1.0) -> None:
        self.dir = directory
        self.instance = instance
        self.interval = interval
        self.dir.mkdir(parents=True, exist_ok=True)
        self._pid = -1
        self._pinned: Path | None = None
        self._last = 0.0
        self._scheduled = False

    @property
    def path(self) -> Path:
        """This process's snapshot, named at use: a worker forked after the share was made
        (``gunicorn --preload``) gets its own, and removes dead workers' on first use."""
        if self._pinned is not None:
            return self._pinned
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._forget_dead()
        return self.dir / f"{self.instance}-{self._pid}.json"

    @path.setter
    def path(self, value: Path) -> None:
        """Pin the snapshot's file (a test playing another worker)."""
        self._pinned = value

    def dump(self) -> dict[str, Any]:
        raise NotImplementedError

    def empty(self) -> Any:
        raise NotImplementedError

    def add(self, total: Any, snapshot: dict[str, Any]) -> None:
        raise NotImplementedError

    def maybe_publish(self, now: float | None = None) -> None:
        """Publish if the last snapshot is older than ``interval``, else make sure a
        trailing publish follows, so the last requests of a burst are not left out."""
        now = time.monotonic() if now is None else now
        if now - self._last >= self.interval:
            self.publish(now)
        elif not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_later(self.interval, self._trailing)
            except RuntimeError:  # a WSGI worker has no event loop: a timer thread instead
                timer = threading.Timer(self.interval, self._trailing)
                timer.daemon = True
                timer.start()

    def _trailing(self) -> None:
        self._scheduled = False
        self.publish()

    def publish(self, now: float | None = None) -> None:
        """Write this worker's snapshot atomically."""
        self._last = time.monotonic() if now is None else now
        path = self.path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.dump()))
        os.replace(tmp, path)

    def merged(self) -> Any:
        """Every worker's counters summed (this worker's published first)."""
        self.publish()
        total = self.empty()
        for path in sorted(self.dir.glob(f"{self.instance}-*.json")):
            try:
                self.add(total, json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a worker between write and replace, or gone: next scrape has it
        return total

    def _forget_dead(self) -> None:
        for path in self.dir.glob(f"{self.instance}-*.json"):
            pid = path.stem.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
                path.unlink(missing_ok=True)


class WorkerMetricsShare(SnapshotShare):
    """Publishes this worker's :class:`RouteMetrics` and merges everyone's."""

    def __init__(self, directory: Path, instance: str, metrics: RouteMetrics,
                 interval: float = 1.0) -> None:
        super().__init__(directory, instance, interval)
        self.metrics = metrics
        _ = self.path  # name this worker's file and drop dead workers' now

    def dump(self) -> dict[str, Any]:
        return _dump(self.metrics)

    def empty(self) -> RouteMetrics:
        return RouteMetrics(prefix=self.metrics.prefix, route_label=self.metrics.route_label,
                            buckets=self.metrics.buckets)

    def add(self, total: RouteMetrics, snapshot: dict[str, Any]) -> None:
        _add(total, snapshot)


def _dump(m: RouteMetrics) -> dict[str, Any]:
    with m._lock:
        return {
            "requests": [[*k, n] for k, n in m.requests.items()],
            "latency": [[r, meth, h.counts, h.total, h.count,
                         {str(i): list(e) for i, e in h.exemplars.items()}]
                        for (r, meth), h in m.latency.items()],
            "sizes": [[r, meth, h.counts, h.total, h.count] for (r, meth), h in m.sizes.items()],
            "cache": [[*k, n] for k, n in m.cache.items()],
            "cache_bypass": [[*k, n] for k, n in m.cache_bypass.items()],
            "exceptions": [[k, n] for k, n in m.exceptions.items()],
            "cache_errors": [[*k, n] for k, n in m.cache_errors.items()],
            "folded": m.folded_routes, "in_flight": m.in_flight,
        }


def _add(total: RouteMetrics, s: dict[str, Any]) -> None:
    for route, method, status, n in s["requests"]:
        key = (route, method, status)
        total.requests[key] = total.requests.get(key, 0) + n
    for route, method, counts, hsum, count, exemplars in s["latency"]:
        hist = total.latency.setdefault((route, method), _Hist([0] * len(counts)))
        hist.counts = [a + b for a, b in zip(hist.counts, counts, strict=True)]
        hist.total += hsum
        hist.count += count
        for index, (trace_id, value, stamp) in exemplars.items():
            mine = hist.exemplars.get(int(index))
            if mine is None or mine[2] < stamp:
                hist.exemplars[int(index)] = (trace_id, value, stamp)
    for route, method, counts, hsum, count in s.get("sizes", ()):
        size = total.sizes.setdefault((route, method), _Hist([0] * len(counts)))
        size.counts = [a + b for a, b in zip(size.counts, counts, strict=True)]
        size.total += hsum
        size.count += count
    for route, result, n in s["cache"]:
        total.cache[(route, result)] = total.cache.get((route, result), 0) + n
    for route, reason, n in s.get("cache_bypass", ()):
        total.cache_bypass[(route, reason)] = total.cache_bypass.get((route, reason), 0) + n
    for route, n in s["exceptions"]:
        total.exceptions[route] = total.exceptions.get(route, 0) + n
    for store, op, n in s["cache_errors"]:
        total.cache_errors[(store, op)] = total.cache_errors.get((store, op), 0) + n
    total.folded_routes += s["folded"]
    total.in_flight += s["in_flight"]
