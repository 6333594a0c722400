"""The SLO file next to the targets file: ``slos.yaml`` (OpenSLO v1), read whole or not at all.

Saving writes a temporary file beside it and renames it over the old one, so a crash
mid-write leaves the previous definitions, never half of the new ones.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .definition import SLO, SLOError
from .openslo import MAX_BYTES, dumps, loads

FILE_NAME = "slos.yaml"


def slo_path(targets_path: Path) -> Path:
    """Where the SLOs of the cockpit using ``targets_path`` live."""
    return targets_path.parent / FILE_NAME


def load(path: Path) -> list[SLO]:
    """The SLOs in ``path``; none when it does not exist. SLOError names the file on a problem."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SLOError(f"{path}: {exc.strerror or exc}") from None
    if size > MAX_BYTES:
        raise SLOError(f"{path}: over {MAX_BYTES // 1024} KiB, not an SLO file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SLOError(f"{path}: {exc}") from None
    try:
        return loads(text)
    except SLOError as exc:
        raise SLOError(f"{path}: {exc}") from None


def save(path: Path, slos: list[SLO]) -> None:
    """Write ``slos`` to ``path`` atomically (the old file stays whole if this fails)."""
    names = [s.name for s in slos]
    if len(set(names)) != len(names):
        raise SLOError("two SLOs share a name")
    text = dumps(slos)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".slos-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
