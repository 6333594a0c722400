"""One connection pool per origin behind the scrape engine's one shared ``httpx.AsyncClient``.

httpcore's pool is built for a few origins: on every request it starts and on every
response it finishes it walks all of its connections, and for each idle one counts them all
again. With one connection kept alive per target, a scrape cost work in the square of the
number of targets, a cycle in the cube: at 120 targets x 2,000 samples the pool's
bookkeeping took more CPU than parsing. Here each origin (scheme, host, port) has its own
pool, found by a dict lookup, so a scrape's pool work is that of its own origin alone.
"""

from __future__ import annotations

import ssl

import httpx

_Origin = tuple[bytes, bytes, int | None]


class OriginTransport(httpx.AsyncBaseTransport):
    """Routes each request to the pool of its origin, creating it on first use.

    ``per_origin`` caps the connections of one origin (several targets may share one, and a
    target's trace and config requests use it too). One TLS context serves every pool:
    building one loads the CA bundle, tens of milliseconds each.
    """

    def __init__(self, per_origin: int, keepalive_expiry: float = 5.0) -> None:
        self._limits = httpx.Limits(max_connections=per_origin, max_keepalive_connections=per_origin,
                                    keepalive_expiry=keepalive_expiry)
        self._pools: dict[_Origin, httpx.AsyncHTTPTransport] = {}
        self._tls: ssl.SSLContext | None = None

    def _pool(self, origin: _Origin) -> httpx.AsyncHTTPTransport:
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        pool = self._pools[origin] = httpx.AsyncHTTPTransport(verify=self._tls, limits=self._limits)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its origin's pool."""
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(origin) or self._pool(origin)
        return await pool.handle_async_request(request)

    async def forget(self, url: str) -> None:
        """Close and drop the pool of ``url``'s origin (its last target was removed)."""
        parsed = httpx.URL(url)
        pool = self._pools.pop((parsed.raw_scheme, parsed.raw_host, parsed.port), None)
        if pool is not None:
            await pool.aclose()

    async def aclose(self) -> None:
        """Close every pool."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
