"""Runs control-client calls on a worker thread and delivers results on the GUI thread.

The GUI thread never does I/O: ``submit(fn, done)`` runs ``fn()`` in a small pool
and calls ``done(result_or_exception)`` back on the GUI thread through a queued
signal (DESIGN.md: connect worker signals to slots of GUI-thread objects).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot


class ControlRunner(QObject):
    """Background calls with GUI-thread callbacks; ``busy`` counts calls in flight."""

    _finished = Signal(int, object)
    busy_changed = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trimtab-control")
        self._callbacks: dict[int, Callable[[Any], None]] = {}
        self._ids = itertools.count()
        self._finished.connect(self._deliver)
        self._closed = False

    def submit(self, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run ``fn`` off the GUI thread; ``done`` gets its result, or the exception it raised.

        After :meth:`shutdown` (the window closed) calls are dropped: nothing is left to show them.
        """
        if self._closed:
            return
        call_id = next(self._ids)
        self._callbacks[call_id] = done
        self.busy_changed.emit(len(self._callbacks))

        def run() -> None:
            try:
                result: Any = fn()
            except Exception as exc:  # noqa: BLE001 - delivered to the caller, shown to the user
                result = exc
            self._finished.emit(call_id, result)

        self._pool.submit(run)

    @Slot(int, object)
    def _deliver(self, call_id: int, result: Any) -> None:
        done = self._callbacks.pop(call_id, None)
        self.busy_changed.emit(len(self._callbacks))
        if done is not None:
            done(result)

    @property
    def busy(self) -> int:
        return len(self._callbacks)

    def shutdown(self) -> None:
        self._closed = True
        self._callbacks.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
