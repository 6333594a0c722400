"""Helpers the tests share: one polling loop.

Kept here (not in conftest.py) so that test modules import them by name; conftest.py holds
fixtures only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


# ---------------------------------------------------------------- polling

def poll(fn: Callable[[], _T], ok: Callable[[_T], object] = bool, timeout: float = 15.0,
         interval: float = 0.05) -> _T:
    """Call ``fn`` until ``ok(value)`` holds or ``timeout`` seconds pass; the last value.

    Never raises on timeout: callers assert on the value so that a failure shows what was seen.
    ``fn`` is always called at least once, and once more after the deadline is checked.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for(condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.05,
             what: str = "condition") -> None:
    """Block until ``condition()`` is truthy; ``TimeoutError`` naming ``what`` if it never is."""
    if not poll(condition, bool, timeout, interval):
        raise TimeoutError(f"{what} not met within {timeout:g} s")
