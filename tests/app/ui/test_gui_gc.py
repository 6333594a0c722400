"""Garbage cycles holding Qt objects are freed on the GUI thread, never by a worker.

The regression: a closed window's cyclic garbage, freed by the scrape thread's automatic
collection, deadlocked that thread with the GUI thread (Qt's connection mutex against the
GIL) and the heatmap GUI test hung. The package fixture ``gui_thread_gc`` (conftest.py)
runs a GuiThreadCollector for every app test, as the cockpit's ``_qt_app`` does.
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer
from trimtab.app.ui.gc import GuiThreadCollector
from trimtab.collectors.exposition import TargetParser

HIST = "trimtab_http_request_duration_seconds"
BODY = f"# TYPE {HIST} histogram\n" + "".join(
    f'{HIST}_bucket{{route="/r{i}",le="{le}"}} {i}\n' for i in range(200) for le in ("0.1", "+Inf"))


class Page(QObject):
    """Like a closed window's page: Python-owned Qt objects in a reference cycle."""

    def __init__(self) -> None:
        super().__init__()
        self.timer = QTimer()  # no parent: freeing the wrapper deletes the C++ timer
        self.timer.timeout.connect(self.tick)  # the bound method: one more cycle
        self.me = self

    def tick(self) -> None:
        pass


def garbage_page(freed_on: list[str]) -> weakref.ref:
    page = Page()
    weakref.finalize(page, lambda: freed_on.append(threading.current_thread().name))
    return weakref.ref(page)


def scrape_thread_work() -> None:
    """What the scrape thread does between two GUI events: parse (which pauses the collector
    and, when it is on, collects the young generation itself) and allocate cycles."""
    parser = TargetParser()
    for _ in range(5):
        parser.parse(BODY)
        junk = []
        for _ in range(20_000):
            a: dict = {}
            a["self"] = a
            junk.append(a)


def test_a_workers_allocations_and_parses_never_free_qt_garbage(qtbot, gui_thread_gc) -> None:
    assert gui_thread_gc.active and not gc.isenabled()
    freed_on: list[str] = []
    gc.collect(0)  # the page is young: the first collection anywhere would find it
    page = garbage_page(freed_on)
    worker = threading.Thread(target=scrape_thread_work, name="scrape-like")
    worker.start()
    worker.join()
    assert page() is not None and freed_on == []  # the worker collected nothing
    qtbot.waitUntil(lambda: page() is None, timeout=10_000)  # the collector's timer
    assert freed_on == ["MainThread"]


def test_old_garbage_goes_in_a_full_pass_once_enough_grew_old(qtbot) -> None:
    """A collector of its own, started with everything earlier tests left frozen: how
    soon a full pass is due depends on the size of the oldest generation, which in the
    full suite is millions of objects (it failed in CI with a fixed allocation budget)."""
    gc.freeze()
    collector = GuiThreadCollector()
    try:
        collector.start()
        freed_on: list[str] = []
        page = Page()
        weakref.finalize(page, lambda: freed_on.append(threading.current_thread().name))
        gc.collect(1)  # alive: it moves to the oldest generation, which only a full pass walks
        ref, page = weakref.ref(page), None
        kept = []
        for _ in range(50_000):  # objects that stay alive, as a running cockpit's do
            kept.append([{} for _ in range(20)])
            if collector.collect_due() and ref() is None:
                break
        assert ref() is None and freed_on == ["MainThread"]
    finally:
        collector.stop()
        gc.unfreeze()


def test_collect_due_keeps_automatic_collection_off(gui_thread_gc) -> None:
    # A parse that paused the collector while it started turns it back on when it ends.
    gc.enable()
    try:
        gui_thread_gc.collect_due()
        assert not gc.isenabled()
    finally:
        gc.disable()


