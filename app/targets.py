"""Scrape targets kept in a TOML file the user can read and edit (path shown in the UI).

    [[target]]
    name = "api-1"
    url = "http://127.0.0.1:8000/metrics"
    kind = "instance"        # instance | balancer
    interval = 1.0           # seconds between scrapes
    timeout = 0.8            # must be below interval
    # Optional, as in Prometheus' scrape config (0 = no limit); exceeding one fails the scrape:
    # body_size_limit = 16777216, sample_limit = 100000, label_limit = 64,
    # label_name_length_limit = 256, label_value_length_limit = 4096

Invalid content raises :class:`TargetsError` naming the entry and field; nothing is
changed on disk by a failed add or load.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import tomli_w
from trimtab.collectors.scrape import ScrapeTarget
from trimtab.collectors.scrape_limits import LIMIT_DEFAULTS, limit_problem

KINDS = ("instance", "balancer")


class TargetsError(ValueError):
    """The targets file or a new target is invalid; the message names what and why."""


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "trimtab" / "targets.toml"


def validate(target: ScrapeTarget, existing: list[ScrapeTarget] = ()) -> ScrapeTarget:  # type: ignore[assignment]
    """Check one target against the rules above and the names already taken."""
    where = f"target {target.name!r}"
    if not target.name.strip():
        raise TargetsError("target name: must not be empty")
    parts = urlsplit(target.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TargetsError(f"{where} url: must be http(s)://host:port/path, got {target.url!r}")
    if parts.username or parts.password:
        raise TargetsError(f"{where} url: credentials in URLs are not stored; use a token instead")
    if target.kind not in KINDS:
        raise TargetsError(f"{where} kind: must be one of {', '.join(KINDS)}, got {target.kind!r}")
    if not 0 < target.timeout < target.interval <= 3600:
        raise TargetsError(f"{where} timeout/interval: need 0 < timeout < interval ≤ 3600 s, "
                           f"got {target.timeout} / {target.interval}")
    problem = limit_problem(target.limits._asdict())
    if problem is not None:
        raise TargetsError(f"{where} {problem}")
    if any(t.name == target.name for t in existing):
        raise TargetsError(f"{where}: the name is already used")
    return target


def load(path: Path) -> list[ScrapeTarget]:
    """Targets from ``path``; a missing file is an empty list."""
    if not path.exists():
        return []
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetsError(f"{path}: not valid TOML: {exc}") from None
    entries = doc.get("target", [])
    if not isinstance(entries, list):
        raise TargetsError(f"{path}: 'target' must be an array of tables ([[target]])")
    out: list[ScrapeTarget] = []
    for i, entry in enumerate(entries, 1):
        try:
            target = ScrapeTarget(str(entry["name"]), str(entry["url"]),
                                  str(entry.get("kind", "instance")),
                                  float(entry.get("interval", 1.0)), float(entry.get("timeout", 0.8)),
                                  # limits pass as written: validate() names a wrong one
                                  **{k: entry[k] for k in LIMIT_DEFAULTS if k in entry})
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetsError(f"{path}: target #{i}: missing or wrong field {exc}") from None
        out.append(validate(target, out))
    return out


def save(path: Path, targets: list[ScrapeTarget]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    # Tokens stay in memory: a targets file is easy to share and must hold no secret.
    entries = [{k: v for k, v in asdict(t).items() if k != "token"} for t in targets]
    tmp.write_text(tomli_w.dumps({"target": entries}), encoding="utf-8")
    os.replace(tmp, path)


def add(path: Path, target: ScrapeTarget) -> list[ScrapeTarget]:
    """Validate and append ``target``; the file is untouched when it is invalid."""
    targets = load(path)
    targets.append(validate(target, targets))
    save(path, targets)
    return targets


def remove(path: Path, name: str) -> list[ScrapeTarget]:
    targets = load(path)
    kept = [t for t in targets if t.name != name]
    if len(kept) == len(targets):
        raise TargetsError(f"target {name!r}: no such target in {path}")
    save(path, kept)
    return kept
