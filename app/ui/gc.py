"""Python's cyclic garbage collection on the GUI thread only, while Qt objects are about.

CPython runs a cyclic collection in whichever thread happens to allocate when a
threshold is crossed, often the scrape thread. A closed window leaves cyclic garbage
that holds Python-owned Qt objects (pyqtgraph's SignalProxy timers and menus, item
models). Freed on a worker thread, ``QObject::~QObject`` takes one of Qt's connection
mutexes and then waits for the GIL (PySide looks up a Python override), while the GUI
thread holds the GIL inside a Qt call (``connect``, a delete) that waits for that same
mutex: both threads stop for good. py-spy showed exactly that on a hung test run:
``trimtab-scrape`` in ``gc_collect_main → ~QObject → GilState::acquire``, ``MainThread``
in ``QObject::connectImpl → QBasicMutex::lockInternal``.

:class:`GuiThreadCollector` turns automatic collection off and runs it from a timer on
the GUI thread instead (pyqtgraph's ``GarbageCollector`` does the same, without
CPython's rule that keeps full collections rare).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QThread, QTimer, Slot

COLLECT_INTERVAL_MS = 250  # young garbage waits at most this long (gen 0: a few ms to walk)
FULL_RATIO = 0.25  # CPython's rule: a full pass only once survivors grew the old gen by 25 %
# The middle generation is walked after every MIDDLE_EVERY young passes, not CPython's 10:
# each object that outlives a young pass is walked once in a middle pass either way, so the
# passes are as many times smaller (at 200 targets: 35-43 ms every 2.5 s, an event-loop stall
# the operator sees, became ~12 ms every 0.75 s).
MIDDLE_EVERY = 3


class GuiThreadCollector(QObject):
    """While started, no thread collects cycles by itself; a timer on the GUI thread
    collects the generations that are due, with CPython's own thresholds.

    Create and start it on the GUI thread, before worker threads start if possible.
    ``stop`` frees what is left (deferred deletes first) on this thread, then turns
    automatic collection back on if it was on.
    """

    def __init__(self, parent: QObject | None = None,
                 interval_ms: int = COLLECT_INTERVAL_MS) -> None:
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int) or interval_ms <= 0:
            raise ValueError(f"interval_ms must be a positive whole number, not {interval_ms!r}")
        app = QCoreApplication.instance()
        if app is None or QThread.currentThread() is not app.thread():
            raise RuntimeError("GuiThreadCollector must be created on the GUI thread, "
                               "after the QApplication")
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_due)
        self._was_enabled: bool | None = None
        self._old_total = 0  # objects in the oldest generation after the last full pass
        self._pending = 0  # objects moved into it since (upper bound: gens 0-1 before a pass)

    @property
    def active(self) -> bool:
        return self._was_enabled is not None

    def start(self) -> GuiThreadCollector:
        """Turn automatic collection off and collect from the GUI thread's timer instead."""
        if self.active:
            return self
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._old_total, self._pending = len(gc.get_objects(2)), 0
        self._timer.start()
        return self

    @Slot()
    def collect_due(self) -> int:
        """One pass over the oldest generation that is due (as CPython picks it, but the
        middle one after MIDDLE_EVERY young passes); returns the unreachable objects found."""
        if gc.isenabled():
            # A parse pausing the collector (collectors.expo_types) when we started turns
            # it back on when it ends; keep it off, or worker threads collect again.
            gc.disable()
        threshold, count = gc.get_threshold(), gc.get_count()
        if threshold[0] == 0:  # the application turned cyclic collection off altogether
            return 0
        due = [g for g in (2, 1, 0) if (count[g] >= MIDDLE_EVERY if g == 1 else count[g] > threshold[g])]
        if due[:1] == [2] and self._pending <= FULL_RATIO * self._old_total:
            due.pop(0)  # as CPython: a full pass waits until enough objects grew old
        elif due[:1] == [2]:
            # The estimate counts all that middle passes moved to the oldest generation, also
            # what died there since (a scrape's objects alive at that moment): look at what
            # it holds now, and walk it all only once it really grew by FULL_RATIO.
            grown = len(gc.get_objects(2)) - self._old_total
            if grown <= FULL_RATIO * self._old_total:
                self._pending = max(0, grown)
                due.pop(0)
        if not due:
            return 0
        generation = due[0]
        if generation == 1:  # what survives it moves to the oldest generation
            self._pending += len(gc.get_objects(0)) + len(gc.get_objects(1))
        found = gc.collect(generation)
        if generation == 2:
            self._old_total, self._pending = len(gc.get_objects(2)), 0
        return found

    def stop(self) -> None:
        """Free the remaining garbage here, then restore automatic collection as it was."""
        if not self.active:
            return
        self._timer.stop()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None
