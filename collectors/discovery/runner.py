"""Refreshes discovery sources in one background thread and reports each one's targets.

``on_update(source, targets, error)`` is called from the ``trimtab-discovery`` thread
after every refresh: ``targets`` is the source's whole current list, or None when the
refresh failed (``error`` says why, in one line; the last good list stands — a DNS
server that does not answer must not make the fleet vanish).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import one_line
from ..loop_thread import LoopThread, cancel_all
from .groups import Discovered, DiscoveryError

_log = logging.getLogger(__name__)


class Source(Protocol):
    """A discovery source: a name, a refresh interval, and its current targets."""

    name: str
    refresh: float

    async def discover(self) -> list[Discovered]: ...


Update = Callable[[str, list[Discovered] | None, str], None]


@dataclass
class DiscoveryRunner:
    """Runs ``sources`` until stopped; each refreshes on its own ``refresh`` interval."""

    sources: Sequence[Source]
    on_update: Update
    _runner: LoopThread | None = None

    def start(self) -> DiscoveryRunner:
        """Start the ``trimtab-discovery`` thread (a first refresh of every source right away)."""
        self._runner = LoopThread("trimtab-discovery", self._main)
        self._runner.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop refreshing (any thread; harmless before start and twice)."""
        if self._runner is not None:
            self._runner.stop(timeout)

    async def _main(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._follow(source)) for source in self.sources]
        try:
            await stop.wait()
        finally:
            await cancel_all(tasks)  # again and again if one loses its cancel

    async def _follow(self, source: Source) -> None:
        while True:
            await refresh_once(source, self.on_update)
            await asyncio.sleep(source.refresh)


async def refresh_once(source: Source, on_update: Update) -> None:
    """One refresh of ``source`` reported to ``on_update`` (never raises)."""
    try:
        targets, error = await source.discover(), ""
    except DiscoveryError as exc:
        targets, error = None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one source's bug must not end discovery
        _log.exception("discovery source %s failed", source.name)
        targets, error = None, one_line(f"{type(exc).__name__}: {exc}")
    try:
        on_update(source.name, targets, error)
    except Exception:  # noqa: BLE001 - an applier bug must not end discovery
        _log.exception("applying discovery of %s failed; discovery goes on", source.name)
