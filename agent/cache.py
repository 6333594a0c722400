"""Response cache: per-route TTLs, pluggable stores, and the RFC 9111 safety rules.

Safety (see REFERENCE.md):

- Only GET/HEAD with status 200 are stored; never a response with
  ``Set-Cookie``, ``private``, ``no-store`` or ``no-cache``; ``Vary: *`` never.
- A request with ``Authorization`` or ``Cookie`` bypasses the shared cache,
  unless its route opts in (``allow_auth``); even then only responses marked
  ``public`` or ``s-maxage`` are stored for, or served to, such requests.
- ``Vary`` is honoured: the entry at the base key records the Vary'd header
  names, and each variant lives at its own key (base + hash of the values).
- The key is route + method + host + path + sorted query + the forwarding
  headers an app may reflect into a body (``X-Forwarded-Host``, ``-Proto``,
  ``Forwarded``, ``X-Original-URL``, ``X-Rewrite-URL``): a request that sets
  one gets its own entry, so it can never poison the body others are served.
- Keys start with the route, so ``invalidate_prefix(route)`` drops a route.

A TTL change applies to entries stored afterwards; existing entries keep
their expiry (invalidate the route to drop them at once).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode

KEYED_HEADERS = (b"x-forwarded-host", b"x-forwarded-proto", b"forwarded", b"x-original-url",
                 b"x-rewrite-url")
SEP = "\x1f"  # unit separator: cannot appear in a decoded path or header value we key on


@dataclass(frozen=True)
class CachedResponse:
    """A stored response; ``vary`` non-empty marks a base entry that points to variants."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    stored_at: float
    expires_at: float
    vary: tuple[bytes, ...] = ()
    shared_with_auth: bool = False  # response said public / s-maxage

    @property
    def size(self) -> int:
        """Approximate bytes held, for the memory bound."""
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + 64

    def dumps(self) -> bytes:
        """Serialise for an external store (body kept as latin-1 text, lossless)."""
        return json.dumps({"s": self.status, "h": [[k.decode("latin-1"), v.decode("latin-1")]
                                                   for k, v in self.headers],
                           "b": self.body.decode("latin-1"), "t": self.stored_at,
                           "e": self.expires_at, "v": [v.decode("latin-1") for v in self.vary],
                           "a": self.shared_with_auth}).encode()

    @classmethod
    def loads(cls, raw: bytes) -> CachedResponse:
        """Inverse of :meth:`dumps`."""
        d = json.loads(raw)
        return cls(d["s"], tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in d["h"]),
                   d["b"].encode("latin-1"), d["t"], d["e"],
                   tuple(v.encode("latin-1") for v in d["v"]), d["a"])


class Store(Protocol):
    """Where cached responses live. Errors propagate; the cache counts them and goes to origin."""

    name: str

    async def get(self, key: str, now: float) -> CachedResponse | None: ...

    async def put(self, key: str, item: CachedResponse) -> None: ...

    async def invalidate_prefix(self, prefix: str) -> int: ...


class MemoryStore:
    """An LRU of cached responses whose total size stays under ``max_bytes``."""

    name = "memory"

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, CachedResponse] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    async def get(self, key: str, now: float) -> CachedResponse | None:
        """The live entry for ``key`` (expired ones are dropped), marking it recently used."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item.expires_at <= now:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item

    async def put(self, key: str, item: CachedResponse) -> None:
        """Store, evicting least recently used entries to stay under the byte bound."""
        if item.size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = item
            self._bytes += item.size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    async def invalidate_prefix(self, prefix: str) -> int:
        """Drop every key starting with ``prefix``; returns how many."""
        return self.drop_prefix(prefix)

    def drop_prefix(self, prefix: str) -> int:
        """Synchronous :meth:`invalidate_prefix` (replaying another worker's purge)."""
        with self._lock:
            doomed = [k for k in self._items if k.startswith(prefix)]
            for key in doomed:
                self._drop(key)
            return len(doomed)

    def _drop(self, key: str) -> None:
        item = self._items.pop(key)
        self._bytes -= item.size

    @property
    def bytes_used(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


def cache_key(route: str, method: str, host: str, path: str, query: bytes,
              keyed: tuple[str, ...] = ()) -> str:
    """Route first (so a route can be invalidated by prefix), then method, host, path, query."""
    pairs = sorted(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    tail = SEP.join(keyed) if any(keyed) else ""
    return f"{route}{SEP}{method}{SEP}{host}{SEP}{path}?{urlencode(pairs)}{SEP}{tail}"


def route_prefix(route: str) -> str:
    """The key prefix shared by every entry of ``route``."""
    return f"{route}{SEP}"


def variant_key(base: str, vary: tuple[bytes, ...], headers: dict[bytes, bytes]) -> str:
    """Key of the variant selected by the request's values of the Vary'd headers."""
    values = b"\x00".join(headers.get(name, b"") for name in vary)
    return f"{base}{SEP}v{SEP}{hashlib.sha256(values).hexdigest()[:24]}"


def has_credentials(headers: dict[bytes, bytes]) -> bool:
    """True when the request carries Authorization or Cookie."""
    return b"authorization" in headers or b"cookie" in headers


def cache_directives(headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]
                     ) -> set[bytes]:
    """Directive names of every Cache-Control header."""
    out: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"cache-control":
            out |= {d.strip().split(b"=")[0] for d in value.lower().split(b",")}
    return out


def vary_names(headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]
               ) -> tuple[bytes, ...]:
    """Lower-cased, sorted header names from every Vary header (``*`` kept as is)."""
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"vary":
            names |= {v.strip().lower() for v in value.split(b",") if v.strip()}
    return tuple(sorted(names))


def response_storable(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """True when a response may be stored in a shared cache."""
    if status != 200:
        return False
    if any(name.lower() == b"set-cookie" for name, _ in headers):
        return False
    if cache_directives(headers) & {b"private", b"no-store", b"no-cache"}:
        return False
    return b"*" not in vary_names(headers)
