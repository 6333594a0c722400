"""Network and HTTP failures in the plain words an operator reads in the Fleet table.

httpx reports a dead port as "All connection attempts failed" and an unknown host as
"[Errno -2] Name or service not known"; the cause sits a few exceptions down the chain.
:func:`plain_error` walks that chain and says *connection refused*, *timed out*,
*DNS failure: host*, *TLS error: reason*. :func:`http_status_error` turns a non-metrics
answer (an HTML error page, say) into one line instead of the page itself.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from http import HTTPStatus

import httpx

NOT_METRICS = "not a Prometheus /metrics endpoint"
_MAX = 300  # characters: a table cell and a status bar line, never a page


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes/contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _host(exc: BaseException) -> str:
    try:
        return exc.request.url.host if isinstance(exc, httpx.RequestError) else ""
    except RuntimeError:  # an httpx error raised without a request
        return ""


def one_line(text: str) -> str:
    """``text`` on one line (whitespace runs become one space), cut to a readable length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX else flat[:_MAX - 1] + "…"


def plain_error(exc: BaseException) -> str:
    """One line of plain words for a failed request (any exception: falls back to its text)."""
    for cause in _chain(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            host = _host(exc)
            return f"DNS failure: {host}" if host else "DNS failure"
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or cause.__class__.__name__
            return f"TLS error: {one_line(str(reason))}"
        if isinstance(cause, (httpx.TimeoutException, TimeoutError)):
            return "timed out"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the server"
    return one_line(str(exc)) or type(exc).__name__


def refuse_non_metrics(status: int, content_type: str) -> None:
    """ValueError (one line, never the page) unless the answer is a 200 that is not a web
    page: an HTML error page, or a web UI at a wrong path, must not land in the Fleet table."""
    if status != 200 or content_type.lower().startswith("text/html"):
        raise ValueError(http_status_error(status, content_type))


def http_status_error(status: int, content_type: str) -> str:
    """``HTTP 404 Not Found``, plus ``— not a Prometheus /metrics endpoint (got text/html)``
    when the answer is a web page (Prometheus never serves HTML on /metrics)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    head = f"HTTP {status} {phrase}".rstrip()
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("text/html", "application/xhtml+xml"):
        return f"{head} — {NOT_METRICS} (got {media})"
    return head
