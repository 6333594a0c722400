"""The live-tunable config document of one instance, shared by all its workers.

The document (``GET /_trimtab/config``)::

    {"version": 3, "instance": "api-1",
     "cache": {"enabled": true, "store": "memory"},
     "routes": {"/products/{id}": {"ttl": 10.0, "allow_auth": false}, ...}}

A patch has the same shape minus ``version``/``instance``/``store`` and may set
``routes.<route>.ttl`` (number, 0..86400 s; 0 = not cached),
``routes.<route>.allow_auth`` (bool: serve requests with Authorization/Cookie
from the shared cache when the response allows it) and ``cache.enabled``.
It may also set ``limits.<name>`` (rate limits, see :mod:`.ratelimit_config`).
It is validated whole: every error is reported with the field it names, and
nothing is applied unless everything is valid.

Sharing between workers (``uvicorn --workers N``): with a ``path`` the document
lives in a JSON file replaced atomically (write temp, fsync, rename) under an
exclusive ``flock``; every worker stats the file once per request and reloads
when it changed, so a change accepted by one worker is what the next request
on any worker sees. Without a path the document is in memory, and
:func:`refuse_unshared_multiprocess` refuses to run in a worker process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .params import shown
from .ratelimit import Limit
from .ratelimit_config import (
    diff_limits,
    limit_fields,
    limits_of,
    limits_values_at,
    merge_limits,
    validate_limits,
)

MAX_TTL = 86400.0
PURGES = "_purges"  # hidden part of the file: cache purges every worker must replay
MAX_PURGES = 100
ROUTE_FIELDS = {"ttl", "allow_auth"}
CACHE_FIELDS = {"enabled"}


@dataclass(frozen=True)
class FieldError:
    """One invalid part of a patch."""

    field: str
    message: str


class PatchInvalid(Exception):
    """A patch failed validation; ``errors`` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Settings:
    """An immutable view of the document for the request path."""

    version: int
    enabled: bool
    ttls: dict[str, float]
    allow_auth: frozenset[str]
    limits: tuple[Limit, ...] = ()


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as clients see it: without hidden (``_``-prefixed) parts."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def etag_of(doc: dict[str, Any]) -> str:
    """Strong ETag: version plus a content hash, so a reset file never reuses an old tag."""
    digest = hashlib.sha256(json.dumps(public(doc), sort_keys=True).encode()).hexdigest()[:16]
    return f'"{doc["version"]}-{digest}"'


def validate_patch(patch: Any, known_routes: Iterable[str],
                   limits: dict[str, dict[str, Any]] | None = None) -> list[FieldError]:
    """Every problem in ``patch`` (empty when valid); ``limits``: the document's current ones."""
    if not isinstance(patch, dict):
        return [FieldError("", "patch must be a JSON object")]
    errors = [FieldError(k, "unknown field (allowed: routes, cache, limits, reason)")
              for k in patch if k not in ("routes", "cache", "limits", "reason")]
    known_routes = tuple(known_routes)
    if "limits" in patch:
        errors += [FieldError(f, m) for f, m in
                   validate_limits(patch["limits"], limits or {}, known_routes)]
    if "reason" in patch and not isinstance(patch["reason"], str):
        errors.append(FieldError("reason", "must be a string"))
    errors += _validate_section(patch.get("cache", {}), "cache", CACHE_FIELDS)
    routes = patch.get("routes", {})
    if not isinstance(routes, dict):
        return errors + [FieldError("routes", "must be an object of route → settings")]
    known = set(known_routes)
    for route, fields in routes.items():
        name = f"routes[{route!r}]"
        if route not in known:
            errors.append(FieldError(name, f"unknown route (known: {', '.join(sorted(known))})"))
            continue
        errors += _validate_section(fields, name, ROUTE_FIELDS)
    return errors


def _validate_section(section: Any, name: str, allowed: set[str]) -> list[FieldError]:
    if not isinstance(section, dict):
        return [FieldError(name, "must be an object")]
    errors = []
    for key, value in section.items():
        field = f"{name}.{key}"
        if key not in allowed:
            names = ", ".join(sorted(allowed))
            errors.append(FieldError(field, f"unknown field (allowed: {names})"))
        elif key == "ttl":
            errors += _validate_ttl(field, value)
        elif not isinstance(value, bool):
            errors.append(FieldError(field, f"must be true or false, got {_as_json(value)}"))
    return errors


