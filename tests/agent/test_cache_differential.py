"""Differential: what the second client gets through the cache equals what the bare app sends it.

One header-reflecting Starlette app (its body shows every request attribute it read: forwarding
headers, Host, Accept-Language with ``Vary``, Range, the method, the URL and the query parameters
with last-value and dict() semantics) runs twice: bare, and behind the agent with a TTL on every
route. For each pair a first client primes the cache and a second client asks; the second client's
response through the cache must equal the bare app's answer to that same request. Cases cover
repeated, empty, case-variant and forwarding headers; repeated, reordered and percent-encoded query
parameters; HEAD/GET; Range. In-process ASGI for the bulk and a Hypothesis search; real uvicorn
processes over raw sockets for the integration variant.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.procs import stop_all, wait_http

from tests.support import start_uvicorn

# What the app reads (and reflects). Everything the agent neither keys nor bypasses on is absent
# on purpose: an app that reflects any other header into a shared body must say so with Vary.
REFLECTED = ("host", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
             "x-forwarded-prefix", "forwarded", "x-original-url", "x-rewrite-url", "x-host",
             "x-forwarded-server", "x-forwarded-scheme", "x-http-method-override",
             "accept-language", "range")
TEMPLATES = ("/r/{case}", "/search/{case}")
Headers = list[tuple[bytes, bytes]]
Req = tuple[str, str, Headers]  # method, path?query (raw), headers in order
Answer = tuple[int, tuple[tuple[bytes, bytes], ...], bytes]


async def reflect(request: Request) -> Response:
    params = request.query_params
    body = json.dumps({
        "method": request.method,
        "url": str(request.url),
        "headers": {name: request.headers.get(name) for name in REFLECTED},
        "last": {k: params.getlist(k)[-1] for k in params},
        "dict": list(dict(params).items()),  # insertion order is part of what the app saw
        "multi": params.multi_items(),
    }, sort_keys=False).encode()
    headers = {"vary": "Accept-Language"}
    match = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("range", ""))
    if match:
        start, end = int(match[1]), min(int(match[2]), len(body) - 1)
        headers["content-range"] = f"bytes {start}-{end}/{len(body)}"
        return Response(body[start:end + 1], 206, headers, media_type="application/json")
    return Response(body, 200, headers, media_type="application/json")


def bare_app() -> Starlette:
    """The origin alone (also ``uvicorn --factory ...:bare_app``)."""
    return Starlette(routes=[Route(t, reflect, methods=["GET", "HEAD"]) for t in TEMPLATES])


def cached_app() -> TrimtabMiddleware:
    """The same origin behind the agent, every route with a TTL (``uvicorn --factory``)."""
    return TrimtabMiddleware(bare_app(), instance="diff", tokens="alice:write:w-secret",
                             state_dir=None, ttls={t: 300.0 for t in TEMPLATES})


async def call(app: Any, req: Req) -> Answer:
    """One request straight through ASGI: raw header names and raw query bytes as given."""
    method, target, headers = req
    path, _, query = target.partition("?")
    if not any(name.lower() == b"host" for name, _ in headers):
        headers = [(b"host", b"api"), *headers]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query.encode("latin-1"), "headers": headers,
             "server": ("api", 80), "client": ("127.0.0.1", 5000)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if method == "HEAD":
        body = b""  # a server drops whatever body an app sends to HEAD (uvicorn does)
    return start["status"], tuple(start.get("headers", ())), body


IGNORED = {b"age", b"x-trimtab-cache"}  # what the cache adds by design


def comparable(answer: Answer) -> tuple[int, tuple[tuple[bytes, bytes], ...], bytes]:
    status, headers, body = answer
    return status, tuple(sorted((k.lower(), v) for k, v in headers if k.lower() not in IGNORED)), \
        body


def served_from_cache(answer: Answer) -> bool:
    return (b"x-trimtab-cache", b"hit") in answer[1]


def H(*pairs: tuple[str, str]) -> Headers:  # reads like a literal
    return [(k.encode(), v.encode()) for k, v in pairs]


XFH, AL = "x-forwarded-host", "accept-language"
# (name, first request, second request): the first client primes, the second asks.
CASES: list[tuple[str, Req, Req]] = [
    # Controls: identical requests must be hits (the cache is not simply off).
    ("same plain", ("GET", "/r", []), ("GET", "/r", [])),
    ("same xfh", ("GET", "/r", H((XFH, "evil.example"))), ("GET", "/r", H((XFH, "evil.example")))),
    ("same lang", ("GET", "/r", H((AL, "fr"))), ("GET", "/r", H((AL, "fr")))),
    ("same query", ("GET", "/search?q=a&r=b", []), ("GET", "/search?q=a&r=b", [])),
    ("same head", ("HEAD", "/r", []), ("HEAD", "/r", [])),
    # Repeated headers: the app reads the first copy.
    ("xfh evil then empty", ("GET", "/r", H((XFH, "evil.example"), (XFH, ""))), ("GET", "/r", [])),
    ("xfh evil then good", ("GET", "/r", H((XFH, "evil.example"), (XFH, "good.example"))),
     ("GET", "/r", H((XFH, "good.example")))),
    ("host twice", ("GET", "/r", H(("host", "evil.example"), ("host", "api"))), ("GET", "/r", [])),
    ("forwarded twice", ("GET", "/r", H(("forwarded", "host=evil"), ("forwarded", "host=good"))),
     ("GET", "/r", H(("forwarded", "host=good")))),
    ("xfp twice", ("GET", "/r", H(("x-forwarded-proto", "http"), ("x-forwarded-proto", "https"))),
     ("GET", "/r", H(("x-forwarded-proto", "https")))),
    ("lang fr then en", ("GET", "/r", H((AL, "fr"), (AL, "en"))), ("GET", "/r", H((AL, "en")))),
    ("lang fr then en, asks fr", ("GET", "/r", H((AL, "fr"), (AL, "en"))),
     ("GET", "/r", H((AL, "fr")))),
    ("lang stored, asker repeats", ("GET", "/r", H((AL, "en"))),
     ("GET", "/r", H((AL, "fr"), (AL, "en")))),
    # Empty versus absent.
    ("xfh empty vs absent", ("GET", "/r", H((XFH, ""))), ("GET", "/r", [])),
    ("absent vs xfh empty", ("GET", "/r", []), ("GET", "/r", H((XFH, "")))),
    ("lang empty vs absent", ("GET", "/r", H((AL, ""))), ("GET", "/r", [])),
    ("forwarded empty vs absent", ("GET", "/r", H(("forwarded", ""))), ("GET", "/r", [])),
    # Header-name case variants (ASGI says lower case; not every server or test client obeys).
    ("case XFH then xfh", ("GET", "/r", [(b"X-Forwarded-Host", b"evil"), (b"x-forwarded-host",
                                                                          b"good")]),
     ("GET", "/r", H((XFH, "good")))),
    ("case xfh then XFH", ("GET", "/r", [(b"x-forwarded-host", b"evil"), (b"X-Forwarded-Host",
                                                                          b"good")]),
     ("GET", "/r", H((XFH, "good")))),
    ("case XFH alone", ("GET", "/r", [(b"X-Forwarded-Host", b"evil")]), ("GET", "/r", [])),
    ("case Accept-Language", ("GET", "/r", [(b"Accept-Language", b"fr"), (AL.encode(), b"en")]),
     ("GET", "/r", H((AL, "en")))),
    # Forwarding headers an app may read.
    ("x-forwarded-prefix", ("GET", "/r", H(("x-forwarded-prefix", "/evil"))), ("GET", "/r", [])),
    ("x-forwarded-port", ("GET", "/r", H(("x-forwarded-port", "8443"))), ("GET", "/r", [])),
    ("x-host", ("GET", "/r", H(("x-host", "evil.example"))), ("GET", "/r", [])),
    ("x-original-url", ("GET", "/r", H(("x-original-url", "/admin"))), ("GET", "/r", [])),
    ("x-rewrite-url", ("GET", "/r", H(("x-rewrite-url", "/admin"))), ("GET", "/r", [])),
    ("x-forwarded-server", ("GET", "/r", H(("x-forwarded-server", "evil"))), ("GET", "/r", [])),
    ("x-forwarded-scheme", ("GET", "/r", H(("x-forwarded-scheme", "https"))), ("GET", "/r", [])),
    ("method override", ("GET", "/r", H(("x-http-method-override", "DELETE"))),
     ("GET", "/r", [])),
    ("forwarded proto", ("GET", "/r", H(("forwarded", "proto=https"))), ("GET", "/r", [])),
    # Query parameters: repeated, reordered, percent-encoded.
    ("q=b&q=a then q=a&q=b", ("GET", "/search?q=b&q=a", []), ("GET", "/search?q=a&q=b", [])),
    ("q=a&q=b then q=b&q=a", ("GET", "/search?q=a&q=b", []), ("GET", "/search?q=b&q=a", [])),
    ("q=a&q=b then q=b", ("GET", "/search?q=a&q=b", []), ("GET", "/search?q=b", [])),
    ("reordered names", ("GET", "/search?a=1&b=2", []), ("GET", "/search?b=2&a=1", [])),
    ("percent-encoded value", ("GET", "/search?q=%61", []), ("GET", "/search?q=a", [])),
    ("percent-encoded name", ("GET", "/search?%71=a", []), ("GET", "/search?q=a", [])),
    ("plus vs %20", ("GET", "/search?q=a+b", []), ("GET", "/search?q=a%20b", [])),
    ("blank forms", ("GET", "/search?q=", []), ("GET", "/search?q", [])),
    ("trailing ampersand", ("GET", "/search?q=a&", []), ("GET", "/search?q=a", [])),
    ("semicolon", ("GET", "/search?q=a;q=b", []), ("GET", "/search?q=a", [])),
    # Methods.
    ("GET then HEAD", ("GET", "/r", []), ("HEAD", "/r", [])),
    ("HEAD then GET", ("HEAD", "/r", []), ("GET", "/r", [])),
    # Range.
    ("full then range", ("GET", "/r", []), ("GET", "/r", H(("range", "bytes=0-9")))),
    ("range then full", ("GET", "/r", H(("range", "bytes=0-9"))), ("GET", "/r", [])),
    ("range then other range", ("GET", "/r", H(("range", "bytes=0-9"))),
     ("GET", "/r", H(("range", "bytes=5-20")))),
    ("same range", ("GET", "/r", H(("range", "bytes=0-9"))),
     ("GET", "/r", H(("range", "bytes=0-9")))),
]
MUST_HIT = {"same plain", "same xfh", "same lang", "same query", "same head"}


def on_case(req: Req, index: int) -> Req:
    """Give each case its own path (``/r/c7``) so cases sharing one cache cannot meet."""
    method, target, headers = req
    path, sep, query = target.partition("?")
    return method, f"{path}/c{index}{sep}{query}", headers


def run_pairs(pairs: list[tuple[Req, Req]]) -> tuple[list[int], list[bool]]:
    """Indices of pairs whose second answer through the cache differs from the bare app's."""
    bare = bare_app()

    async def main() -> tuple[list[int], list[bool]]:
        diffs, hits = [], []
        for index, (first, second) in enumerate(pairs):
            first, second = on_case(first, index), on_case(second, index)
            cached = cached_app()  # fresh cache per pair
            await call(cached, first)
            through = await call(cached, second)
            expected = await call(bare, second)
            hits.append(served_from_cache(through))
            if comparable(through) != comparable(expected):
                diffs.append(index)
        return diffs, hits

    return asyncio.run(main())


