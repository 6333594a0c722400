"""Every bad input to the three control APIs is a clear 4xx that changes nothing.

One table per surface: the instance control API (in-process, file-backed state so
the journal really encodes what it is given), the built-in balancer's control API
(in-process, file-backed journal) and the HAProxy adapter's control API (the
``python -m trimtab.agent.balance.haproxy`` process users run, in front of a real haproxy).
For every row: the status is the expected 4xx (never 500), the config / ETag is
unchanged, a refused write by an authenticated caller is journaled (anonymous
ones are not), and no token secret shows up in a response, the journal or the logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.agent.auth import TokenAuth
from trimtab.agent.balance.policies import Server
from trimtab.agent.balance.proxy import Balancer
from trimtab.agent.journal import Journal
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.procs import free_port, stop_all
from trimtab.demo.app import build_app

from tests.agent.balance.test_haproxy import HAProxy, backends, haproxy  # noqa: F401 - fixtures

W_SECRET, R_SECRET = "W-s3cr3t-bad-input", "R-s3cr3t-bad-input"
SECRETS = (W_SECRET, R_SECRET)
TOKENS = f"alice:write:{W_SECRET},bob:read:{R_SECRET}"
AUTH = {"write": {"authorization": f"Bearer {W_SECRET}"},
        "read": {"authorization": f"Bearer {R_SECRET}"},
        "wrong": {"authorization": "Bearer guess"}, "none": {}}
PRODUCTS = "/products/{id}"
TTL_FIELD = f"routes['{PRODUCTS}'].ttl"
HUGE = "1" + "0" * 400          # int() takes it, float() overflows
SUPER2 = "%C2%B2"               # '²': str.isdigit() says yes, int() says no
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_30K = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB body limit of the control APIs
DEEP_ROUTE = b'{"route": ' + DEEP_30K + b"}"
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    """One bad request and what it must get."""

    name: str
    method: str
    path: str
    status: int
    auth: str = "write"             # key of AUTH
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    if_match: str | None = None     # "CURRENT": the live ETag
    journaled: bool = False         # one refused entry by the caller
    field_name: str | None = None   # named in the 422 answer


def ttl(raw: str) -> bytes:
    return ('{"routes": {"%s": {"ttl": %s}}}' % (PRODUCTS, raw)).encode()


def otlp_span(**span: Any) -> bytes:
    base = {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
            "name": "GET /x", "kind": 2, "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{**base, **span}]}]}]}
                      ).encode()


def zipkin_span(**span: Any) -> bytes:
    base = {"traceId": "0af7651916cd43dd8448eb211c80319c", "id": "b7ad6b7169203331",
            "name": "get", "timestamp": 1, "duration": 1}
    return ("[" + json.dumps({**base, **span}).replace('"HUGE"', HUGE) + "]").encode()


def patch(body: bytes, status: int, name: str, **kw: Any) -> Case:
    kw.setdefault("if_match", "CURRENT")
    kw.setdefault("journaled", status != 401)
    return Case(name, "PATCH", "/_trimtab/config", status, body=body, **kw)


INSTANCE = [
    patch(ttl("1e400"), 422, "ttl 1e400 (inf)", field_name=TTL_FIELD),
    patch(ttl("-1e400"), 422, "ttl -1e400", field_name=TTL_FIELD),
    patch(ttl(HUGE), 422, "ttl 10**400", field_name=TTL_FIELD),
    patch(ttl("9" * 5000), 400, "ttl of 5000 digits"),
    patch(ttl("-5"), 422, "ttl -5", field_name=TTL_FIELD),
    patch(ttl("NaN"), 400, "ttl NaN"),
    patch(ttl("1"), 412, "stale If-Match", if_match='"1-0000000000000000"'),
    patch(ttl("1"), 428, "missing If-Match", if_match=None),
    patch(ttl("1"), 401, "wrong token", auth="wrong"),
    patch(ttl("1"), 401, "no token", auth="none"),
    patch(ttl("1"), 403, "read token on write", auth="read"),
    patch(b'{"reason": "' + b"x" * 70_000 + b'"}', 413, "oversized body"),
    patch(b'{"routes": {', 400, "bad JSON"),
    patch(DEEP_30K, 400, "deeply nested JSON"),
    patch(ttl("1"), 413, "Content-Length of 5000 digits",
          headers={"content-length": "9" * 5000}),
    Case("journal since=²", "GET", f"/_trimtab/journal?since={SUPER2}", 400, "read"),
    Case("journal since=10**400", "GET", f"/_trimtab/journal?since={HUGE}", 400, "read"),
    Case("journal limit=²", "GET", f"/_trimtab/journal?limit={SUPER2}", 400, "read"),
    Case("traces since=²", "GET", f"/_trimtab/traces?since={SUPER2}", 400, "read"),
    Case("traces since=10**400", "GET", f"/_trimtab/traces?since={HUGE}", 400, "read"),
    Case("traces min_ms=1e400", "GET", "/_trimtab/traces?min_ms=1e400", 400, "read"),
    Case("traces min_ms=nan", "GET", "/_trimtab/traces?min_ms=nan", 400, "read"),
    Case("traces limit=²", "GET", f"/_trimtab/traces?limit={SUPER2}", 400, "read"),
    Case("whatif ttls=1e400", "GET", "/_trimtab/cache/whatif?route=/search&ttls=1e400", 400,
         "read"),
    Case("revert ²", "POST", f"/_trimtab/revert/{SUPER2}", 404, journaled=True),
    Case("revert 10**400", "POST", f"/_trimtab/revert/{HUGE}", 404, journaled=True),
    Case("invalidate 30,000 levels", "POST", "/_trimtab/cache/invalidate", 400, body=DEEP_ROUTE,
         headers=JSON, journaled=True),
    Case("invalidate NaN", "POST", "/_trimtab/cache/invalidate", 400,
         body=b'{"prefix": NaN}', headers=JSON, journaled=True),
    # Trace intake adds telemetry, not configuration: refused batches are not journaled.
    Case("OTLP deeply nested", "POST", "/_trimtab/v1/traces", 400, body=DEEP, headers=JSON),
    Case("Zipkin deeply nested", "POST", "/_trimtab/api/v2/spans", 400, body=DEEP,
         headers=JSON),
    Case("OTLP start of 400 digits", "POST", "/_trimtab/v1/traces", 400,
         body=otlp_span(startTimeUnixNano=HUGE, endTimeUnixNano=HUGE + "0"), headers=JSON),
    Case("OTLP start '²'", "POST", "/_trimtab/v1/traces", 400,
         body=otlp_span(startTimeUnixNano="²"), headers=JSON),
    Case("Zipkin timestamp 10**400", "POST", "/_trimtab/api/v2/spans", 400,
         body=zipkin_span(timestamp="HUGE"), headers=JSON),
    Case("unknown route", "GET", "/_trimtab/nope", 404, "read"),
    Case("unknown route, anonymous", "GET", "/_trimtab/nope", 401, "none"),
    Case("unknown route, wrong token", "GET", "/_trimtab/nope", 401, "wrong"),
]

BALANCER = "/_trimtab/balancer"


def weight(raw: str) -> bytes:
    return ('{"servers": {"s1": {"weight": %s}}, "reason": "t"}' % raw).encode()


def bpatch(body: bytes, status: int, name: str, **kw: Any) -> Case:
    kw.setdefault("if_match", "CURRENT")
    kw.setdefault("journaled", status not in (401, 404))
    return Case(name, "PATCH", BALANCER, status, body=body, **kw)


# Shared by the built-in balancer and the HAProxy adapter (same ControlApp).
BALANCER_CASES = [
    bpatch(weight("9000"), 422, "weight 9000", field_name="servers.s1.weight"),
    bpatch(weight("-1"), 422, "weight -1", field_name="servers.s1.weight"),
    bpatch(weight("1e400"), 422, "weight 1e400 (inf)", field_name="servers.s1.weight"),
    bpatch(weight(HUGE), 422, "weight 10**400", field_name="servers.s1.weight"),
    bpatch(weight("9" * 5000), 400, "weight of 5000 digits"),
    bpatch(weight("NaN"), 400, "weight NaN"),
    bpatch(b'{"servers": ', 400, "bad JSON"),
    bpatch(DEEP_30K, 400, "deeply nested JSON"),
    bpatch(b" " * 70_000, 413, "oversized body"),
    bpatch(weight("2"), 412, "stale If-Match", if_match='"0000"'),
    bpatch(weight("2"), 428, "missing If-Match", if_match=None),
    bpatch(weight("2"), 401, "wrong token", auth="wrong"),
    bpatch(weight("2"), 401, "no token", auth="none"),
    bpatch(weight("2"), 403, "read token on write", auth="read"),
    Case("revert ²", "POST", f"{BALANCER}/revert/{SUPER2}", 404, journaled=True),
    Case("revert 10**400", "POST", f"{BALANCER}/revert/{HUGE}", 404, journaled=True),
    Case("revert deeply nested", "POST", f"{BALANCER}/revert/1", 400, body=DEEP_30K,
         journaled=True),
    Case("journal since=²", "GET", f"{BALANCER}/journal?since={SUPER2}", 400, "read"),
    Case("journal since=10**400", "GET", f"{BALANCER}/journal?since={HUGE}", 400, "read"),
    Case("journal limit=²", "GET", f"{BALANCER}/journal?limit={SUPER2}", 400, "read"),
    Case("window=nan", "GET", f"{BALANCER}?window=nan", 422, "read"),
    Case("window=1e400", "GET", f"{BALANCER}?window=1e400", 422, "read"),
    Case("unknown path", "GET", f"{BALANCER}/nope", 404, "read"),
    Case("unknown path, anonymous", "GET", f"{BALANCER}/nope", 401, "none"),
    Case("unknown path, wrong token", "GET", f"{BALANCER}/nope", 401, "wrong"),
    Case("anonymous read", "GET", BALANCER, 401, "none"),
    Case("anonymous journal", "GET", f"{BALANCER}/journal", 401, "none"),
    Case("anonymous revert", "POST", f"{BALANCER}/revert/1", 401, "none"),
    Case("unknown control path, anonymous", "GET", "/_trimtab/nope", 401, "none"),
    Case("unknown control path", "GET", "/_trimtab/nope", 404, "read"),
]

BUILTIN_ONLY = [
    Case("traces since=10**400", "GET", f"/_trimtab/traces?since={HUGE}", 400, "read"),
    Case("traces since=²", "GET", f"/_trimtab/traces?since={SUPER2}", 400, "read"),
    Case("traces min_ms=nan", "GET", "/_trimtab/traces?min_ms=nan", 400, "read"),
    Case("traces min_ms=1e400", "GET", "/_trimtab/traces?min_ms=1e400", 400, "read"),
    Case("traces, anonymous", "GET", "/_trimtab/traces", 401, "none"),
]


async def send(client: httpx.AsyncClient, case: Case, etag_path: str) -> httpx.Response:
    headers = {**AUTH[case.auth], **case.headers}
    if case.if_match == "CURRENT":
        current = await client.get(etag_path, headers=AUTH["read"])
        assert current.status_code == 200, current.text
        headers["if-match"] = current.headers["etag"]
    elif case.if_match is not None:
        headers["if-match"] = case.if_match
    return await client.request(case.method, case.path, content=case.body, headers=headers)


def check_answer(case: Case, resp: httpx.Response) -> None:
    assert resp.status_code == case.status, (case.name, resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json"), case.name
    answer = resp.json()
    assert answer["status"] == case.status and answer["message"], (case.name, answer)
    if case.field_name is not None:
        named = [e["field"] for e in answer.get("errors", [])] + [answer.get("field")]
        assert case.field_name in named, (case.name, answer)
    for secret in SECRETS:
        assert secret not in resp.text, case.name


def check_journal(case: Case, added: list[dict[str, Any]]) -> None:
    if case.journaled:
        who = "bob" if case.auth == "read" else "alice"
        assert [(e["who"], e["result"]) for e in added] == [(who, "refused")], (case.name, added)
        # Whatever was refused is stored as JSON-safe values (inf as a string, not 500).
        json.dumps(added, allow_nan=False)
    else:
        assert added == [], (case.name, added)
    for secret in SECRETS:
        assert secret not in json.dumps(added), case.name


# ---- the instance control API -------------------------------------------------------------

@pytest.fixture
def instance(tmp_path: Path) -> TrimtabMiddleware:
    return build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=str(tmp_path), seed=1)


@pytest.mark.parametrize("case", INSTANCE, ids=[c.name for c in INSTANCE])
def test_instance_control_api(instance: TrimtabMiddleware, case: Case,
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    before = instance.config.document()
    journal_before = len(instance.journal.list())

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=instance, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await send(client, case, "/_trimtab/config")

    resp = asyncio.run(go())
    check_answer(case, resp)
    assert instance.config.document() == before, case.name  # document and ETag
    # A fresh reader of the files sees the same: nothing half-written to disk either.
    assert instance.journal.path is not None
    reread = [e.to_dict() for e in Journal(instance.journal.path).list()]
    assert reread == [e.to_dict() for e in instance.journal.list()]
    check_journal(case, reread[journal_before:])
    for secret in SECRETS:
        assert secret not in caplog.text


# ---- the built-in balancer -----------------------------------------------------------------

@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Balancer]:
    # Upstreams are never contacted by these requests: no health checks, nothing proxied.
    lb = Balancer([Server("s1", "http://127.0.0.1:9"), Server("s2", "http://127.0.0.1:9")],
                  auth=TokenAuth.from_spec(TOKENS), journal=Journal(tmp_path / "j.jsonl"))
    yield lb
    asyncio.run(lb.aclose())


async def balancer_state(client: httpx.AsyncClient) -> tuple[str, list[dict[str, Any]]]:
    doc = await client.get(BALANCER, headers=AUTH["read"])
    entries = await client.get(f"{BALANCER}/journal", headers=AUTH["read"])
    assert doc.status_code == 200 and entries.status_code == 200, (doc.text, entries.text)
    return doc.headers["etag"], entries.json()["entries"]


async def run_balancer_case(client: httpx.AsyncClient, case: Case) -> None:
    etag, journal = await balancer_state(client)
    check_answer(case, await send(client, case, BALANCER))
    etag_after, journal_after = await balancer_state(client)
    assert etag_after == etag, case.name
    check_journal(case, journal_after[len(journal):])


@pytest.mark.parametrize("case", BALANCER_CASES + BUILTIN_ONLY,
                         ids=[c.name for c in BALANCER_CASES + BUILTIN_ONLY])
def test_builtin_balancer_control_api(balancer: Balancer, case: Case,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        transport = httpx.ASGITransport(app=balancer,
                                        raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://lb") as client:
            await run_balancer_case(client, case)

    asyncio.run(go())
    assert {s.name: (s.weight, s.state) for s in balancer.servers} == {
        "s1": (1, "ready"), "s2": (1, "ready")}
    for secret in SECRETS:
        assert secret not in caplog.text


# ---- the HAProxy adapter (a real process in front of a real haproxy) ----------------------

@pytest.fixture
def haproxy_agent(haproxy: HAProxy, tmp_path: Path) -> Iterator[tuple[str, Path]]:  # noqa: F811
    port, log = free_port(), tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trimtab.agent.balance.haproxy", "--socket", haproxy.sock,
             "--backend", "be", "--port", str(port), "--journal", str(tmp_path / "j.jsonl"),
             "--interval", "0.2"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "TRIMTAB_TOKENS": TOKENS})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}{BALANCER}", headers=AUTH["read"]).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "agent did not answer"
            time.sleep(0.05)
        yield url, log
    finally:
        stop_all([proc])


def test_haproxy_agent_control_api(haproxy: HAProxy,  # noqa: F811
                                   haproxy_agent: tuple[str, Path]) -> None:
    url, log = haproxy_agent

    async def go() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for case in BALANCER_CASES:
                await run_balancer_case(client, case)
                assert haproxy.client.get_weight("be", "s1") == (1, 1), case.name

    asyncio.run(go())
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Exception in ASGI" not in text, text[-3000:]
    for secret in SECRETS:
        assert secret not in text
