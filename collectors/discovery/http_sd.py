"""Prometheus ``http_sd``: GET a URL that answers the file_sd JSON list.

As Prometheus requires: HTTP 200 and ``Content-Type: application/json``; anything else is
an error (one line, never the body) and the last good list stays. ``__meta_url`` is
added to every target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from ..errors import http_status_error, plain_error
from .groups import Discovered, DiscoveryError, parse_groups, to_targets


@dataclass
class HttpSD:
    """Targets from a Prometheus HTTP SD endpoint."""

    url: str
    refresh: float = 60.0
    timeout: float = 10.0
    name: str = "http_sd"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DiscoveryError(f"http_sd url: must be http(s)://host:port/path, got {self.url!r}")
        if parts.username or parts.password:
            raise DiscoveryError("http_sd url: credentials in URLs are not stored")

    async def discover(self) -> list[Discovered]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                reply = await client.get(self.url, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise DiscoveryError(f"{self.url}: {plain_error(exc)}") from None
        kind = reply.headers.get("content-type", "")
        if reply.status_code != 200:
            raise DiscoveryError(f"{self.url}: {http_status_error(reply.status_code, kind)}")
        if kind.split(";", 1)[0].strip().lower() != "application/json":
            raise DiscoveryError(f"{self.url}: expected application/json, got {kind or 'nothing'}")
        try:
            data = json.loads(reply.text)
        except ValueError as exc:
            raise DiscoveryError(f"{self.url}: not valid JSON: {exc}") from None
        return to_targets(parse_groups(data, self.url), {"__meta_url": self.url})
