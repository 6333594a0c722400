"""Scrape targets kept in a TOML file the user can read and edit (path shown in the UI).

    [[target]]
    name = "api-1"
    url = "http://127.0.0.1:8000/metrics"
    kind = "instance"        # instance | balancer | prometheus
    interval = 1.0           # seconds between scrapes
    timeout = 0.8            # must be below interval
    # Optional, as in Prometheus' scrape config (0 = no limit); exceeding one fails the scrape:
    # body_size_limit = 16777216, sample_limit = 100000, label_limit = 64,
    # label_name_length_limit = 256, label_value_length_limit = 4096

``service = "shop"`` names the service the target is an instance of: its routes are keyed
``shop · /route`` so two services serving the same route name stay apart (leave it out
for the one unnamed service).

For a Prometheus source, ``service_from = "job"`` makes each of its targets' ``job``
label their service (Prometheus' job is usually the service): without it, every target it
reads is of the one unnamed service and same-named routes of different jobs add up.

``control_url = "http://host:9100"`` names the agent's control endpoint (``/_trimtab/…``)
when it is not at the scrape URL's address.

Besides the hand-written list, ``[[discovery]]`` tables find targets as Prometheus does
(``kind = "file_sd" | "dns" | "http_sd"``, schema in
:mod:`trimtab.collectors.discovery.config`); :mod:`trimtab.app.targets.discovery`
applies what they find. Those targets are never written to this file.

A ``kind = "prometheus"`` target is a Prometheus server (``url`` is its base URL,
``http://host:9090``, not a metrics endpoint): trimtab reads the series of all its
targets from it (``interval`` = seconds between polls) instead of scraping them.
Behind a proxy that wants a bearer token, ``token_env = "PROM_TOKEN"`` names the
environment variable holding it: the token itself is never written to this file.

User mapping tables (other instrumentations' metric names → trimtab's) live in
``mappings.toml`` next to the targets file, as ``[[mapping]]`` tables with the
schema of :mod:`trimtab.collectors.mappings`; a table whose ``source`` equals a
built-in one replaces it, others are added.

Adding a target appends one ``[[target]]`` table with only its non-default keys;
removing one cuts out only that table: the user's comments, order, formatting and
tables trimtab does not read stay as written (:mod:`trimtab.app.targets.toml_edit`).

Invalid content raises :class:`TargetsError` naming the entry and field; nothing is
changed on disk by a failed add, remove or load.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trimtab.collectors.discovery.config import DiscoveryConfig, from_table
from trimtab.collectors.discovery.groups import DiscoveryError
from trimtab.collectors.limits import LIMIT_DEFAULTS, limit_problem
from trimtab.collectors.mappings import MappingError, MappingTable, builtin_tables, load_file, merge
from trimtab.collectors.scrape import ScrapeTarget, service_problem

from . import toml_edit

PROMETHEUS = "prometheus"
KINDS = ("instance", "balancer", PROMETHEUS)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    if target.kind == PROMETHEUS:
        _check_prometheus_url(where, target.url)
    if target.token_env:
        if target.kind != PROMETHEUS:
            raise TargetsError(f"{where} token_env: only a Prometheus source takes one "
                               "(agents use TRIMTAB_TOKEN)")
        if not ENV_NAME.fullmatch(target.token_env):
            raise TargetsError(f"{where} token_env: must be an environment variable's name "
                               f"(letters, digits, _), got {target.token_env!r}")
    if target.service_from:
        if target.kind != PROMETHEUS:
            raise TargetsError(f"{where} service_from: only a Prometheus source takes one "
                               "(name an instance's service with service = …)")
        if target.service_from != "job":
            raise TargetsError(f"{where} service_from: must be \"job\", "
                               f"got {target.service_from!r}")
    if target.kind == PROMETHEUS and target.service:
        raise TargetsError(f"{where} service: a Prometheus source reads many services; "
                           "use service_from = \"job\"")
    if target.control_url:
        control = urlsplit(target.control_url)
        if (control.scheme not in ("http", "https") or not control.netloc or control.username
                or control.path.strip("/") or control.query):
            raise TargetsError(f"{where} control_url: must be http(s)://host:port, "
                               f"got {target.control_url!r}")
    if not 0 < target.timeout < target.interval <= 3600:
        raise TargetsError(f"{where} timeout/interval: need 0 < timeout < interval ≤ 3600 s, "
                           f"got {target.timeout} / {target.interval}")
    problem = limit_problem(target.limits._asdict())
    if problem is not None:
        raise TargetsError(f"{where} {problem}")
    problem = service_problem(target.service)
    if problem is not None:
        raise TargetsError(f"{where} {problem}")
    if any(t.name == target.name for t in existing):
        raise TargetsError(f"{where}: the name is already used")
    return target


def auth_headers(target: ScrapeTarget) -> dict[str, str]:
    """The Authorization header a Prometheus source sends: ``Bearer $token_env``.

    Raises TargetsError naming the variable when it is unset or empty.
    """
    if not target.token_env:
        return {}
    token = os.environ.get(target.token_env, "")
    if not token:
        raise TargetsError(f"target {target.name!r}: environment variable {target.token_env} "
                           "(its token_env) is not set")
    return {"Authorization": f"Bearer {token}"}


def _check_prometheus_url(where: str, url: str) -> None:
    """A Prometheus server's base URL (a path prefix is fine), not one of its endpoints."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if parts.query or parts.fragment or path.endswith("/metrics") or "/api/" in f"{path}/":
        raise TargetsError(f"{where} url: a prometheus target is the server's base URL, "
                           f"like http://host:9090, got {url!r}")


