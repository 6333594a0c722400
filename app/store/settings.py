"""Cockpit settings: ``settings.toml`` next to the targets file, overridden by CLI flags.

Each setting is declared once in :data:`SETTINGS` with its type, default, bounds
and help; the CLI flags and the file are both read through those declarations.
A file or a set of flags is validated whole: every bad value is reported at
once (naming its key or flag and the allowed range), and nothing is applied
unless all of it is good. A missing file means the defaults. The file::

    [history]
    retention_raw = "6h"    # raw samples (one per scrape)
    retention_1m = "7d"     # 1 minute steps
    retention_10m = "90d"   # 10 minute steps
    cap = "2GB"             # the history's size on disk; past it the oldest data goes

Durations take s, min (or m), h, d, w; sizes take B, kB, MB, GB, TB (powers of
1000) or KiB, MiB, GiB, TiB; a bare number is seconds or bytes.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .rollup import Retention

SECTION = "history"

_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


class SettingsError(ValueError):
    """A settings file or flag is unusable; the message names every bad key and its range."""


def _parse(value: object, units: dict[str, int], what: str) -> float:
    """``value`` (a number, or a string with one of ``units``) times its unit."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a {what}, got {value!r}")
    if isinstance(value, str):
        match = _NUMBER.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in units and unit:
            raise ValueError(f"{value!r} is not a {what} (units: {', '.join(units)})")
        number = float(match.group(1)) * (units[unit] if unit else 1)
    else:
        number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a {what}")
    return number


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a number of seconds, or text like ``"6h"``, ``"30 min"``, ``"7d"``."""
    return _parse(value, _DURATION_UNITS, "duration")


def parse_size(value: object) -> int:
    """Bytes in ``value``: a number of bytes, or text like ``"500MB"``, ``"1.5 GiB"``."""
    return int(_parse(value, _SIZE_UNITS, "size"))


def human_duration(seconds: float) -> str:
    """``21600`` → ``"6 h"``, the largest unit that keeps one decimal at most."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and (seconds / size * 10) % 1 == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def human_size(size: float) -> str:
    """``12_345_678`` → ``"12.3 MB"``, ``2e9`` → ``"2 GB"`` (powers of 1000, like disks)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size:.0f} B"


@dataclass(frozen=True)
class Setting:
    """One declared setting: TOML key in ``[history]``, CLI flag, parser, default, bounds."""

    key: str
    flag: str
    parse: Callable[[object], float]
    show: Callable[[float], str]
    default: float
    low: float
    high: float
    help: str

    def check(self, value: object, where: str) -> tuple[float | None, str]:
        """(parsed value, "") or (None, an error naming ``where`` and the allowed range)."""
        span = f"{self.show(self.low)} to {self.show(self.high)}"
        try:
            number = self.parse(value)
        except ValueError as exc:
            return None, f"{where}: {exc}; allowed: {span}"
        if not self.low <= number <= self.high:
            return None, f"{where} = {value!r}: must be from {span}"
        return number, ""


SETTINGS = (
    Setting("retention_raw", "--retention-raw", parse_duration, human_duration, 6 * 3600,
            600, 90 * 86400, "how long raw samples (one per scrape) are kept, e.g. 6h"),
    Setting("retention_1m", "--retention-1m", parse_duration, human_duration, 7 * 86400,
            3600, 5 * 365 * 86400, "how long the 1 minute rollups are kept, e.g. 7d"),
    Setting("retention_10m", "--retention-10m", parse_duration, human_duration, 90 * 86400,
            86400, 10 * 365 * 86400, "how long the 10 minute rollups are kept, e.g. 90d"),
    Setting("cap", "--history-cap", parse_size, human_size, 2 * 10**9, 10**7, 10**14,
            "most disk the history may take, e.g. 500MB; past it the oldest data goes, "
            "finest tiers first"),
)
_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The settings in force; defaults are the declared ones."""

    retention_raw: float = _BY_KEY["retention_raw"].default
    retention_1m: float = _BY_KEY["retention_1m"].default
    retention_10m: float = _BY_KEY["retention_10m"].default
    cap: int = int(_BY_KEY["cap"].default)

    def retention(self) -> Retention:
        """The store's retention policy for these settings."""
        return Retention(self.retention_raw, self.retention_1m, self.retention_10m,
                         cap=int(self.cap))

    def describe(self) -> str:
        """One line for people, see :func:`describe_retention`."""
        return describe_retention(self.retention())


def describe_retention(retention: Retention) -> str:
    """``raw 6 h · 1 min steps 7 d · 10 min steps 90 d · cap 2 GB``."""
    cap = "no cap" if retention.cap is None else f"cap {human_size(retention.cap)}"
    return (f"raw {human_duration(retention.raw)} · 1 min steps "
            f"{human_duration(retention.minute)} · 10 min steps "
            f"{human_duration(retention.ten_minute)} · {cap}")


def settings_path(targets_path: Path) -> Path:
    """The user's settings: ``settings.toml`` next to the targets file."""
    return targets_path.parent / "settings.toml"


def load(path: Path) -> Settings:
    """The settings in ``path`` (missing file: the defaults); SettingsError if any is bad."""
    return resolve(path, {})


def resolve(path: Path, flags: Mapping[str, str | None]) -> Settings:
    """The file's settings with ``flags`` (setting key → flag text, None = not given) on top,
    validated whole: one SettingsError lists every bad value."""
    values, errors = _from_file(path)
    for key, text in flags.items():
        if text is not None:
            values[key] = (text, _BY_KEY[key].flag)
    checked: dict[str, float] = {}
    for key, (raw, where) in values.items():
        number, error = _BY_KEY[key].check(raw, where)
        if error:
            errors.append(error)
        else:
            checked[key] = number  # type: ignore[assignment]
    settings = Settings()
    if not errors:
        types = {f.name: f.type for f in fields(Settings)}
        settings = replace(settings, **{k: int(v) if types[k] in (int, "int") else v
                                        for k, v in checked.items()})
        errors += _order_errors(settings, values)
    if errors:
        raise SettingsError("bad history settings:\n  " + "\n  ".join(errors))
    return settings


def _from_file(path: Path) -> tuple[dict[str, tuple[object, str]], list[str]]:
    """(key → (raw value, where it came from), errors) from the settings file."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    errors = [f"{path}: unknown section {key!r} (known: [{SECTION}])"
              for key in doc if key != SECTION]
    section = doc.get(SECTION, {})
    if not isinstance(section, dict):
        return {}, [*errors, f"{path}: {SECTION} must be a [{SECTION}] table"]
    errors += [f"{path}: unknown key {SECTION}.{key} (known: {', '.join(_BY_KEY)})"
               for key in section if key not in _BY_KEY]
    return {key: (value, f"{path.name}: {SECTION}.{key}") for key, value in section.items()
            if key in _BY_KEY}, errors


def _order_errors(settings: Settings, values: Mapping[str, tuple[object, str]]) -> list[str]:
    """Each coarser tier must be kept at least as long as the finer one it is rolled from."""
    errors = []
    for fine, coarse in (("retention_raw", "retention_1m"), ("retention_1m", "retention_10m")):
        short, long = getattr(settings, fine), getattr(settings, coarse)
        if long < short:
            where = values.get(coarse, (None, _BY_KEY[coarse].flag))[1]
            errors.append(f"{where} = {human_duration(long)}: must be at least {fine} "
                          f"({human_duration(short)}); data is rolled up before it goes")
    return errors