def _validate_ttl(field: str, value: Any) -> list[FieldError]:
    # bool is an int subclass: "ttl": true is a mistake, not 1 second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [FieldError(field, f"must be a number of seconds, got {_as_json(value)}")]
    # A plain comparison, not math.isfinite(): that raises OverflowError on 10**400,
    # while the comparison is exact for any int and false for inf and nan.
    if not 0 <= value <= MAX_TTL:
        return [FieldError(field, f"must be between 0 and {MAX_TTL:g} seconds, "
                                  f"got {shown(value)}")]
    return []


def _as_json(value: Any, limit: int = 60) -> str:
    """``value`` as the JSON the caller sent, cut short (it may be 64 KiB, or deep)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return shown(value, limit)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ConfigStore:
    """Holds the document; file-backed when ``path`` is given (shared by workers)."""

    def __init__(self, instance: str, ttls: dict[str, float], known_routes: Iterable[str],
                 path: str | os.PathLike[str] | None = None, store_kind: str = "memory",
                 limits: Iterable[Limit] = ()) -> None:
        self.instance = instance
        self.known_routes = tuple(sorted(set(known_routes) | set(ttls)))
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._purge_seq = 0
        # Called with a key prefix when another worker invalidated the cache (file mode).
        self.on_purge: Callable[[str], object] | None = None
        self._doc: dict[str, Any] = {"version": 1, "instance": instance,
                     "cache": {"enabled": True, "store": store_kind},
                     "routes": {r: {"ttl": float(ttls.get(r, 0.0)), "allow_auth": False}
                                for r in self.known_routes},
                     "limits": {lim.name: limit_fields(lim) for lim in limits}}
        self._settings = _settings_of(self._doc)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _Flock(self.path):
                if self.path.exists():
                    self._load()
                else:
                    self._write(self._doc)

    def add_routes(self, routes: Iterable[str]) -> None:
        """Make routes discovered after start (e.g. FastAPI ``add_middleware``) configurable."""
        with self._lock:
            new = set(routes) - set(self.known_routes)
            if not new:
                return
            self.known_routes = tuple(sorted(set(self.known_routes) | new))
            for route in new:
                self._doc["routes"].setdefault(route, {"ttl": 0.0, "allow_auth": False})
            self._settings = _settings_of(self._doc)

    def settings(self) -> Settings:
        """The current settings; in file mode, reloads when another worker changed them."""
        if self.path is not None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return self._settings
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                with self._lock:
                    try:
                        self._load()
                    except (OSError, ValueError, KeyError, TypeError, AttributeError):
                        # A hand-edited, broken file must not fail requests: keep the last
                        # good settings until the file changes again (PATCH still refuses).
                        self._stamp = stamp
        return self._settings

    def document(self) -> tuple[dict[str, Any], str]:
        """A copy of the document and its ETag."""
        self.settings()
        doc = json.loads(json.dumps(public(self._doc)))
        return doc, etag_of(doc)

    def apply(self, patch: dict[str, Any], if_match: str | None
              ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
        """Validate and apply atomically. Returns (old fields, new fields, document, etag).

        Raises :class:`PatchInvalid` or :class:`StaleVersion`; nothing changes then.
        """
        with self._lock, _Flock(self.path):
            if self.path is not None:
                self._load()
            current = etag_of(self._doc)
            if if_match is not None and if_match.strip() not in (current, "*"):
                raise StaleVersion(current)
            errors = validate_patch(patch, self.known_routes, self._doc["limits"])
            if errors:
                raise PatchInvalid(errors)
            old, new = self._diff(patch)
            if new:
                doc = json.loads(json.dumps(self._doc))
                _merge(doc, new)
                doc["version"] += 1
                self._write(doc)
            return old, new, json.loads(json.dumps(public(self._doc))), etag_of(self._doc)

    def record_purge(self, prefix: str) -> None:
        """Tell the other workers (file mode) to drop cache keys starting with ``prefix``.

        The caller has already purged its own store; the purge travels in a hidden
        part of the shared file that neither the document nor its ETag include.
        """
        if self.path is None:
            return
        with self._lock, _Flock(self.path):
            self._load()
            doc = json.loads(json.dumps(self._doc))
            purges = doc.get(PURGES) or {"seq": 0, "recent": []}
            seq = purges["seq"] + 1
            doc[PURGES] = {"seq": seq, "recent": [*purges["recent"], [seq, prefix]][-MAX_PURGES:]}
            self._write(doc)
            self._purge_seq = seq

    def _replay_purges(self, doc: dict[str, Any]) -> None:
        purges = doc.get(PURGES) or {"seq": 0, "recent": []}
        if purges["seq"] <= self._purge_seq:
            return
        if self.on_purge is not None:
            recent = [(s, p) for s, p in purges["recent"] if s > self._purge_seq]
            if len(recent) < purges["seq"] - self._purge_seq:
                self.on_purge("")  # missed more than the file keeps: drop everything
            for _, prefix in recent:
                self.on_purge(prefix)
        self._purge_seq = purges["seq"]

    def values_at(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The current values of the fields named in a patch-shaped dict."""
        self.settings()
        out: dict[str, Any] = {}
        if "cache" in fields:
            out["cache"] = {k: self._doc["cache"].get(k) for k in fields["cache"]}
        if "routes" in fields:
            out["routes"] = {r: {k: self._doc["routes"].get(r, {}).get(k) for k in sub}
                             for r, sub in fields["routes"].items()}
        if "limits" in fields:
            out["limits"] = limits_values_at(self._doc["limits"], fields["limits"])
        return out

    def _diff(self, patch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        for key, value in patch.get("cache", {}).items():
            if self._doc["cache"][key] != value:
                old.setdefault("cache", {})[key] = self._doc["cache"][key]
                new.setdefault("cache", {})[key] = value
        for route, fields in patch.get("routes", {}).items():
            for key, value in fields.items():
                value = float(value) if key == "ttl" else value
                if self._doc["routes"][route][key] != value:
                    old.setdefault("routes", {}).setdefault(route, {})[key] = \
                        self._doc["routes"][route][key]
                    new.setdefault("routes", {}).setdefault(route, {})[key] = value
        old_limits, new_limits = diff_limits(self._doc["limits"], patch.get("limits", {}))
        if new_limits:
            old["limits"], new["limits"] = old_limits, new_limits
        return old, new

    def _load(self) -> None:
        assert self.path is not None
        with open(self.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            doc = json.loads(fh.read())
        # Routes the app no longer has are dropped; new ones start uncached.
        routes = {r: doc["routes"].get(r, self._doc["routes"].get(r)) for r in self.known_routes}
        doc["routes"] = routes
        doc.setdefault("limits", {})  # a file written before rate limits existed
        self._replay_purges(doc)
        self._doc, self._settings = doc, _settings_of(doc)
        self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)

    def _write(self, doc: dict[str, Any]) -> None:
        if self.path is not None:
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(json.dumps(doc, indent=1, sort_keys=True).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            st = os.stat(self.path)
            self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._doc, self._settings = doc, _settings_of(doc)


class StaleVersion(Exception):
    """``If-Match`` named a version that is no longer current."""

    def __init__(self, current: str) -> None:
        super().__init__(f"config changed since you read it; current ETag is {current}")
        self.current = current


def _merge(doc: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.get("cache", {}).items():
        doc["cache"][key] = value
    for route, fields in new.get("routes", {}).items():
        doc["routes"][route].update(fields)
    merge_limits(doc["limits"], new.get("limits", {}))


def _settings_of(doc: dict[str, Any]) -> Settings:
    routes = doc["routes"]
    return Settings(doc["version"], bool(doc["cache"]["enabled"]),
                    {r: float(f["ttl"]) for r, f in routes.items() if f["ttl"] > 0},
                    frozenset(r for r, f in routes.items() if f.get("allow_auth")),
                    limits_of(doc.get("limits", {})))


class _Flock:
    """Exclusive lock on ``<path>.lock``; a no-op when there is no path."""

    def __init__(self, path: Path | None) -> None:
        self._path = path.with_name(path.name + ".lock") if path is not None else None
        self._fd = -1

    def __enter__(self) -> None:
        if self._path is not None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1


def refuse_unshared_multiprocess(shared: bool) -> None:
    """Raise in a worker of a multi-process server when config is not shared.

    uvicorn ``--workers N`` starts workers with multiprocessing, so they have a
    parent process; an in-memory config there would silently diverge per worker.
    """
    if not shared and multiprocessing.parent_process() is not None:
        raise RuntimeError(
            "trimtab: this looks like one worker of a multi-process server (uvicorn --workers N); "
            "an in-memory config would diverge between workers. Set TRIMTAB_STATE_DIR (or "
            "state_dir=) to a directory all workers share, or run a single worker.")
