"""Keeps the targets file, the collectors and the model in step (Qt-free).

Instances and balancers are scraped by the one scraper (:data:`Scraper`); each
``kind = "prometheus"`` target gets its own :class:`PromCollector` feeding the same
model (the engine's cycle ticks the model, so the collectors do not). Targets found by
``[[discovery]]`` tables come and go through :attr:`TargetManager.discovery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trimtab.collectors.mappings import MappingTable
from trimtab.collectors.prometheus.source import PromCollector, PromSource
from trimtab.collectors.scrape import ScrapeTarget
from trimtab.collectors.scrape_process import Scraper

from ..model.fleet import FleetModel
from . import file as targets_file
from .discovery import DiscoveryApplier


@dataclass
class TargetManager:
    """Adding or removing a target writes the file first, then tells the collectors and model."""

    path: Path
    engine: Scraper
    model: FleetModel
    token: str = field(default="", repr=False)  # given to new targets in memory, never saved
    tables: Sequence[MappingTable] | None = None  # mapping tables (None: built-ins)
    collectors: dict[str, PromCollector] = field(default_factory=dict)
    _unsaved: set[str] = field(default_factory=set)  # Prometheus sources from the command line
    # Names of the targets this manager keeps (the file's and Prometheus sources): a
    # discovered target of the same name is skipped.
    names: set[str] = field(default_factory=set)
    discovery: DiscoveryApplier | None = None

    def discover(self, configs: list[targets_file.DiscoveryConfig]) -> DiscoveryApplier:
        """Start following ``configs`` (the file's ``[[discovery]]`` tables)."""
        self.discovery = DiscoveryApplier(self.engine, self.model, configs, self.token,
                                          taken=lambda: tuple(self.names)).start()
        return self.discovery

    def add(self, name: str, url: str, kind: str = "instance", interval: float = 1.0,
            token_env: str = "", service: str = "") -> ScrapeTarget:
        """Validate, save and start collecting; raises TargetsError and changes nothing if invalid.

        ``token_env``: for a Prometheus source, the environment variable holding its bearer
        token (it must be set now). ``service``: the service it is an instance of
        (``""``: the unnamed one).
        """
        target = ScrapeTarget(name, url, kind, interval, timeout=min(10.0, interval * 0.8),
                              token=self.token if kind != targets_file.PROMETHEUS else "",
                              token_env=token_env, service=service)
        if name in self.collectors:  # a command-line source is not in the file
            raise targets_file.TargetsError(f"target {name!r}: the name is already used")
        found_by = self.discovery.origin(name) if self.discovery is not None else None
        if found_by is not None:
            raise targets_file.TargetsError(f"target {name!r}: the name is already used "
                                            f"(discovered by {found_by})")
        targets_file.validate(target)
        targets_file.auth_headers(target)  # an unset variable: refused before the file changes
        targets_file.add(self.path, target)
        self.names.add(name)
        if kind == targets_file.PROMETHEUS:
            self.start_prometheus(target)
        else:
            self.engine.add_target(target)
        return target

    def start_prometheus(self, target: ScrapeTarget, saved: bool = True) -> PromCollector:
        """Poll the Prometheus server ``target`` into the model (``saved``: it is in the file)."""
        targets_file.validate(target)
        if target.name in self.collectors:
            raise targets_file.TargetsError(f"target {target.name!r}: the name is already used")
        # A slow answer only delays the next poll (polls never overlap), so the timeout is
        # not held below the interval as a scrape's is: a loaded Prometheus is not "down".
        source = PromSource(target.url, name=target.name, tables=self.tables,
                            interval=target.interval, timeout=max(target.timeout, 5.0),
                            headers=targets_file.auth_headers(target),
                            service_from=target.service_from)
        collector = self.collectors[target.name] = PromCollector(source, self.model.ingest).start()
        self.names.add(target.name)
        if not saved:
            self._unsaved.add(target.name)
        return collector

    def remove(self, name: str) -> None:
        """Forget a target in the file, its collector and the model (a Prometheus source's
        targets go with it). A discovered target is refused: it follows its source."""
        found_by = self.discovery.origin(name) if self.discovery is not None else None
        if found_by is not None:
            raise targets_file.TargetsError(f"target {name!r} was found by discovery "
                                            f"({found_by}): remove it there")
        if name not in self._unsaved:
            targets_file.remove(self.path, name)
        self._unsaved.discard(name)
        self.names.discard(name)
        collector = self.collectors.pop(name, None)
        if collector is None:
            self.engine.remove_target(name)
            self.model.forget(name)
            return
        collector.stop()
        for reported in collector.source.names():
            self.model.forget(reported)

    def discovered(self) -> list[ScrapeTarget]:
        """The targets discovery follows now (with the read token), for a snapshot's list."""
        if self.discovery is None:
            return []
        return [t for s in self.discovery.statuses() for t in s.targets.values()]

    def close(self) -> None:
        """Stop discovery and every Prometheus collector (the engine is stopped by its owner)."""
        if self.discovery is not None:
            self.discovery.stop()
        for collector in self.collectors.values():
            collector.stop()
        self.collectors.clear()
