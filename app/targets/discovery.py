"""Applies what discovery finds to the scrape engine and the model (Qt-free).

Each refresh of a source brings its whole current list. Names new to it start being
scraped at once (they show up within one refresh); names it no longer lists stop being
scraped and are marked *gone* in the model (:meth:`FleetModel.depart`): their rows, series
and stored history stay, they never read as down and leave every fleet figure. A
refresh that fails changes nothing and leaves its error for the Fleet page.

A discovered name that is already a target (in the targets file, or found first by
another source) is skipped and named in that source's status, never scraped twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from trimtab.collectors.discovery.config import DiscoveryConfig
from trimtab.collectors.discovery.groups import Discovered
from trimtab.collectors.discovery.runner import DiscoveryRunner
from trimtab.collectors.scrape import ScrapeTarget
from trimtab.collectors.scrape_process import Scraper

from ..model.fleet import FleetModel


@dataclass
class SourceStatus:
    """What the Fleet page says about one discovery source."""

    name: str
    kind: str  # file_sd | dns | http_sd
    targets: dict[str, ScrapeTarget] = field(default_factory=dict)
    error: str = ""  # the last refresh's failure, "" after a good one
    refreshed: float = 0.0  # unix time of the last refresh (good or bad); 0: none yet
    skipped: list[str] = field(default_factory=list)  # names already taken elsewhere

    def summary(self) -> str:
        """One line: ``dns-1 (dns): 3 targets`` plus what went wrong, if anything."""
        if not self.refreshed:
            text = f"{self.name} ({self.kind}): not refreshed yet"
        else:
            count = len(self.targets)
            text = f"{self.name} ({self.kind}): {count} target{'s' if count != 1 else ''}"
        if self.skipped:
            text += f" · skipped (name already used): {', '.join(self.skipped)}"
        if self.error:
            text += f" · refresh failed, keeping the last list: {self.error}"
        return text


_KIND_OF = {"FileSD": "file_sd", "DnsSD": "dns", "HttpSD": "http_sd"}


@dataclass
class DiscoveryApplier:
    """Keeps the engine's and model's targets in step with every discovery source."""

    engine: Scraper
    model: FleetModel
    configs: Sequence[DiscoveryConfig]
    token: str = field(default="", repr=False)  # read token for discovered instances' agents
    taken: Callable[[], Iterable[str]] = tuple  # names of the other targets (the file's)
    clock: Callable[[], float] = time.time
    status: dict[str, SourceStatus] = field(default_factory=dict)
    # Called (discovery thread) after a refresh changed the targets: the cockpit points its
    # control side (TTL and weight changes) at the instances found.
    on_change: Callable[[], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _runner: DiscoveryRunner | None = None

    def __post_init__(self) -> None:
        self._configs = {c.source.name: c for c in self.configs}
        for name, config in self._configs.items():
            kind = _KIND_OF.get(type(config.source).__name__, type(config.source).__name__)
            self.status[name] = SourceStatus(name, kind)

    def start(self) -> DiscoveryApplier:
        """Refresh every source in the background from now on; returns self."""
        if self.configs:
            self._runner = DiscoveryRunner([c.source for c in self.configs], self.apply).start()
        return self

    def stop(self) -> None:
        """Stop refreshing (the targets found keep being scraped until the engine stops)."""
        if self._runner is not None:
            self._runner.stop()

    def origin(self, name: str) -> str | None:
        """The source that found target ``name``, or None."""
        with self._lock:
            return next((s.name for s in self.status.values() if name in s.targets), None)

    def statuses(self) -> list[SourceStatus]:
        """A copy of every source's status (GUI thread)."""
        with self._lock:
            return [SourceStatus(s.name, s.kind, dict(s.targets), s.error, s.refreshed,
                                 list(s.skipped)) for s in self.status.values()]

    def apply(self, source: str, found: list[Discovered] | None, error: str = "") -> None:
        """One refresh of ``source`` (discovery thread): start the joined, depart the gone."""
        now = self.clock()
        config = self._configs[source]
        with self._lock:
            state = self.status[source]
            state.error, state.refreshed = error, now
            if found is None:
                return
            others = set(self.taken()) | {n for s in self.status.values() if s is not state
                                          for n in s.targets}
            wanted: dict[str, ScrapeTarget] = {}
            state.skipped = []
            for item in found:
                if item.name in others:
                    state.skipped.append(item.name)
                    continue
                wanted[item.name] = ScrapeTarget(
                    item.name, item.url, item.kind, config.interval, config.timeout,
                    token=self.token if item.kind == "instance" else "",
                    control_url=item.control_url, service=item.service)
            for name, target in state.targets.items():
                if wanted.get(name) not in (None, target):  # came back at another URL
                    self.engine.remove_target(name)
                elif name not in wanted:
                    # Marked gone once its scraping has stopped (on the engine's thread): a
                    # scrape in flight can then no longer land after the mark and undo it.
                    self.engine.remove_target(name, then=lambda n=name: self.model.depart(
                        n, self.clock()))
            for name, target in wanted.items():
                if state.targets.get(name) != target:
                    self.engine.add_target(target)
            changed, state.targets = wanted != state.targets, wanted
        if changed and self.on_change is not None:
            self.on_change()
