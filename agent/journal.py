"""An append-only journal of every change, accepted or refused, kept across restarts.

API (stable; the balancer's control API reuses it)::

    journal = Journal("/var/lib/trimtab/journal.jsonl")   # or Journal(None): memory only
    entry = journal.record(who="alice", target="api-1", what="routes./search.ttl",
                           old=10.0, new=30.0, reason="peak hour", result=ACCEPTED)
    journal.list(since_id=None, limit=None)  # -> list[JournalEntry], ascending id
    journal.get(entry_id)                    # -> JournalEntry | None
    entry.to_dict()                          # JSON-ready dict

- An entry: ``id`` (1, 2, ...), ``time`` (unix seconds), ``who``, ``target``,
  ``what``, ``old``, ``new``, ``reason``, ``result`` (``"accepted"`` or
  ``"refused"``), ``detail`` (why it was refused, or ""), ``reverts`` (the id
  this entry undoes, or None). ``old``/``new`` are any JSON values; what cannot
  be encoded as strict JSON (``inf``/``nan``, a value nested deeper than
  ``MAX_DEPTH``, a non-JSON type) is stored as a short string in its place, so
  recording a refused bad value never fails.
- Revert is a new change: the caller applies ``journal.get(id).old`` itself
  (only it knows how) and records an entry with ``reverts=id``.
- Persistence: one JSON object per line, appended and ``fsync``-ed before
  ``record`` returns, so an acknowledged entry survives a crash. The file is
  shared safely by several processes (e.g. ``uvicorn --workers N``): an
  exclusive ``flock`` serialises appends and each process catches up with
  lines others wrote, so ids stay unique and ascending. A torn last line (a
  crash mid-write) is skipped and counted in ``skipped_lines``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MAX_DEPTH = 32  # journaled values are config fields: anything deeper is an attack's payload
ACCEPTED = "accepted"
REFUSED = "refused"
RESULTS = (ACCEPTED, REFUSED)


@dataclass(frozen=True)
class JournalEntry:
    """One change attempt."""

    id: int
    time: float
    who: str
    target: str
    what: str
    old: Any
    new: Any
    reason: str
    result: str
    detail: str = ""
    reverts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


class Journal:
    """Append-only; ``path=None`` keeps entries in memory only (tests, throwaway runs)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: list[JournalEntry] = []
        self._offset = 0  # bytes of the file already parsed into _entries
        self._lock = threading.Lock()
        self.skipped_lines = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked_file(fcntl.LOCK_SH) as fh:
                self._catch_up(fh)

    def record(self, *, who: str, target: str, what: str, old: Any, new: Any, reason: str = "",
               result: str = ACCEPTED, detail: str = "", reverts: int | None = None
               ) -> JournalEntry:
        """Append one entry durably and return it (with its id)."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, got {result!r}")
        # A refused change is often refused *because* its value is not representable
        # (inf, 10**400, 30,000 levels of nesting): store a safe stand-in, never raise.
        old, new = json_safe(old), json_safe(new)
        with self._lock:
            if self.path is None:
                entry = self._make(who, target, what, old, new, reason, result, detail, reverts)
                self._entries.append(entry)
                return entry
            with self._locked_file(fcntl.LOCK_EX) as fh:
                self._catch_up(fh)
                entry = self._make(who, target, what, old, new, reason, result, detail, reverts)
                line = json.dumps(entry.to_dict(), separators=(",", ":"), allow_nan=False) + "\n"
                fh.seek(0, os.SEEK_END)
                if fh.tell() > 0 and not self._ends_with_newline(fh):
                    fh.write(b"\n")  # seal a torn line so ours starts clean
                fh.write(line.encode())
                fh.flush()
                os.fsync(fh.fileno())
                self._offset = fh.tell()
                self._entries.append(entry)
                return entry

    def list(self, since_id: int | None = None, limit: int | None = None) -> list[JournalEntry]:
        """Entries with id > ``since_id`` (all when None), oldest first, at most ``limit``."""
        with self._lock:
            if self.path is not None:
                with self._locked_file(fcntl.LOCK_SH) as fh:
                    self._catch_up(fh)
            start = 0 if since_id is None else self._first_after(since_id)
            stop = None if limit is None else start + max(0, limit)
            return self._entries[start:stop]

    def get(self, entry_id: int) -> JournalEntry | None:
        """The entry with that id, or None."""
        found = self.list(since_id=entry_id - 1, limit=1)
        return found[0] if found and found[0].id == entry_id else None

    @property
    def last_id(self) -> int:
        """Id of the newest entry this process has seen (0 when empty)."""
        return self._entries[-1].id if self._entries else 0

    def _make(self, who: str, target: str, what: str, old: Any, new: Any, reason: str,
              result: str, detail: str, reverts: int | None) -> JournalEntry:
        return JournalEntry(self.last_id + 1, time.time(), who, target, what, old, new,
                            reason, result, detail, reverts)

    def _first_after(self, since_id: int) -> int:
        lo, hi = 0, len(self._entries)
        while lo < hi:  # ids ascend: binary search
            mid = (lo + hi) // 2
            if self._entries[mid].id <= since_id:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _locked_file(self, mode: int) -> _LockedFile:
        assert self.path is not None
        return _LockedFile(self.path, mode)

    def _catch_up(self, fh: Any) -> None:
        """Parse complete lines appended since our last read (by us or another process)."""
        fh.seek(self._offset)
        data = fh.read()
        end = data.rfind(b"\n") + 1  # an incomplete tail is left for later (or sealed)
        for raw in data[:end].splitlines():
            entry = _parse(raw)
            if entry is None or (self._entries and entry.id <= self._entries[-1].id):
                self.skipped_lines += 1
                continue
            self._entries.append(entry)
        self._offset += end

    @staticmethod
    def _ends_with_newline(fh: Any) -> bool:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(0, os.SEEK_END)
        return bool(last == b"\n")


class _LockedFile:
    """Open the journal read+append under ``flock``; released on exit."""

    def __init__(self, path: Path, mode: int) -> None:
        self._path, self._mode = path, mode

    def __enter__(self) -> Any:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._fh = os.fdopen(fd, "r+b")
        fcntl.flock(self._fh.fileno(), self._mode)
        return self._fh

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()


def json_safe(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` always encodes.

    Non-finite floats become their repr (``"inf"``), oversized ints, other types
    and anything nested deeper than :data:`MAX_DEPTH` a short descriptive string.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else _short(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        return f"<{type(value).__name__} nested deeper than {MAX_DEPTH} levels>"
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value]
    return _short(value)


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return f"<int of {value.bit_length()} bits>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _parse(raw: bytes) -> JournalEntry | None:
    try:
        data = json.loads(raw)
        return JournalEntry(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None
