"""Stopping the scrape engine while scrapes are in flight: no target's loop outlives stop().

Python 3.11's ``asyncio.wait_for`` returns the awaited call's result and drops a cancel
that comes as that call ends. The engine bounded each fetch with it, so at 200 targets a
stop now and then lost a cancel: that target's loop scraped on, and ``stop()`` waited its
whole 5 s timeout ("trimtab-scrape did not stop within 5 s").
"""

from __future__ import annotations

import asyncio
import logging
import threading

from trimtab.collectors.loop_thread import cancel_all
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget

BODY = ("# TYPE up gauge\nup 1\n", "text/plain; version=0.0.4")


def test_a_cancel_that_comes_as_the_fetch_ends_ends_the_targets_loop() -> None:
    target = ScrapeTarget("t", "http://127.0.0.1:9/metrics", interval=0.2, timeout=0.1)
    scraped: list[ScrapeResult] = []
    engine = ScrapeEngine([target], scraped.append)

    async def main() -> tuple[bool, int]:
        first = asyncio.get_running_loop().create_future()
        fetching = asyncio.Event()

        async def fetch(client: object, t: ScrapeTarget) -> tuple[str, str]:
            fetching.set()
            return await first if not first.done() else BODY

        engine._fetch = fetch  # type: ignore[method-assign]
        loop_task = asyncio.create_task(engine._target_loop(None, target))  # type: ignore[arg-type]
        await fetching.wait()
        await asyncio.sleep(0)
        first.set_result(BODY)  # the fetch ends...
        await asyncio.sleep(0)
        loop_task.cancel()  # ...as the cancel comes
        await asyncio.wait([loop_task], timeout=1.0)  # five more scrapes if it went on
        outcome = loop_task.cancelled(), len(scraped)
        while not loop_task.done():  # a loop that lost its cancel: ended for the next test
            loop_task.cancel()
            await asyncio.wait([loop_task], timeout=0.1)
        return outcome

    cancelled, scrapes = asyncio.run(main())
    assert cancelled and scrapes <= 1


def test_cancel_all_cancels_again_a_task_that_swallowed_its_cancel() -> None:
    swallowed = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.append(True)  # as a lost cancel does: it goes on
        await asyncio.sleep(30)

    async def failing() -> None:
        raise ValueError("its error is retrieved, not logged as never retrieved")

    async def main() -> list[bool]:
        tasks = [asyncio.create_task(stubborn()), asyncio.create_task(failing())]
        await asyncio.sleep(0)
        stopper = asyncio.create_task(cancel_all(tasks))
        await asyncio.wait([stopper], timeout=5.0)  # 30 s if it cancelled once
        return [stopper.done(), tasks[0].cancelled(), tasks[1].done()]

    assert asyncio.run(main()) == [True, True, True]
    assert swallowed == [True]


def test_stop_ends_the_engine_even_when_a_scrape_loses_its_cancel(caplog) -> None:
    target = ScrapeTarget("t", "http://127.0.0.1:9/metrics", interval=0.2, timeout=0.1)
    engine = ScrapeEngine([target], lambda result: None)
    scraping = threading.Event()

    async def losing_scrape(client: object, t: ScrapeTarget) -> ScrapeResult:
        scraping.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # a cancel lost inside the fetch: the loop goes on to its next scrape
        return ScrapeResult(t, 0.0, False, 0.0, error="lost")

    engine.scrape_once = losing_scrape  # type: ignore[method-assign]
    engine.start()
    assert scraping.wait(5.0)
    with caplog.at_level(logging.WARNING):
        engine.stop()
    assert "did not stop" not in caplog.text
    assert engine._thread is not None and not engine._thread.is_alive()


def test_a_removed_target_whose_scrape_loses_its_cancel_stops_all_the_same(caplog) -> None:
    target = ScrapeTarget("t", "http://127.0.0.1:9/metrics", interval=0.2, timeout=0.1)
    engine = ScrapeEngine([target], lambda result: None)
    calls: list[float] = []
    scraping, removed = threading.Event(), threading.Event()

    async def losing_scrape(client: object, t: ScrapeTarget) -> ScrapeResult:
        calls.append(0.0)
        scraping.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # lost: without a second cancel the loop scrapes on every 0.2 s
        return ScrapeResult(t, 0.0, False, 0.0, error="lost")

    engine.scrape_once = losing_scrape  # type: ignore[method-assign]
    engine.start()
    try:
        assert scraping.wait(5.0)
        engine.remove_target("t", then=removed.set)
        assert removed.wait(5.0)
        done = threading.Event()
        for _ in range(50):  # the task and the one cancelling it end
            engine._runner.call_soon(lambda: not engine._leaving and done.set())  # type: ignore[union-attr]
            if done.wait(0.1):
                break
        assert done.is_set()
        scrapes = len(calls)
        threading.Event().wait(0.6)  # three more scrapes if its loop went on
        assert len(calls) == scrapes
    finally:
        with caplog.at_level(logging.WARNING):
            engine.stop()
    assert "did not stop" not in caplog.text
