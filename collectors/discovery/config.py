"""``[[discovery]]`` tables of the targets file → discovery sources.

    [[discovery]]
    kind = "file_sd"                 # file_sd | dns | http_sd
    files = ["fleet/*.json"]         # file_sd: paths or globs, relative to the targets file
    refresh = 5.0                    # seconds between refreshes (file_sd 5, dns 30, http_sd 60)
    interval = 1.0                   # scrape interval of the targets it finds
    timeout = 0.8                    # scrape timeout (below interval)
    name = "fleet-files"             # optional: how the Fleet page names the source

    [[discovery]]
    kind = "dns"
    names = ["_api._tcp.fleet.internal"]
    type = "SRV"                     # SRV | A | AAAA
    port = 8000                      # A/AAAA: the port to scrape
    nameserver = "10.0.0.2:53"       # optional: ask this server, not the system's

    [[discovery]]
    kind = "http_sd"
    url = "http://sd.internal/targets"

Unknown keys are errors (a misspelt ``refesh`` would otherwise be silently ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dns_sd import DnsSD
from .file_sd import FileSD
from .groups import DiscoveryError
from .http_sd import HttpSD
from .runner import Source

KINDS = ("file_sd", "dns", "http_sd")
DEFAULT_REFRESH = {"file_sd": 5.0, "dns": 30.0, "http_sd": 60.0}
_COMMON = {"kind", "name", "refresh", "interval", "timeout"}
_KEYS = {"file_sd": {"files"}, "dns": {"names", "type", "port", "nameserver"},
         "http_sd": {"url"}}


@dataclass(frozen=True)
class DiscoveryConfig:
    """One ``[[discovery]]`` table: its source and how to scrape what it finds."""

    source: Source
    interval: float = 1.0
    timeout: float = 0.8


def _number(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DiscoveryError(f"{where} {key}: must be a number of seconds, got {value!r}")
    return float(value)


def _strings(table: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise DiscoveryError(f"{where} {key}: must be a non-empty list of strings")
    return value


def from_table(table: Mapping[str, Any], index: int, base: Path,
               taken: set[str] | None = None) -> DiscoveryConfig:
    """The source a ``[[discovery]]`` table describes (``index`` counts from 1 in errors;
    relative ``files`` are taken from ``base``, the targets file's folder)."""
    kind = table.get("kind")
    where = f"discovery #{index}"
    if kind not in KINDS:
        raise DiscoveryError(f"{where} kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(table) - _COMMON - _KEYS[kind])
    if unknown:
        raise DiscoveryError(f"{where}: unknown key(s) {', '.join(unknown)} for kind {kind!r}")
    name = table.get("name", f"{kind}-{index}")
    if not isinstance(name, str) or not name.strip():
        raise DiscoveryError(f"{where} name: must be a non-empty string")
    if taken is not None:
        if name in taken:
            raise DiscoveryError(f"{where} name: {name!r} is already used")
        taken.add(name)
    where = f"discovery {name!r}"
    refresh = _number(table, "refresh", DEFAULT_REFRESH[kind], where)
    interval = _number(table, "interval", 1.0, where)
    timeout = _number(table, "timeout", min(interval * 0.8, 10.0), where)
    if not 0.1 <= refresh <= 86400:
        raise DiscoveryError(f"{where} refresh: need 0.1 ≤ refresh ≤ 86400 s, got {refresh}")
    if not 0 < timeout < interval <= 3600:
        raise DiscoveryError(f"{where} timeout/interval: need 0 < timeout < interval ≤ 3600 s, "
                             f"got {timeout} / {interval}")
    source: Source
    try:
        if kind == "file_sd":
            files = [str(p if Path(p).expanduser().is_absolute() else base / p)
                     for p in _strings(table, "files", where)]
            source = FileSD(files, refresh, name)
        elif kind == "dns":
            port = table.get("port", 0)
            if isinstance(port, bool) or not isinstance(port, int):
                raise DiscoveryError(f"{where} port: must be a whole number, got {port!r}")
            source = DnsSD(_strings(table, "names", where), str(table.get("type", "SRV")), port,
                           str(table.get("nameserver", "")), refresh, name=name)
        else:
            url = table.get("url")
            if not isinstance(url, str):
                raise DiscoveryError(f"{where} url: must be a string")
            source = HttpSD(url, refresh, name=name)
    except DiscoveryError as exc:
        raise DiscoveryError(f"{where}: {exc}") from None
    return DiscoveryConfig(source, interval, timeout)
