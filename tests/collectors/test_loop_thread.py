"""LoopThread: one asyncio loop in one named daemon thread (the scrape engine's and PromCollector's)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from trimtab.collectors.loop_thread import LoopThread


def test_start_runs_the_coroutine_on_its_own_loop_in_a_named_daemon_thread() -> None:
    seen: list[tuple[str, bool, bool]] = []
    ran = threading.Event()

    async def main(stop: asyncio.Event) -> None:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon, asyncio.get_running_loop() is runner.loop))
        ran.set()
        await stop.wait()

    runner = LoopThread("trimtab-test-loop", main)
    runner.start()
    try:
        assert runner.loop is not None and runner.thread is not None
        assert ran.wait(5.0)
        assert seen == [("trimtab-test-loop", True, True)]
        assert runner.thread.is_alive()
        # Callbacks scheduled from this thread run on the loop's thread.
        where: list[str] = []
        done = threading.Event()
        runner.call_soon(lambda: (where.append(threading.current_thread().name), done.set()))
        assert done.wait(5.0) and where == ["trimtab-test-loop"]
    finally:
        runner.stop()
    assert not runner.thread.is_alive()
    assert runner.error is None


def test_stop_cancels_what_the_coroutine_awaits_and_lets_it_clean_up() -> None:
    cleaned = threading.Event()

    async def main(stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(3600)  # ignores ``stop``: stop() must still end it
        finally:
            cleaned.set()

    runner = LoopThread("trimtab-test-hang", main)
    runner.start()
    runner.stop(timeout=0.2)  # the coroutine never looks at ``stop``: cancelled after 0.2 s
    assert cleaned.is_set()
    assert runner.thread is not None and not runner.thread.is_alive()
    assert runner.error is None  # a cancellation asked for is no failure


def test_stop_twice_is_harmless() -> None:
    async def main(stop: asyncio.Event) -> None:
        await stop.wait()

    runner = LoopThread("trimtab-test-twice", main)
    runner.start()
    runner.stop()
    runner.stop()  # the loop is closed by now: no "Event loop is closed" error
    assert runner.thread is not None and not runner.thread.is_alive()
    assert runner.error is None


def test_stop_before_start_does_nothing_and_start_still_works() -> None:
    ran = threading.Event()

    async def main(stop: asyncio.Event) -> None:
        ran.set()
        await stop.wait()

    runner = LoopThread("trimtab-test-early", main)
    runner.stop()
    assert runner.thread is None and runner.loop is None and not ran.is_set()
    runner.start()
    assert ran.wait(5.0)
    runner.stop()
    assert runner.thread is not None and not runner.thread.is_alive()


def test_start_twice_is_refused() -> None:
    async def main(stop: asyncio.Event) -> None:
        await stop.wait()

    runner = LoopThread("trimtab-test-restart", main)
    runner.start()
    try:
        first = runner.thread
        with pytest.raises(RuntimeError, match="already started"):
            runner.start()
        assert runner.thread is first
    finally:
        runner.stop()


def test_call_soon_before_start_is_a_clear_error() -> None:
    async def main(stop: asyncio.Event) -> None:
        await stop.wait()

    runner = LoopThread("trimtab-test-unstarted", main)
    with pytest.raises(RuntimeError, match="not running"):
        runner.call_soon(lambda: None)


def test_an_exception_in_the_coroutine_is_kept_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main(stop: asyncio.Event) -> None:
        await asyncio.sleep(0)
        raise ValueError("boom in the loop")

    runner = LoopThread("trimtab-test-boom", main)
    with caplog.at_level(logging.ERROR, logger="trimtab.collectors.loop_thread"):
        runner.start()
        assert runner.thread is not None
        runner.thread.join(5.0)
        runner.stop()  # after the failure: still harmless
    assert isinstance(runner.error, ValueError) and str(runner.error) == "boom in the loop"
    failures = [r for r in caplog.records if "trimtab-test-boom" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert failures[0].exc_info[1] is runner.error


def test_an_exception_before_the_first_await_does_not_leave_start_waiting() -> None:
    async def main(stop: asyncio.Event) -> None:
        raise RuntimeError("fails at once")

    runner = LoopThread("trimtab-test-instant", main)
    runner.start(ready_timeout=30.0)  # must return as soon as the thread ended, not after 30 s
    assert runner.thread is not None
    runner.thread.join(5.0)
    assert isinstance(runner.error, RuntimeError)
    runner.stop()
