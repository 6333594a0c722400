"""Keeps the targets file, the scrape engine and the model in step (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

from . import targets as targets_file
from .model import FleetModel


@dataclass
class TargetManager:
    """Adding or removing a target writes the file first, then tells the engine and model."""

    path: Path
    engine: ScrapeEngine
    model: FleetModel
    token: str = field(default="", repr=False)  # given to new targets in memory, never saved

    def add(self, name: str, url: str, kind: str = "instance", interval: float = 1.0) -> ScrapeTarget:
        """Validate, save and start scraping; raises TargetsError and changes nothing if invalid."""
        target = ScrapeTarget(name, url, kind, interval, timeout=min(10.0, interval * 0.8),
                              token=self.token)
        targets_file.add(self.path, target)
        self.engine.add_target(target)
        return target

    def remove(self, name: str) -> None:
        """Forget a target in the file, the engine and the model."""
        targets_file.remove(self.path, name)
        self.engine.remove_target(name)
        self.model.forget(name)
