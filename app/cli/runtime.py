"""Process-wide settings the cockpit applies once at start-up (composition root only)."""

from __future__ import annotations

import gc
import sys

# How long a thread may keep the GIL while another waits for it (CPython's default: 5 ms).
# The GUI thread gives the GIL up around every Qt call that may block, and takes it back each
# time; while the collector thread runs Python (parse, extract, tick), each take-back waited up
# to the whole interval, so one page refresh of a few dozen Qt calls could wait 100+ ms.
GIL_SWITCH_S = 0.001


def settle_gc() -> None:
    """Move everything alive after start-up (Qt wrappers, imports) out of the collector's reach.

    A full collection then only walks objects created since, so it stays in the
    low milliseconds instead of pausing the GUI thread for ~80 ms (seen on a 2-core machine).
    """
    gc.collect()
    gc.freeze()


def share_gil_with_gui(interval: float = GIL_SWITCH_S) -> None:
    """Make a busy background thread hand the GIL to a waiting GUI thread within ``interval`` s."""
    if not interval > 0:
        raise ValueError(f"GIL switch interval must be a positive number of seconds, not {interval!r}")
    sys.setswitchinterval(interval)


def settle_runtime() -> None:
    """Everything the cockpit does once its window is up: :func:`settle_gc` and a short GIL switch."""
    settle_gc()
    share_gil_with_gui()
