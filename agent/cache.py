"""Response cache: per-route TTLs, pluggable stores, and the RFC 9111 safety rules.

Safety (see the README's "Response cache safety"):

- Only GET/HEAD with status 200 are stored; never a response with
  ``Set-Cookie``, ``private``, ``no-store`` or ``no-cache``; ``Vary: *`` never.
- A request with ``Authorization`` or ``Cookie`` bypasses the shared cache,
  unless its route opts in (``allow_auth``); even then only responses marked
  ``public`` or ``s-maxage`` are stored for, or served to, such requests.
- ``Vary`` is honoured: the entry at the base key records the Vary'd header
  names, and each variant lives at its own key (base + hash of the values).
- The key is route + method + scheme + server + root path + path + raw path +
  the raw query string (original order, no decoding: frameworks disagree on
  repeated and percent-encoded parameters, the raw bytes are what they all
  read) + every :data:`KEYED_HEADERS` header that is present (present-but-empty
  is not absent).
- Ambiguous requests are neither served from nor stored into the cache
  (:func:`bypass_reason`): a keyed or Vary'd header sent more than once (apps
  read the first copy, a key built from the last copy would lie; header names
  are compared case-insensitively), a :data:`BYPASS_HEADERS` header (rewrites
  an app may honour and the key ignores), or ``Range``/``If-Range``.
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
from typing import Any, Protocol

# Request headers an app commonly turns into links or redirects: part of the key when present.
KEYED_HEADERS = (b"host", b"forwarded", b"x-forwarded-host", b"x-forwarded-proto",
                 b"x-forwarded-port", b"x-forwarded-prefix")
# Rarer rewrites some frameworks or proxies honour (URL, host, scheme, method overrides): a
# request carrying one is not cached at all, rather than splitting the key for every proxy.
BYPASS_HEADERS = frozenset({
    b"x-original-url", b"x-rewrite-url", b"x-host", b"x-forwarded-server",
    b"x-forwarded-scheme", b"x-forwarded-ssl", b"x-url-scheme", b"front-end-https",
    b"x-http-method-override", b"x-http-method", b"x-method-override",
})
RANGE_HEADERS = (b"range", b"if-range")  # a partial answer is the origin's to give
CREDENTIAL_HEADERS = (b"authorization", b"cookie")
# Bypass reasons: a fixed set, so the ``reason`` metric label cannot grow.
CREDENTIALS, REPEATED_HEADER, UNKEYED_HEADER, RANGE = (
    "credentials", "repeated_header", "unkeyed_header", "range")
SEP = "\x1f"  # unit separator: ends the route in a key (invalidation by route prefix)

# Lower-cased name -> every (name as sent, value) in order.
HeaderMap = dict[bytes, list[tuple[bytes, bytes]]]


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


def header_map(raw: Any) -> HeaderMap:
    """Request headers by lower-cased name, every (name as sent, value) in order.

    Names are folded because ``X-Forwarded-Host`` and ``x-forwarded-host`` are one header
    to most frameworks: two spellings in one request count as a repeat. The spelling is kept
    for the key: a framework that matches names exactly (Starlette, on a server that does
    not lower-case them as ASGI asks) sees ``Forwarded`` and ``forwarded`` differently.
    """
    out: HeaderMap = {}
    for name, value in raw or ():
        out.setdefault(bytes(name).lower(), []).append((bytes(name), bytes(value)))
    return out


def repeated(headers: HeaderMap, names: tuple[bytes, ...]) -> bool:
    """True when any of ``names`` occurs more than once (an ambiguous request)."""
    return any(len(headers.get(name, ())) > 1 for name in names)


def bypass_reason(headers: HeaderMap, allow_auth: bool) -> str | None:
    """Why a request must go to the origin without touching the cache, or None."""
    if has_credentials(headers) and not allow_auth:
        return CREDENTIALS
    if repeated(headers, KEYED_HEADERS):
        return REPEATED_HEADER
    if not BYPASS_HEADERS.isdisjoint(headers):
        return UNKEYED_HEADER
    if any(name in headers for name in RANGE_HEADERS):
        return RANGE
    return None


def cache_key(route: str, scope: Any, headers: HeaderMap) -> str:
    """Route first (so a route can be invalidated by prefix), then everything the app may read.

    The query string is keyed raw and in order: ``?q=a&q=b`` and ``?q=b&q=a`` (last value
    wins in most frameworks), ``?q=%61`` and ``?q=a`` (equal once decoded, not in
    ``request.url``) are different requests. ``headers`` must have no repeated keyed header
    (see :func:`bypass_reason`).
    """
    keyed = [[part.decode("latin-1") for part in headers[name][0]]
             for name in KEYED_HEADERS if name in headers]
    server = scope.get("server")
    tail = json.dumps([
        scope.get("method", ""), scope.get("scheme", "http"),
        list(server) if server else None, scope.get("root_path", ""), scope.get("path", ""),
        bytes(scope.get("raw_path") or b"").decode("latin-1"),
        bytes(scope.get("query_string") or b"").decode("latin-1"), keyed,
    ], separators=(",", ":"))
    return f"{route}{SEP}{tail}"


def route_prefix(route: str) -> str:
    """The key prefix shared by every entry of ``route``."""
    return f"{route}{SEP}"


def variant_key(base: str, vary: tuple[bytes, ...], headers: HeaderMap) -> str:
    """Key of the variant selected by the request's values of the Vary'd headers.

    An absent header and an empty one are different variants. ``headers`` must not repeat
    a Vary'd header (the caller bypasses such requests).
    """
    values = json.dumps([[part.decode("latin-1") for part in headers[name][0]]
                         if name in headers else [name.decode("latin-1"), None]
                         for name in vary], separators=(",", ":"))
    return f"{base}{SEP}v{SEP}{hashlib.sha256(values.encode()).hexdigest()[:24]}"


def has_credentials(headers: HeaderMap) -> bool:
    """True when the request carries Authorization or Cookie (any spelling, any count)."""
    return any(name in headers for name in CREDENTIAL_HEADERS)


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
