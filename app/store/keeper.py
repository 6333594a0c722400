"""The history keeper: runs the store's retention, rollups and cap in the running cockpit.

One background thread (never the GUI thread, never the collector's) calls
:meth:`Store.maintain` a bounded step at a time until there is nothing left,
then sleeps ``interval`` seconds. Each step commits once, in a short
transaction under the store's write lock, so the collector's per-cycle write
waits at most for one step; between steps the keeper pauses briefly so a write
that was waiting takes the lock before the next step does (Python's locks are
not fair). The slow part of a rollup reads on the store's own maintenance
connection without the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Self

from .store import RetentionReport, Store

INTERVAL_S = 30.0  # between passes; raw blocks fold every few minutes, pieces roll hourly
PAUSE_S = 0.02  # between the steps of one pass


class HistoryKeeper:
    """Keeps ``store`` within its retention and cap; ``clock`` gives "now" (injectable)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time,
                 interval: float = INTERVAL_S, pause: float = PAUSE_S) -> None:
        if not interval > 0 or not pause >= 0:
            raise ValueError(f"interval must be > 0 and pause >= 0, got {interval!r}, {pause!r}")
        self.store = store
        self.clock = clock
        self.interval = interval
        self.pause = pause
        self.last_error = ""  # the last pass's failure (a full disk, say); "" once one works
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_pending(self) -> RetentionReport:
        """Run steps until the store is idle (or :meth:`stop` is called); report them."""
        report = RetentionReport()
        while not self._stop.is_set():
            step = self.store.maintain(self.clock())
            if step.kind == "idle":
                break
            report.add(step)
            self._stop.wait(self.pause)
        self.passes += 1
        return report

    def start(self) -> Self:
        """Start the thread; its first pass runs at once."""
        self._thread = threading.Thread(target=self._run, name="trimtab-history", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pending()
                self.last_error = ""
            except ValueError as exc:  # StoreError is one; so is "store is closed"
                if str(exc) == "store is closed":
                    return
                self.last_error = f"history upkeep failed: {exc}"
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the step in progress (call before closing the store)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
