"""A Redis response store shared by every instance of a fleet.

Entries are stored under ``<namespace><cache key>`` with a Redis expiry equal
to their TTL, so Redis drops them by itself. Invalidation walks the keyspace
with ``SCAN MATCH <prefix>*`` (never ``KEYS``, which blocks Redis for the whole
keyspace) and deletes in batches with ``UNLINK`` (freed in the background).

Every call has a socket timeout; the :class:`~.response_cache.ResponseCache`
adds its own bound and falls back to the origin, so a slow or dead Redis
costs at most that timeout (then nothing, during its cool-down).
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from .cache import CachedResponse

_GLOB_SPECIAL = "\\*?[]"


def glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a prefix matches literally."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


class RedisStore:
    """Implements :class:`~.cache.Store` on a Redis server."""

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", namespace: str = "trimtab:",
                 timeout: float = 0.05, scan_count: int = 500) -> None:
        self.namespace = namespace
        self.scan_count = scan_count
        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout,
                                               socket_connect_timeout=timeout,
                                               retry_on_timeout=False)

    async def get(self, key: str, now: float) -> CachedResponse | None:
        """The live entry, or None (expired entries are left to Redis's own expiry)."""
        raw = await self._client.get(self.namespace + key)
        if raw is None:
            return None
        item = CachedResponse.loads(raw if isinstance(raw, bytes) else raw.encode())
        return item if item.expires_at > now else None

    async def put(self, key: str, item: CachedResponse) -> None:
        """Store with a Redis expiry matching the entry's."""
        ttl_ms = int((item.expires_at - time.time()) * 1000)
        if ttl_ms > 0:
            await self._client.set(self.namespace + key, item.dumps(), px=ttl_ms)

    async def invalidate_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` via SCAN + UNLINK; returns how many."""
        pattern = glob_escape(self.namespace + prefix) + "*"
        dropped, batch = 0, []
        async for key in self._client.scan_iter(match=pattern, count=self.scan_count):
            batch.append(key)
            if len(batch) >= self.scan_count:
                dropped += await self._client.unlink(*batch)
                batch = []
        if batch:
            dropped += await self._client.unlink(*batch)
        return dropped

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
