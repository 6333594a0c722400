"""The sidecar: the whole agent in front of a service written in any language.

``python -m trimtab.agent sidecar --upstream http://127.0.0.1:8080 --port 9000`` serves
port 9000 and forwards every request to the upstream, streaming both ways (a large
download or a server-sent stream passes through chunk by chunk, never buffered whole).
Around the forwarding sits the same :class:`~.middleware.TrimtabMiddleware` as in a
Python app, so a Go, Java or Node service gets the per-route metrics, traces (the W3C
``traceparent`` of the request's span goes to the upstream), the response cache with
live TTLs, rate limits and the control API, with nothing changed in the service.

Route templates come from the service's OpenAPI document (``--openapi`` path or URL,
JSON, or YAML when PyYAML is installed) or a routes file (``--routes``: one template
per line, ``#`` comments). Literal paths win over templated ones (``/items/search``
before ``/items/{id}``), as OpenAPI requires. A path matching no template folds into
one route, as in the middleware.

Forwarding rules: hop-by-hop headers (RFC 9110 §7.6.1 and those named in
``Connection``) are dropped both ways; ``Host`` is passed as the client sent it (the
upstream URL only says where to connect); ``X-Forwarded-For`` / ``-Proto`` are
appended. An upstream that refuses the connection answers 502, one too slow 504,
both with a JSON body naming the upstream, and are traced as such.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .traces import current_traceparent
from .upstream import UpstreamError, UpstreamPool, UpstreamTimeout

# RFC 9110 §7.6.1 connection-specific fields, plus the proxy's own: never forwarded.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authorization",
                        b"proxy-authenticate"})
MAX_ROUTES_FILE = 1024 * 1024
_TEMPLATE = re.compile(r"^/[^\s?#]*$")


class RoutesError(ValueError):
    """A routes file or OpenAPI document that cannot give route templates."""


def _connection_named(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in ``Connection`` (hop-by-hop for this connection only)."""
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(v.strip().lower() for v in value.split(b",") if v.strip())
    return named


def forward_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` without hop-by-hop fields (fixed ones and those ``Connection`` names)."""
    drop = HOP_BY_HOP | _connection_named(headers)
    return [(k, v) for k, v in headers if k.lower() not in drop]


class UpstreamProxy:
    """ASGI app forwarding every request to ``upstream`` (``http://host:port``), streaming."""

    def __init__(self, upstream: str, timeout: float = 30.0, connect_timeout: float = 5.0,
                 max_connections: int = 256) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s)://host[:port] URL, not {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._prefix = parts.path.rstrip("/").encode("latin-1")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # Redirects pass on as they are (a proxy never follows them); no environment proxy.
        self.pool = UpstreamPool(parts.scheme, parts.hostname, port, timeout=timeout,
                                 connect_timeout=connect_timeout,
                                 max_connections=max_connections)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.pool.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        await self._forward(scope, receive, send)

    def _headers(self, scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        headers = forward_headers(scope["headers"])
        headers = [(k, v) for k, v in headers if k.lower() != b"traceparent"]
        traceparent = current_traceparent()
        if traceparent is not None:
            headers.append((b"traceparent", traceparent.encode()))
        else:
            headers += [(k, v) for k, v in scope["headers"] if k.lower() == b"traceparent"]
        client = (scope.get("client") or ("", 0))[0]
        if client:
            prior = b", ".join(v for k, v in scope["headers"] if k.lower() == b"x-forwarded-for")
            headers = [(k, v) for k, v in headers if k.lower() != b"x-forwarded-for"]
            headers.append((b"x-forwarded-for",
                            (prior + b", " if prior else b"") + client.encode("latin-1")))
        if not any(k.lower() == b"x-forwarded-proto" for k, _ in headers):
            headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        return headers

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = self._prefix + raw + (b"?" + query if query else b"")
        has_body = any(k.lower() in (b"content-length", b"transfer-encoding")
                       for k, _ in scope["headers"])
        try:
            response = await self.pool.request(scope["method"], target, self._headers(scope),
                                               _body(receive) if has_body else None)
        except UpstreamTimeout as exc:
            await _error(send, 504, f"upstream {self.upstream} {exc}")
            return
        except UpstreamError as exc:
            await _error(send, 502, f"upstream {self.upstream} {exc}")
            return
        try:
            headers = [(k.lower(), v) for k, v in forward_headers(response.headers)]
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})
            # The chunk that completes a known length goes out as the last one: one socket
            # write fewer per answer than a separate empty end.
            length, sent, last = response.length, 0, False
            async for chunk in response.body():
                sent += len(chunk)
                last = length is not None and sent >= length
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if not last:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (UpstreamError, TimeoutError, OSError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError):
            # The upstream broke off mid-body: the status is sent, so the client sees a
            # truncated body (its Content-Length or chunking says so); nothing else to do.
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.aclose()

    async def aclose(self) -> None:
        """Close the idle upstream connections."""
        await self.pool.aclose()


async def _body(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- route templates -------------------------------------------------------------------

def order_templates(templates: Iterable[str]) -> list[str]:
    """Unique templates, literal segments before placeholders at each position."""
    unique = list(dict.fromkeys(templates))

    def key(t: str) -> tuple:
        return tuple((1 if seg.startswith("{") else 0, seg) for seg in t.split("/"))

    return sorted(unique, key=key)


def _checked(templates: Iterable[str], where: str) -> list[str]:
    out = []
    for t in templates:
        if not isinstance(t, str) or not _TEMPLATE.match(t) or t.count("{") != t.count("}"):
            raise RoutesError(f"{where}: {t!r} is not a path template like /items/{{id}}")
        out.append(t)
    if not out:
        raise RoutesError(f"{where}: no route templates")
    return order_templates(out)


def routes_from_file(path: Path) -> list[str]:
    """Templates from a routes file: one per line, blank lines and ``#`` comments ignored."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RoutesError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_ROUTES_FILE:
        raise RoutesError(f"{path}: over 1 MiB, not a routes file")
    lines = (line.split("#", 1)[0].strip() for line in data.decode("utf-8", "replace").splitlines())
    return _checked([line for line in lines if line], str(path))


def routes_from_openapi(document: dict[str, Any], where: str = "OpenAPI document") -> list[str]:
    """Templates from an OpenAPI 3 (or Swagger 2) document's ``paths``, with the server
    URL's path (or ``basePath``) in front."""
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise RoutesError(f"{where}: no 'paths' object (is it an OpenAPI document?)")
    prefix = ""
    servers = document.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        prefix = urlsplit(str(servers[0].get("url", ""))).path.rstrip("/")
        if "{" in prefix:  # a server variable: the prefix is not known here
            prefix = ""
    elif isinstance(document.get("basePath"), str):
        prefix = document["basePath"].rstrip("/")
    return _checked([prefix + p for p in document["paths"]], where)


def load_openapi(source: str, timeout: float = 10.0) -> list[str]:
    """Templates from an OpenAPI document at a path or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        try:
            response = httpx.get(source, timeout=timeout, trust_env=False)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RoutesError(f"{source}: {exc}") from None
        text = response.text
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RoutesError(f"{source}: {exc}") from None
    return routes_from_openapi(_parse_document(text, source), source)


def _parse_document(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        import yaml
    except ImportError:
        raise RoutesError(f"{where}: not JSON (install PyYAML to read YAML)") from None
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise RoutesError(f"{where}: neither JSON nor YAML: {str(exc).splitlines()[0]}") from None
