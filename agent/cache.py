"""Response cache: per-route TTLs, an in-memory LRU bounded by bytes, and the safety rules.

Safety (RFC 9111, see REFERENCE.md): only GET/HEAD with status 200 are stored;
never a response with Set-Cookie, ``private`` or ``no-store``; ``Vary: *`` is
never reused; requests carrying Authorization or Cookie bypass the shared cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode


@dataclass(frozen=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    stored_at: float
    expires_at: float

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + 64


class MemoryStore:
    """An LRU of cached responses whose total size stays under ``max_bytes``."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, CachedResponse] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> CachedResponse | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item.expires_at <= now:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item

    def put(self, key: str, item: CachedResponse) -> None:
        if item.size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = item
            self._bytes += item.size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def invalidate_prefix(self, prefix: str) -> int:
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
        return self._bytes


def cache_key(route: str, method: str, host: str, path: str, query: bytes) -> str:
    """Route first (so a route can be invalidated by prefix), then method, host, path, sorted query."""
    pairs = sorted(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    return f"{route}\x00{method}\x00{host}\x00{path}?{urlencode(pairs)}"


def request_bypasses(headers: dict[bytes, bytes], route_allows_auth: bool = False) -> bool:
    """True when a request must not be served from a shared entry."""
    if route_allows_auth:
        return False
    return b"authorization" in headers or b"cookie" in headers


def response_storable(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """True when a response may be stored in a shared cache."""
    if status != 200:
        return False
    for name, value in headers:
        lname = name.lower()
        if lname == b"set-cookie":
            return False
        if lname == b"cache-control":
            directives = {d.strip().split(b"=")[0] for d in value.lower().split(b",")}
            if directives & {b"private", b"no-store", b"no-cache"}:
                return False
        if lname == b"vary" and value.strip() == b"*":
            return False
    return True


def now() -> float:
    return time.time()
