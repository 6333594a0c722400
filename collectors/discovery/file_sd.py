"""Prometheus ``file_sd``: target groups in JSON or YAML files, re-read as they change.

``files`` are paths or globs (``targets/*.json``); a file is read again when its
modification time, size or inode changed, checked every ``refresh`` seconds (a stat per
file: cheap, and it works where file-change notification does not, e.g. on network
mounts). Each target carries ``__meta_filepath`` as in Prometheus. A glob matching no
file gives no targets; a file that cannot be read or parsed is an error naming it (the
runner keeps the last good list meanwhile).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .groups import Discovered, DiscoveryError, parse_groups, to_targets

SUFFIXES = (".json", ".yml", ".yaml")


@dataclass
class FileSD:
    """Targets from Prometheus file_sd files."""

    files: Sequence[str]
    refresh: float = 5.0
    name: str = "file_sd"
    _seen: dict[str, tuple[tuple[int, int, int], list[Discovered]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pattern in self.files:
            if not pattern.endswith(SUFFIXES):
                raise DiscoveryError(f"file_sd {pattern!r}: must end in .json, .yml or .yaml")

    def paths(self) -> list[str]:
        """The files the globs match now, sorted, each once."""
        found: dict[str, None] = {}
        for pattern in self.files:
            for path in sorted(glob.glob(os.path.expanduser(pattern))):
                found.setdefault(path)
        return list(found)

    async def discover(self) -> list[Discovered]:
        """Every target in every matched file (files unchanged since last time are not re-read)."""
        out: dict[str, Discovered] = {}
        current = self.paths()
        for path in current:
            for target in self._read(path):
                out.setdefault(target.name, target)
        for gone in set(self._seen) - set(current):
            del self._seen[gone]
        return list(out.values())

    def _read(self, path: str) -> list[Discovered]:
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            seen = self._seen.get(path)
            if seen is not None and seen[0] == stamp:
                return seen[1]
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:  # removed between glob and read: it has no targets now
            self._seen.pop(path, None)
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise DiscoveryError(f"{path}: cannot read: {exc}") from None
        targets = to_targets(parse_groups(load_text(text, path), path), {"__meta_filepath": path})
        self._seen[path] = (stamp, targets)
        return targets


def load_text(text: str, path: str) -> Any:
    """The document in ``text``: JSON for ``.json``, YAML otherwise (as Prometheus decides)."""
    try:
        if path.endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text) if text.strip() else []
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.endswith(".json") else "YAML"
        raise DiscoveryError(f"{path}: not valid {kind}: {' '.join(str(exc).split())}") from None
