"""RateLimit headers on ALLOWED answers of enforced limits (issue 18), on real servers.

draft-ietf-httpapi-ratelimit-headers: ``RateLimit-Policy`` and ``RateLimit`` tell a client
how much it has left before a 429, not only after. Every allowed answer of a request an
enforced limit decided carries them: from the app, from the response cache (fresh for this
request, never the stored copy's), on uvicorn, on gunicorn and through the sidecar. A shadow
limit stays invisible: no header names it. Attacking cases first: a stale header kept in the
cache, a duplicate, a shadow limit showing through.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http

from tests.agent.ratelimit.test_limits_live import TOKENS, R, W, agent
from tests.support import ROOT, start_uvicorn

ITEMS, OTHER = "/items/{i}", "/other/{i}"
PER_KEY = {"route": ITEMS, "key": "header:x-api-key", "rate": 0.001, "burst": 3,
           "mode": "enforce"}
WATCH = {"route": "*", "key": "global", "rate": 0.001, "burst": 1, "mode": "shadow"}
LIMIT_HEADERS = ("ratelimit", "ratelimit-policy", "retry-after")


def patch(base: str, doc: dict[str, Any]) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        etag = c.get("/_trimtab/config", headers=R).headers["etag"]
        r = c.patch("/_trimtab/config", json={**doc, "reason": "test"},
                    headers={**W, "if-match": etag})
        assert r.status_code == 200, r.text


def get(base: str, path: str, key: str | None = None) -> httpx.Response:
    """One GET on a new connection (a multi-worker server may give it to any worker)."""
    with httpx.Client(base_url=base, timeout=30) as c:
        return c.get(path, headers={"x-api-key": key} if key else None)


def remaining(r: httpx.Response) -> int:
    (value,) = r.headers.get_list("ratelimit")  # exactly one: never a stale copy beside it
    found = re.fullmatch(r'"per-key";r=(\d+);t=(\d+)', value)
    assert found, value
    return int(found.group(1))


def assert_enforced_headers(replies: list[httpx.Response], burst: int = 3) -> None:
    """Each allowed answer names the enforced limit once, with what is left after it."""
    for r in replies:
        assert r.status_code == 200, r.text
        assert r.headers.get_list("ratelimit-policy") == [
            f'"per-key";q={burst};w={int(burst / 0.001)}'], r.headers
        assert "retry-after" not in r.headers and "watch" not in str(r.headers)
    assert [remaining(r) for r in replies] == list(range(burst - 1, -1, -1))


def assert_no_limit_headers(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert not any(h in r.headers for h in LIMIT_HEADERS), r.headers


# --------------------------------------------------------------------- ASGI (uvicorn)

def test_uvicorn_allowed_answers_and_cache_hits_carry_fresh_headers(tmp_path: Path) -> None:
    with agent(tmp_path, "headers") as base:
        patch(base, {"routes": {ITEMS: {"ttl": 60}},
                     "limits": {"per-key": PER_KEY, "watch": WATCH}})
        replies = [get(base, "/items/1", "k1") for _ in range(4)]
        assert [r.headers.get("x-trimtab-cache") for r in replies[:3]] == ["miss", "hit", "hit"]
        assert_enforced_headers(replies[:3])
        assert replies[3].status_code == 429 and remaining(replies[3]) == 0
        assert "retry-after" in replies[3].headers
        # Another key's first request is a hit with its own full bucket, not k1's numbers.
        other_key = get(base, "/items/1", "k2")
        assert other_key.headers["x-trimtab-cache"] == "hit" and remaining(other_key) == 2
        # Shadow only (the global "watch" limit refuses every request after the first here).
        for _ in range(3):
            assert_no_limit_headers(get(base, "/other/1", "k1"))
        # With the enforced limit gone, a hit of the same stored answer carries nothing.
        patch(base, {"limits": {"per-key": None}})
        hit = get(base, "/items/1", "k1")
        assert hit.headers["x-trimtab-cache"] == "hit"
        assert_no_limit_headers(hit)


def test_uvicorn_shadow_mode_adds_nothing_to_any_answer(tmp_path: Path) -> None:
    with agent(tmp_path, "shadow-headers") as base:
        patch(base, {"routes": {ITEMS: {"ttl": 60}},
                     "limits": {"per-key": {**PER_KEY, "mode": "shadow"}}})
        replies = [get(base, "/items/1", "k1") for _ in range(5)]
        assert [r.headers.get("x-trimtab-cache") for r in replies[:2]] == ["miss", "hit"]
        for r in replies:
            assert_no_limit_headers(r)


# --------------------------------------------------------------------- WSGI (gunicorn)

@contextlib.contextmanager
def gunicorn(tmp_path: Path, workers: int = 2) -> Iterator[str]:
    """tests/agent/ratelimit/wsgi_live_app.py under gunicorn's sync workers, a state dir."""
    port = free_port()
    env = {**os.environ, "TRIMTAB_TOKENS": TOKENS, "TRIMTAB_STATE_DIR": str(tmp_path / "state"),
           "LIVE_INSTANCE": "wsgi-headers"}
    env.pop("TRIMTAB_RATELIMIT_STORE", None)
    cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--graceful-timeout", "3",
           "-w", str(workers), "-b", f"127.0.0.1:{port}",
           "tests.agent.ratelimit.wsgi_live_app:application"]
    with open(tmp_path / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", proc, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all([proc])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any worker the master left behind


@pytest.mark.slow
def test_gunicorn_allowed_answers_and_cache_hits_carry_fresh_headers(tmp_path: Path) -> None:
    with gunicorn(tmp_path) as base:
        patch(base, {"routes": {ITEMS: {"ttl": 60}},
                     "limits": {"per-key": {**PER_KEY, "burst": 5}, "watch": WATCH}})
        # Both workers share one bucket (the state dir's file store): 5 pass, then 429.
        replies = [get(base, "/items/1", "k1") for _ in range(6)]
        assert_enforced_headers(replies[:5], burst=5)
        # Each worker's cache misses once at most: 3 or more of the 5 are hits, and
        # each hit says what was left for this request, not what the stored one had.
        hits = [r for r in replies[:5] if r.headers.get("x-trimtab-cache") == "hit"]
        assert len(hits) >= 3, [r.headers.get("x-trimtab-cache") for r in replies]
        assert replies[5].status_code == 429 and remaining(replies[5]) == 0
        assert int(replies[5].headers["retry-after"]) >= 1
        for _ in range(3):
            assert_no_limit_headers(get(base, "/other/1", "k1"))
        patch(base, {"limits": {"per-key": {"mode": "shadow"}}})
        for _ in range(4):  # hits and misses alike: a shadow limit shows nowhere
            assert_no_limit_headers(get(base, "/items/1", "k1"))


# --------------------------------------------------------------------- the sidecar

def test_the_sidecar_adds_headers_to_allowed_upstream_answers(tmp_path: Path) -> None:
    upstream, up_port = start_uvicorn("tests.agent.sidecar.upstream_apps:app",
                                      tmp_path / "up.log")
    routes = tmp_path / "routes.txt"
    routes.write_text("/echo\n/slow\n")
    port = free_port()
    env = {**os.environ, "TRIMTAB_TOKENS": TOKENS}
    env.pop("TRIMTAB_STATE_DIR", None)
    env.pop("TRIMTAB_RATELIMIT_STORE", None)
    with open(tmp_path / "sidecar.log", "wb") as log:
        side = subprocess.Popen([sys.executable, "-m", "trimtab.agent", "sidecar", "--port",
                                 str(port), "--upstream", f"http://127.0.0.1:{up_port}",
                                 "--instance", "side", "--routes", str(routes)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_http(f"http://127.0.0.1:{up_port}/echo", upstream)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/metrics", side)
        patch(base, {"limits": {"per-key": {**PER_KEY, "route": "/echo"},
                                "watch": {**WATCH, "route": "/slow"}}})
        replies = [get(base, "/echo", "k1") for _ in range(4)]
        assert_enforced_headers(replies[:3])
        assert all(r.json()["length"] == 0 for r in replies[:3])  # the upstream answered
        assert replies[3].status_code == 429 and "retry-after" in replies[3].headers
        for _ in range(2):
            assert_no_limit_headers(get(base, "/slow?s=0", "k1"))
    finally:
        stop_all([side, upstream])