def mappings_path(targets_path: Path) -> Path:
    """The user's mapping tables: ``mappings.toml`` next to the targets file."""
    return targets_path.parent / "mappings.toml"


def load_mappings(path: Path) -> list[MappingTable]:
    """Built-in tables merged with the user's from ``path`` (missing file: built-ins only).

    A bad file raises :class:`TargetsError` naming the file and the field
    (``…/mappings.toml: mapping[0].metric[1].scale: must be a positive number``).
    """
    try:
        user = load_file(path) if path.exists() else []
    except MappingError as exc:
        raise TargetsError(str(exc)) from None
    except OSError as exc:
        raise TargetsError(f"{path}: cannot read: {exc}") from None
    return merge(builtin_tables(), user)


def _toml(path: Path) -> dict:
    """The targets file as TOML; TargetsError naming the file when it is not."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetsError(f"{path}: not valid TOML: {exc}") from None


def load(path: Path) -> list[ScrapeTarget]:
    """Targets from ``path``; a missing file is an empty list."""
    if not path.exists():
        return []
    doc = _toml(path)
    entries = doc.get("target", [])
    if not isinstance(entries, list):
        raise TargetsError(f"{path}: 'target' must be an array of tables ([[target]])")
    out: list[ScrapeTarget] = []
    for i, entry in enumerate(entries, 1):
        if "service" in entry and not isinstance(entry["service"], str):
            raise TargetsError(f"{path}:{_key_line(path, i, 'service')}target #{i} service: "
                               f"must be a string, got {entry['service']!r}")
        try:
            target = ScrapeTarget(str(entry["name"]), str(entry["url"]),
                                  str(entry.get("kind", "instance")),
                                  float(entry.get("interval", 1.0)), float(entry.get("timeout", 0.8)),
                                  token_env=str(entry.get("token_env", "")),
                                  control_url=str(entry.get("control_url", "")),
                                  service=entry.get("service", ""),
                                  service_from=str(entry.get("service_from", "")),
                                  # limits pass as written: validate() names a wrong one
                                  **{k: entry[k] for k in LIMIT_DEFAULTS if k in entry})
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetsError(f"{path}: target #{i}: missing or wrong field {exc}") from None
        try:
            out.append(validate(target, out))
        except TargetsError as exc:
            if service_problem(target.service) is None:
                raise
            # A bad service is easy to miss in a long file: name the line it is on.
            raise TargetsError(f"{path}:{_key_line(path, i, 'service')}{exc}") from None
    return out


_TABLE = re.compile(r"\s*\[\[\s*target\s*\]\]")
_HEADER = re.compile(r"\s*\[")


def _key_line(path: Path, index: int, key: str) -> str:
    """``" line N: "`` of ``key = …`` in the ``index``-th ``[[target]]`` table (1-based),
    or ``" "`` when it is not written on a line of its own."""
    tables = 0
    key_re = re.compile(rf"\s*{re.escape(key)}\s*=")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if _TABLE.match(line):
            tables += 1
        elif _HEADER.match(line) and tables == index:
            break  # the next table began
        elif tables == index and key_re.match(line):
            return f" line {number}: "
    return " "


def load_discovery(path: Path) -> list[DiscoveryConfig]:
    """The ``[[discovery]]`` tables of ``path`` as sources (missing file: none); each is
    checked whole, and the first bad one raises TargetsError naming it and the field."""
    if not path.exists():
        return []
    doc = _toml(path)
    tables = doc.get("discovery", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise TargetsError(f"{path}: 'discovery' must be an array of tables ([[discovery]])")
    taken: set[str] = set()
    try:
        return [from_table(table, i, path.parent, taken) for i, table in enumerate(tables, 1)]
    except DiscoveryError as exc:
        raise TargetsError(f"{path}: {exc}") from None


HEADER = """\
# trimtab scrape targets: one [[target]] table each (name and url; optional kind, interval,
# timeout, token_env and scrape limits). trimtab keeps your comments and layout when it
# adds or removes a target.
"""
# Written only when they differ from these (the loader's defaults), so a file stays short.
_DEFAULTS = {f.name: f.default for f in fields(ScrapeTarget) if f.default is not MISSING}


def entry(target: ScrapeTarget) -> dict[str, Any]:
    """The table written for ``target``: name, url and only the keys that are not default.

    Tokens stay in memory: a targets file is easy to share and must hold no secret.
    """
    return {k: v for k, v in asdict(target).items()
            if k != "token" and (k not in _DEFAULTS or v != _DEFAULTS[k])}


def save(path: Path, targets: list[ScrapeTarget]) -> None:
    """Replace the file with ``targets`` (header comment, non-default keys only)."""
    text = HEADER
    for target in targets:
        text = toml_edit.append_table(text, "target", entry(target))
    _write(path, text)


def add(path: Path, target: ScrapeTarget) -> list[ScrapeTarget]:
    """Validate and append ``target`` as one ``[[target]]`` table at the end of the file.

    Everything already in the file stays byte for byte; a missing file is created with a
    header comment. The file is untouched when the target (or the file) is invalid.
    """
    targets = load(path)
    targets.append(validate(target, targets))
    text = _read(path) if path.exists() else HEADER
    _write(path, _edited(path, lambda: toml_edit.append_table(text, "target", entry(target))))
    return targets


def remove(path: Path, name: str) -> list[ScrapeTarget]:
    """Cut the ``[[target]]`` table named ``name`` (and the comment right on it) out of the
    file; every other byte stays."""
    targets = load(path)
    index = next((i for i, t in enumerate(targets) if t.name == name), None)
    if index is None:
        raise TargetsError(f"target {name!r}: no such target in {path}")
    text = _read(path)
    _write(path, _edited(path, lambda: toml_edit.remove_table(text, "target", index)))
    return targets[:index] + targets[index + 1:]


def _edited(path: Path, edit: Callable[[], str]) -> str:
    try:
        return edit()
    except toml_edit.EditError as exc:
        raise TargetsError(f"{path}: {exc}") from None


def _read(path: Path) -> str:
    # newline="": keep the file's own line endings (\r\n stays \r\n)
    with path.open(encoding="utf-8", newline="") as file:
        return file.read()


def _write(path: Path, text: str) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file; the
    file keeps its permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as file:
        file.write(text)
    if path.exists():
        shutil.copymode(path, tmp)
    os.replace(tmp, path)
