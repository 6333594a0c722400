"""One asyncio loop in one named daemon thread: what ScrapeEngine and PromCollector run on.

``main(stop)`` is a coroutine factory: it gets an :class:`asyncio.Event` of the loop and
should return once the event is set (``stop()`` sets it from any thread). A coroutine
that ignores it past the stop timeout is cancelled. Whatever the coroutine raises is
logged with the thread's name and kept in :attr:`LoopThread.error`, not lost in a
thread nobody joins.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

_log = logging.getLogger(__name__)
Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
# A coroutine that ignored its stop event gets this long (at most) to unwind once cancelled.
_CANCEL_GRACE = 1.0


async def cancel_all(tasks: list[asyncio.Task[Any]], recancel_s: float = 0.05) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again any that goes on.

    A task can lose a cancel: Python 3.11's ``asyncio.wait_for`` returns the inner result
    and drops a cancel that comes as the awaited call ends (and so may any library that
    catches ``CancelledError`` in the wrong place). One cancel and a ``gather`` then wait
    for a loop that scrapes on forever. Exceptions the tasks ended with are retrieved.
    """
    pending = [task for task in tasks if not task.done()]
    while pending:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=recancel_s)
        pending = [task for task in pending if not task.done()]
    await asyncio.gather(*tasks, return_exceptions=True)  # all done: only retrieves


class LoopThread:
    """Runs ``main(stop)`` on a new event loop in a daemon thread called ``name``."""

    def __init__(self, name: str, main: Main) -> None:
        self.name = name
        self._main = main
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[Any] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The thread, once started."""
        return self._thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop, once the thread has started it (None before)."""
        return self._loop

    @property
    def error(self) -> BaseException | None:
        """What the coroutine raised, if it ended that way (a requested cancel is no error)."""
        return self._error

    def start(self, ready_timeout: float = 5.0) -> None:
        """Start the thread; wait (at most ``ready_timeout`` s) until its loop runs.

        Once this returns, :attr:`loop` is set and :meth:`call_soon` works. A LoopThread
        runs once: starting it again is a RuntimeError.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(ready_timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Set the stop event (any thread) and join the thread for ``timeout`` s.

        Harmless before start() and after the loop ended (twice, or after a failure).
        A coroutine still running after ``timeout`` is cancelled and given a short grace.
        """
        self._call(self._stop.set if self._stop is not None else None)
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive() and self._task is not None:
            _log.warning("%s did not stop within %g s; cancelling it", self.name, timeout)
            self._call(self._task.cancel)
            thread.join(min(timeout, _CANCEL_GRACE))

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback(*args)`` on the loop's thread (any thread may call this)."""
        if self._loop is None:
            raise RuntimeError(f"{self.name}: not running (start() it first)")
        self._loop.call_soon_threadsafe(callback, *args)

    def _call(self, callback: Callable[[], object] | None) -> None:
        loop = self._loop
        if loop is None or callback is None:
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop already ended (stopped before, or the coroutine failed)
            pass

    def _run(self) -> None:
        try:
            asyncio.run(self._body())
        except asyncio.CancelledError:  # stop() cancelled a coroutine that ignored its event
            pass
        except BaseException as exc:  # noqa: BLE001 - kept and logged: a thread's error is lost otherwise
            self._error = exc
            _log.exception("%s: its loop's coroutine failed", self.name)
        finally:
            self._ready.set()  # never leave start() waiting on a thread that already ended

    async def _body(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.current_task()
        # Published last: whoever sees the loop may also rely on the stop event and the task.
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._main(self._stop)
