"""What a replay window shows: a replayer over a source, with the source's journal, notes and
annotations; built from a snapshot file or a range of the live store (Qt-free)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .limits import RecordedLimits
from .replayer import Replayer


@dataclass
class ReplaySession:
    """What a replay window shows: a replayer over a source, plus the source's journal and notes."""

    title: str
    replayer: Replayer
    journal: list[Any] = field(default_factory=list)
    notes: str = ""
    source: Any = None
    annotations: list[dict[str, Any]] = field(default_factory=list)  # time, text, kind, target
    owns_source: bool = False  # a snapshot file is closed with its window; the live store is not

    def close(self) -> None:
        if self.owns_source and self.source is not None:
            self.source.close()


def snapshot_session(path: str | Path) -> ReplaySession:
    """Open a snapshot file and a replayer over its whole window (ValueError says why not)."""
    from ..snapshot.open import open_snapshot

    snap = open_snapshot(path)
    try:
        replayer = Replayer.for_window(snap, *snap.window, traces=snap.traces())
        journal = snap.journal()
        replayer.limits = RecordedLimits.from_source(snap, journal)
        return ReplaySession(f"{Path(path).name} — read-only snapshot", replayer, journal,
                             snap.notes, snap, snap.annotations(), owns_source=True)
    except Exception:
        snap.close()
        raise


def store_session(store: Any, start: float, end: float, journal: list[Any]) -> ReplaySession:
    """A replayer over ``[start, end]`` of the live store (read-only history)."""
    replayer = Replayer.for_window(store, start, end)
    title = f"history {_local(start)} – {_local(end)} — read-only"
    return ReplaySession(title, replayer, [r for r in journal if start <= r.time <= end],
                         "", store)


def _local(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))
