"""The thread behind a replay window: loads a session, then serves seeks and percentile changes.

Everything slow (opening the file, replaying cycles, seeking) runs here;
results go back to the GUI thread as queued signals.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from ...replay.session import ReplaySession

_log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The user cancelled a load."""


class ReplayWorker(QObject):
    """Owns one session on its own thread: loads it, then serves seeks (newest request wins)."""

    progress = Signal(int)  # percent
    ready = Signal(object)  # ReplaySession
    failed = Signal(str)  # empty when cancelled
    moved = Signal(float)  # the replay clock after a seek
    levels_changed = Signal(object)  # tuple of percentile fractions now derived by the model

    def __init__(self, opener: Callable[[], ReplaySession]) -> None:
        super().__init__()
        self._opener = opener
        # a float is a seek, a tuple the percentiles to derive, None the end
        self._requests: queue.SimpleQueue[float | tuple[float, ...] | None] = queue.SimpleQueue()
        self.cancelled = False
        self.session: ReplaySession | None = None
        self._thread = threading.Thread(target=self._run, name="trimtab-replay", daemon=True)

    def start(self) -> ReplayWorker:
        self._thread.start()
        return self

    def seek(self, t: float) -> None:
        """Ask for the clock to move to ``t`` (any thread)."""
        self._requests.put(float(t))

    def set_levels(self, levels: tuple[float, ...]) -> None:
        """Ask for the percentiles ``levels`` (fractions) to be derived again (any thread)."""
        self._requests.put(tuple(levels))

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current step, close the session's source, end the thread."""
        self.cancelled = True
        self._requests.put(None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _check_cancelled(self, _fraction: float) -> None:
        """Progress hook of seeks after loading: no dialog any more, only the way out."""
        if self.cancelled:
            raise Cancelled

    def _progress(self, fraction: float) -> None:
        if self.cancelled:
            raise Cancelled
        self.progress.emit(int(fraction * 100))

    def _run(self) -> None:
        session: ReplaySession | None = None
        try:
            session = self._opener()
            session.replayer.seek(session.replayer.end, self._progress)
            self.session = session
            self.ready.emit(session)
            self.moved.emit(session.replayer.clock)
            self._serve(session)
        except Cancelled:
            if self.session is None:  # cancelled while loading: the launcher drops it
                self.failed.emit("")
        except (ValueError, OSError) as exc:  # SnapshotError, ReplayError and StoreError too
            self.failed.emit(str(exc) if self.session is None else f"replay stopped: {exc}")
        except Exception as exc:  # noqa: BLE001 - never a dead thread behind an open dialog
            _log.exception("replay worker failed")
            self.failed.emit(f"replay failed: {type(exc).__name__}: {exc}")
        finally:
            if session is not None:  # also when cancelled or failed after opening (no leak)
                session.close()

    def _serve(self, session: ReplaySession) -> None:
        while True:
            seek, levels, done = self._next_requests()
            if done:
                return
            # With the progress hook a long replay stops at the next step when the window
            # closes, so closing never waits for a whole window to be replayed.
            if levels is not None:  # replays from the start: before the seek
                self.moved.emit(session.replayer.set_quantiles(levels, self._check_cancelled))
                self.levels_changed.emit(levels)
            if seek is not None:
                self.moved.emit(session.replayer.seek(seek, self._check_cancelled))

    def _next_requests(self) -> tuple[float | None, tuple[float, ...] | None, bool]:
        """Wait for a request, then take every queued one: the newest seek and the newest
        percentiles win (a drag of the scrubber queues many seeks)."""
        seek: float | None = None
        levels: tuple[float, ...] | None = None
        item = self._requests.get()
        while True:
            if item is None:
                return seek, levels, True
            if isinstance(item, tuple):
                levels = item
            else:
                seek = item
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                return seek, levels, False