def test_second_client_gets_what_the_origin_sends_it_in_process() -> None:
    diffs, hits = run_pairs([(first, second) for _, first, second in CASES])
    print(f"\n{len(CASES)} cases, {len(diffs)} differences, {sum(hits)} served from cache")
    assert [CASES[i][0] for i in diffs] == [], "\n".join(CASES[i][0] for i in diffs)
    assert {name for (name, _, _), hit in zip(CASES, hits, strict=True) if hit} >= MUST_HIT
    assert len(CASES) >= 30


# --- Hypothesis: random header and parameter multisets -------------------------------------------

NAMES = ("host", "x-forwarded-host", "x-forwarded-proto", "forwarded", "accept-language",
         "x-forwarded-prefix", "x-host", "x-original-url", "range", "user-agent", "cookie")
VALUES = ("", "a", "b", "bytes=0-3")


def _case(name: str, upper: bool) -> bytes:
    return (name.title() if upper else name).encode()


header_lists = st.lists(st.tuples(st.sampled_from(NAMES), st.booleans(), st.sampled_from(VALUES))
                        .map(lambda t: (_case(t[0], t[1] and t[0] != "host"), t[2].encode())),
                        max_size=4)
queries = st.lists(st.tuples(st.sampled_from(("q", "r", "%71")),
                             st.sampled_from(("a", "b", "%61", "", "a+b"))), max_size=3) \
    .map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))
