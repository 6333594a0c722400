"""History retention settings: ``settings.toml`` beside the targets file, and CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from trimtab.app.store.rollup import Retention
from trimtab.app.store.settings import (
    SETTINGS,
    Settings,
    SettingsError,
    human_duration,
    human_size,
    load,
    parse_duration,
    parse_size,
    resolve,
)


@pytest.mark.parametrize(("text", "needle"), [
    ('[history]\nretention_raw = "5s"\n', "history.retention_raw"),
    ('[history]\nretention_raw = "5s"\n', "10 min to 90 d"),
    ('[history]\nretention_1m = "forever"\n', "history.retention_1m"),
    ('[history]\nretention_10m = -3\n', "history.retention_10m"),
    ('[history]\nretention_10m = true\n', "history.retention_10m"),
    ('[history]\ncap = "1KB"\n', "history.cap"),
    ('[history]\ncap = "1KB"\n', "10 MB to 100 TB"),
    ('[history]\ncap = "12 parsecs"\n', "history.cap"),
    ('[history]\nretention_raw = "nan"\n', "history.retention_raw"),
    ('[history]\nretention_raw = "inf"\n', "history.retention_raw"),
    ('[history]\nretension_raw = "6h"\n', "retension_raw"),  # a typo is not silently ignored
    ('[history]\nretention_raw = "6h"\n[histroy]\n', "histroy"),
    ('history = 3\n', "history"),
    ('[history]\nretention_raw = "2d"\nretention_1m = "1d"\n', "history.retention_1m"),
    ('[history\n', "settings.toml"),  # not TOML at all
])
def test_bad_settings_file_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as err:
        load(path)
    assert needle in str(err.value)


@pytest.mark.parametrize(("flags", "needle"), [
    ({"retention_raw": "0s"}, "--retention-raw"),
    ({"retention_1m": "12"}, "--retention-1m"),  # 12 seconds: below the 1 h floor
    ({"retention_10m": "1y"}, "--retention-10m"),  # no such unit
    ({"cap": "500XB"}, "--history-cap"),
    ({"cap": "-1GB"}, "--history-cap"),
    ({"retention_raw": "8d"}, "--retention-1m"),  # 8 d raw > 7 d of 1 min steps (default)
])
def test_bad_flags_are_a_clear_error_naming_the_flag(tmp_path: Path, flags: dict[str, str],
                                                     needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        resolve(tmp_path / "settings.toml", flags)
    assert needle in str(err.value)


def test_every_bad_value_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[history]\nretention_raw = "1s"\ncap = "1B"\n')
    with pytest.raises(SettingsError) as err:
        load(path)
    assert "history.retention_raw" in str(err.value) and "history.cap" in str(err.value)


def test_missing_file_gives_the_declared_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path / "nope" / "settings.toml")
    assert settings == Settings()
    assert {s.key: s.default for s in SETTINGS} == {
        "retention_raw": 6 * 3600, "retention_1m": 7 * 86400, "retention_10m": 90 * 86400,
        "cap": 2 * 10**9}
    assert settings.retention() == Retention(6 * 3600, 7 * 86400, 90 * 86400, cap=2 * 10**9)


def test_file_then_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[history]\nretention_raw = "2h"\nretention_1m = 86400\ncap = "500MB"\n')
    assert load(path) == Settings(retention_raw=7200, retention_1m=86400, cap=500 * 10**6)
    got = resolve(path, {"retention_raw": "90m", "cap": "1.5GiB", "retention_10m": None})
    assert got == Settings(retention_raw=5400, retention_1m=86400, cap=int(1.5 * 2**30))


@pytest.mark.parametrize(("text", "seconds"), [
    ("6h", 21600), ("7d", 604800), ("90 d", 7776000), ("30min", 1800), ("15m", 900),
    ("2w", 1209600), ("45s", 45), ("3600", 3600), ("1.5h", 5400), (120, 120)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("500MB", 500 * 10**6), ("2 GB", 2 * 10**9), ("1GiB", 2**30), ("64kB", 64000),
    ("10mb", 10**7), ("123", 123), (4096, 4096), ("1TB", 10**12)])
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "h", "6 hours ago", "1e400", "--1h", "6hh", True, None, []])
def test_bad_durations_and_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
    with pytest.raises(ValueError):
        parse_size(bad)


def test_human_forms() -> None:
    assert [human_duration(s) for s in (45, 5400, 21600, 604800, 7776000)] == [
        "45 s", "1.5 h", "6 h", "7 d", "90 d"]
    assert [human_size(b) for b in (512, 12_345_678, 2 * 10**9)] == [
        "512 B", "12.3 MB", "2 GB"]