def test_stop_frees_what_is_left_here_and_restores_automatic_collection(qtbot) -> None:
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()  # nothing Qt left for another thread while collection is briefly automatic
    gc.enable()
    try:
        collector = GuiThreadCollector()
        assert collector.start() is collector.start() and not gc.isenabled()  # start: once
        freed_on: list[str] = []
        page = garbage_page(freed_on)
        collector.stop()
        assert page() is None and freed_on == ["MainThread"]
        assert gc.isenabled() and not collector.active
        collector.stop()  # a second stop changes nothing
        assert gc.isenabled()
    finally:
        gc.disable()  # the package's collector keeps it off


@pytest.mark.parametrize("interval", [0, -250, 0.5, True, "250", None])
def test_bad_interval_is_refused(interval: object) -> None:
    enabled = gc.isenabled()
    with pytest.raises(ValueError, match="interval_ms must be a positive whole number"):
        GuiThreadCollector(interval_ms=interval)
    assert gc.isenabled() == enabled


def test_only_the_gui_thread_may_create_one() -> None:
    errors: list[BaseException] = []

    def create() -> None:
        try:
            GuiThreadCollector()
        except RuntimeError as exc:
            errors.append(exc)

    worker = threading.Thread(target=create)
    worker.start()
    worker.join()
    assert len(errors) == 1 and "GUI thread" in str(errors[0])
    assert not gc.isenabled()  # nothing switched


def test_the_middle_generation_is_walked_after_every_few_young_passes(qtbot, gui_thread_gc) -> None:
    """Survivors of young passes are walked once in a middle pass however often it runs;
    after every MIDDLE_EVERY young passes (not CPython's 10) each pass is that much smaller:
    at 200 targets one was a 35-43 ms stall of the window (issue 16)."""
    from trimtab.app.ui.gc import MIDDLE_EVERY

    assert MIDDLE_EVERY < gc.get_threshold()[1]  # sooner than CPython's own rule
    collector = GuiThreadCollector()
    passes: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            passes.append(info["generation"])

    kept: list[list[dict]] = []
    gc.collect(1)  # start with no young pass counted towards the middle one
    gc.callbacks.append(record)
    try:
        for _ in range(4 * (MIDDLE_EVERY + 1)):
            kept.append([{"n": i} for i in range(2 * gc.get_threshold()[0])])  # a young pass due
            collector.collect_due()
    finally:
        gc.callbacks.remove(record)
    assert 2 not in passes, passes  # nothing here makes a full pass due
    assert passes == ([0] * MIDDLE_EVERY + [1]) * 4, passes


def test_a_full_pass_waits_until_the_oldest_generation_really_grew(qtbot) -> None:
    """Objects a middle pass moves to the oldest generation that die there by reference
    count (a scrape's, alive at that moment) do not make a full pass due: with middle passes
    every few young ones, counting them made full passes, the longest stalls of the window,
    several times as frequent (found by review)."""
    from trimtab.app.ui.gc import MIDDLE_EVERY

    passes: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            passes.append(info["generation"])

    def rounds(stay: bool) -> list:
        kept = []
        for _ in range(30):
            batch = [[] for _ in range(15_000)]  # lists: always tracked
            for _ in range(MIDDLE_EVERY + 1):  # young passes and a middle one: it grows old
                collector.collect_due()
                pad = [[] for _ in range(1_000)]  # the next young pass due
            if stay:
                kept.append(batch)
            del batch, pad  # otherwise it dies now, in the oldest generation
        return kept

    gc.freeze()
    base = [[] for _ in range(100_000)]  # the cockpit's long-lived objects
    gc.collect()
    collector = GuiThreadCollector()
    gc.callbacks.append(record)
    try:
        collector.start()
        rounds(stay=False)
        assert passes.count(1) >= 10 and 2 not in passes, passes
        kept = rounds(stay=True)  # objects that stay: the oldest generation really grows
        assert 2 in passes, passes
        del kept
    finally:
        gc.callbacks.remove(record)
        collector.stop()
        gc.unfreeze()
    del base