requests = st.tuples(st.sampled_from(("GET", "HEAD")), st.sampled_from(("/r", "/search")),
                     queries, header_lists) \
    .map(lambda t: (t[0], f"{t[1]}?{t[2]}" if t[2] else t[1], t[3]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=requests, second=requests, share=st.booleans())
def test_random_multisets_never_change_what_the_second_client_gets(
        first: Req, second: Req, share: bool) -> None:
    if share:  # half the time the second asks for the same thing, so hits are exercised too
        second = (second[0], first[1], first[2] + second[2][:1])
    diffs, _ = run_pairs([(first, second)])
    assert diffs == [], (first, second)


# --- Real uvicorn processes over raw sockets -----------------------------------------------------

def _uvicorn(factory: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    return start_uvicorn(f"tests.agent.test_cache_differential:{factory}", log, factory=True)


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    bare, bare_port = _uvicorn("bare_app", tmp_path / "bare.log")
    cached, cached_port = _uvicorn("cached_app", tmp_path / "cached.log")
    try:
        wait_http(f"http://127.0.0.1:{bare_port}/r/up", bare)
        wait_http(f"http://127.0.0.1:{cached_port}/metrics", cached)
        yield bare_port, cached_port
    finally:
        stop_all([bare, cached])


def raw_request(port: int, req: Req) -> Answer:
    """HTTP/1.1 over a socket, header bytes exactly as given (names, case, order, repeats)."""
    method, target, headers = req
    if not any(name.lower() == b"host" for name, _ in headers):
        headers = [(b"host", b"api"), *headers]
    head = f"{method} {target} HTTP/1.1\r\n".encode() + b"".join(
        name + b": " + value + b"\r\n" for name, value in headers) + b"connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    status = int(lines[0].split()[1])
    parsed = tuple((k.strip().lower(), v.strip()) for k, _, v in
                   (line.partition(b":") for line in lines[1:]))
    # The server adds its own date/server headers; only what the app and cache decided counts.
    kept = tuple((k, v) for k, v in parsed if k not in (b"date", b"server", b"connection"))
    return status, kept, body


def test_second_client_gets_what_the_origin_sends_it_over_real_uvicorn(
        servers: tuple[int, int]) -> None:
    bare_port, cached_port = servers
    diffs, hits = [], 0
    for index, (name, first, second) in enumerate(CASES):
        first, second = on_case(first, index), on_case(second, index)
        raw_request(cached_port, first)
        through = raw_request(cached_port, second)
        expected = raw_request(bare_port, second)
        hits += served_from_cache(through)
        if comparable(through) != comparable(expected):
            diffs.append(name)
    print(f"\nuvicorn: {len(CASES)} cases, {len(diffs)} differences, {hits} served from cache")
    assert diffs == []
    assert hits >= len(MUST_HIT)
