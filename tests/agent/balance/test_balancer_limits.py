"""Rate limits in the built-in balancer: a real balancer process in front of two real upstreams.

Every test starts ``python -m trimtab.agent balance`` on a loopback port (the command line an
operator runs) in front of two counting HTTP/1.1 servers, so "the upstream never saw it" is
counted where it happens. Limits are read and changed under ``/_trimtab/balancer/limits``.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from trimtab.agent.balance.limits_builtin import limits_from_cli, parse_limit_flag
from trimtab.agent.procs import free_port, stop_all, wait_http

from tests.agent.test_redis_store import redis_url  # noqa: F401 - the redis-server fixture
from tests.conftest import require_binary

TOKENS = "admin:write:w-secret-9,viewer:read:r-secret-9"
WRITE = {"authorization": "Bearer w-secret-9"}
READ = {"authorization": "Bearer r-secret-9"}
LIMITS = "/_trimtab/balancer/limits"
BALANCER = "/_trimtab/balancer"
Starter = Callable[..., str]


class Upstream:
    """A real HTTP/1.1 server in a thread that counts every request it answers, by path."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with lock:
                    seen[self.path.split("?", 1)[0]] += 1
                body = json.dumps({"instance": name}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def total(self) -> int:
        return sum(self.seen.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def upstreams() -> Iterator[list[Upstream]]:
    ups = [Upstream("u1"), Upstream("u2")]
    try:
        yield ups
    finally:
        for u in ups:
            u.close()


@pytest.fixture
def start(upstreams: list[Upstream], monkeypatch: pytest.MonkeyPatch) -> Iterator[Starter]:
    """``start(*args)`` runs ``python -m trimtab.agent balance ... u1=URL u2=URL``; its URL."""
    monkeypatch.setenv("TRIMTAB_TOKENS", TOKENS)
    monkeypatch.delenv("TRIMTAB_RATELIMIT_STORE", raising=False)
    procs: list[subprocess.Popen[bytes]] = []

    def run(*args: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "trimtab.agent", "balance", "--port", str(port), *args,
             *(f"{u.name}={u.url}" for u in upstreams)], stdin=subprocess.DEVNULL)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_trimtab/metrics", proc)
        return url

    try:
        yield run
    finally:
        stop_all(procs)


def seen(upstreams: list[Upstream]) -> int:
    return sum(u.total() for u in upstreams)


def limits(url: str) -> httpx.Response:
    r = httpx.get(url + LIMITS, headers=READ, timeout=10)
    assert r.status_code == 200, r.text
    return r


def patch_limits(url: str, body: Any, etag: str | None = None,
                 headers: dict[str, str] | None = None) -> httpx.Response:
    tag = limits(url).headers["etag"] if etag is None else etag
    return httpx.patch(url + LIMITS, json=body, timeout=10,
                       headers={**WRITE, "if-match": tag, **(headers or {})})


def journal(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + BALANCER + "/journal", headers=READ, timeout=10).json()["entries"]


def counter(url: str, limit: str, result: str, route: str = "*") -> float:
    text = httpx.get(f"{url}/_trimtab/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "trimtab_ratelimit_requests_total" and \
                    s.labels == {"route": route, "limit": limit, "result": result}:
                return float(s.value)
    return 0.0


def burst_of(url: str, n: int, path: str = "/search",
             headers: dict[str, str] | None = None) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=10) as c:
        return [c.get(path, params={"q": i}, headers=headers) for i in range(n)]


# A limit that refills once per 1,000 s: whatever the machine's load, the bucket only drains.
SLOW = "route=*,key=global,rate=0.001,burst=3"


# ---------------------------------------------------------------- bad input first

BAD = [
    ({"l": {"rate": 0}}, "limits['l'].rate"),
    ({"l": {"rate": -5}}, "limits['l'].rate"),
    ({"l": {"rate": "NaN"}}, "limits['l'].rate"),
    ({"l": {"rate": True}}, "limits['l'].rate"),
    ({"l": {"burst": 10**9}}, "limits['l'].burst"),
    ({"l": {"burst": 0}}, "limits['l'].burst"),
    ({"l": {"burst": 2.5}}, "limits['l'].burst"),
    ({"l": {"route": "/nope"}}, "limits['l'].route"),
    ({"l": {"mode": "on"}}, "limits['l'].mode"),
    ({"l": {"key": "cookie:sid"}}, "limits['l'].key"),
    ({"l": {"colour": "red"}}, "limits['l'].colour"),
    ({"new": {"rate": 5, "burst": 10}}, "limits['new']"),  # a new limit needs route and key
    ({"bad name!": {"route": "*", "key": "ip", "rate": 1, "burst": 1}}, "limits['bad name!']"),
    ({"l": "fast"}, "limits['l']"),
    ({f"x{i}": {"route": "*", "key": "ip", "rate": 1, "burst": 1} for i in range(64)}, "limits"),
]


def test_bad_input_is_422_journaled_and_changes_nothing(start: Starter,
                                                        upstreams: list[Upstream]) -> None:
    url = start("--limit", "l:" + SLOW + ",mode=enforce")
    before = limits(url)
    for section, field in BAD:
        n = len(journal(url))
        r = patch_limits(url, {"limits": section, "reason": "try"}, before.headers["etag"])
        assert r.status_code == 422, (section, r.text)
        body = r.json()
        assert body["error"] == "invalid" and body["status"] == 422
        assert any(e["field"].startswith(field) for e in body["errors"]), (section, body)
        entries = journal(url)
        assert len(entries) == n + 1 and entries[-1]["result"] == "refused", entries[-1]
        assert entries[-1]["what"] == "limits" and entries[-1]["reason"] == "try"
        after = limits(url)
        assert after.headers["etag"] == before.headers["etag"]
        assert after.json()["limits"]["l"] == before.json()["limits"]["l"]
    # An unknown top-level field, an empty or missing section: 422, journaled, nothing changes.
    for body in ({"limits": {"l": {"rate": 1}}, "colour": "red"}, {"limits": {}}, {}):
        r = patch_limits(url, body, before.headers["etag"])
        assert r.status_code == 422, (body, r.text)
        assert journal(url)[-1]["result"] == "refused"
    # Not JSON: NaN and Infinity literals are no number (400, as the agent's own API says).
    for raw in ('{"limits": {"l": {"rate": NaN}}}', '{"limits": {"l": {"rate": Infinity}}}'):
        r = httpx.patch(url + LIMITS, content=raw, timeout=10,
                        headers={**WRITE, "if-match": before.headers["etag"],
                                 "content-type": "application/json"})
        assert r.status_code == 400 and "not JSON" in r.json()["message"], r.text
        assert journal(url)[-1]["result"] == "refused"
    # 1e999 parses to inf: a number out of range, 422.
    raw = '{"limits": {"l": {"rate": 1e999}}}'
    r = httpx.patch(url + LIMITS, content=raw, timeout=10,
                    headers={**WRITE, "if-match": before.headers["etag"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limits['l'].rate"
    assert limits(url).headers["etag"] == before.headers["etag"]
    # The limit still refuses exactly as configured: 3 pass, the rest are 429.
    assert [r.status_code for r in burst_of(url, 5)] == [200, 200, 200, 429, 429]
    assert seen(upstreams) == 3


def test_tokens_if_match_and_stale_versions(start: Starter) -> None:
    url = start("--limit", "l:" + SLOW)
    tag = limits(url).headers["etag"]
    body = {"limits": {"l": {"rate": 2}}, "reason": "t"}
    assert httpx.get(url + LIMITS, timeout=10).status_code == 401
    assert httpx.patch(url + LIMITS, json=body, headers={"if-match": tag},
                       timeout=10).status_code == 401
    wrong = httpx.get(url + LIMITS, headers={"authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and "nope" not in wrong.text
    r = httpx.patch(url + LIMITS, json=body, headers={**READ, "if-match": tag}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert journal(url)[-1]["result"] == "refused"
    r = httpx.patch(url + LIMITS, json=body, headers=WRITE, timeout=10)
    assert r.status_code == 428 and tag in r.json()["message"]
    assert journal(url)[-1]["result"] == "refused"
    assert patch_limits(url, body, tag).status_code == 200
    r = patch_limits(url, {"limits": {"l": {"rate": 3}}}, tag)  # the version before the change
    assert r.status_code == 412 and r.json()["error"] == "stale_version"
    assert journal(url)[-1]["result"] == "refused"
    assert limits(url).json()["limits"]["l"]["rate"] == 2.0


def test_bad_limits_on_the_command_line_stop_the_start(tmp_path: Path,
                                                       upstreams: list[Upstream]) -> None:
    bad_file = tmp_path / "limits.json"
    bad_file.write_text('{"l": {"route": "*", "key": "ip", "rate": 0, "burst": 1}}')
    for args, words in ((["--limit", "l:route=*,key=ip,rate=nan,burst=1"], "rate"),
                        (["--limit", "l:route=*,key=ip,rate=1,burst=1000000000"], "burst"),
                        (["--limit", "l:route=/nope,key=ip,rate=1,burst=1"], "unknown route"),
                        (["--limit", "l:route=*,key=ip,rate=1,burst=1,speed=2"], "unknown field"),
                        (["--limit", "l:rate"], "FIELD=VALUE"),
                        (["--limits", str(bad_file)], "rate"),
                        (["--limits", str(tmp_path / "missing.json")], "missing.json"),
                        (["--ratelimit-store", "file"], "state dir")):
        proc = subprocess.run(
            [sys.executable, "-m", "trimtab.agent", "balance", "--port", str(free_port()),
             *args, *(f"{u.name}={u.url}" for u in upstreams)],
            capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode != 0, args
        assert words in proc.stderr.decode(), (args, proc.stderr)
    assert seen(upstreams) == 0


def test_cli_flags_parse_into_the_patch_shape(tmp_path: Path) -> None:
    assert parse_limit_flag("per-key:route=/search,key=header:x-api-key,rate=2.5,burst=10") == \
        ("per-key", {"route": "/search", "key": "header:x-api-key", "rate": 2.5, "burst": 10})
    path = tmp_path / "l.json"
    path.write_text('{"limits": {"a": {"route": "*", "key": "ip", "rate": 1, "burst": 2}}}')
    got = limits_from_cli(["a:rate=3", "b:route=*,key=global,rate=1,burst=1"], str(path))
    assert got == {"a": {"rate": 3}, "b": {"route": "*", "key": "global", "rate": 1, "burst": 1}}


# ---------------------------------------------------------------- enforce and shadow

def test_enforce_answers_429_with_headers_and_the_upstreams_never_see_it(
        start: Starter, upstreams: list[Upstream]) -> None:
    url = start("--limit", "g:" + SLOW + ",mode=enforce")
    replies = burst_of(url, 10)
    codes = [r.status_code for r in replies]
    assert codes == [200] * 3 + [429] * 7, codes
    assert seen(upstreams) == 3  # the seven refusals never reached a server
    ok, refused = replies[0], replies[3]
    assert ok.headers["ratelimit-policy"] == '"g";q=3;w=3000'
    assert ok.headers["ratelimit"].startswith('"g";r=2;t=')
    assert int(refused.headers["retry-after"]) > 900  # one request per 1,000 s
    assert refused.headers["ratelimit"].startswith('"g";r=0;t=')
    assert refused.headers["ratelimit-policy"] == '"g";q=3;w=3000'
    assert refused.json() == {"error": "rate_limited", "limit": "g",
                              "retry_after": int(refused.headers["retry-after"])}
    assert refused.headers["cache-control"] == "no-store"
    assert counter(url, "g", "allowed") == 3 and counter(url, "g", "limited") == 7
    doc = limits(url).json()
    assert doc["limits"]["g"]["counts"] == {"*": {"allowed": 3, "limited": 7,
                                                  "shadow_limited": 0}}
    assert doc["store"] == "memory" and doc["store_errors"] == 0
    # The servers' own counters saw only what was forwarded.
    text = httpx.get(f"{url}/_trimtab/metrics", timeout=10).text
    forwarded = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "trimtab_balancer_requests_total")
    assert forwarded == 3


def test_shadow_refuses_nothing_and_counts_the_would_be_limited(
        start: Starter, upstreams: list[Upstream]) -> None:
    url = start("--limit", "g:" + SLOW + ",mode=shadow")
    replies = burst_of(url, 10)
    assert [r.status_code for r in replies] == [200] * 10
    assert seen(upstreams) == 10
    for r in replies:  # a shadow limit leaves no trace in the answer
        assert not {"ratelimit", "ratelimit-policy", "retry-after"} & set(r.headers)
    assert counter(url, "g", "allowed") == 3 and counter(url, "g", "shadow_limited") == 7
    assert counter(url, "g", "limited") == 0


def test_routes_and_keys_pick_the_bucket(start: Starter, tmp_path: Path,
                                         upstreams: list[Upstream]) -> None:
    routes = tmp_path / "routes.txt"
    routes.write_text("# the API's templates\n/search\n/items/{id}\n")
    url = start("--routes", str(routes),
                "--limit", "per-key:route=/items/{id},key=header:X-Api-Key,rate=0.001,burst=2,"
                "mode=enforce")
    greedy, calm = {"x-api-key": "greedy"}, {"x-api-key": "calm"}
    assert [r.status_code for r in burst_of(url, 4, "/items/7", greedy)] == [200, 200, 429, 429]
    assert [r.status_code for r in burst_of(url, 2, "/items/8", calm)] == [200, 200]
    assert [r.status_code for r in burst_of(url, 5, "/search", greedy)] == [200] * 5
    assert seen(upstreams) == 9 and sum(u.seen["/search"] for u in upstreams) == 5
    assert counter(url, "per-key", "limited", route="/items/{id}") == 2
    doc = limits(url).json()
    assert sorted(doc["routes"]) == ["*", "/items/{id}", "/search"]
    assert doc["limits"]["per-key"]["key"] == "header:x-api-key"
    # The key's value never shows: not in the document, not in the metrics.
    assert "greedy" not in json.dumps(doc)
    assert "greedy" not in httpx.get(f"{url}/_trimtab/metrics", timeout=10).text


# ---------------------------------------------------------------- live changes, revert

def test_a_patch_changes_the_limit_for_the_next_request(start: Starter,
                                                        upstreams: list[Upstream]) -> None:
    url = start("--limit", "g:route=*,key=global,rate=0.001,burst=100,mode=shadow")
    assert [r.status_code for r in burst_of(url, 5)] == [200] * 5
    r = patch_limits(url, {"limits": {"g": {"mode": "enforce", "burst": 5}},
                           "reason": "greedy client"})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == r.json()["version"] == limits(url).headers["etag"]
    (entry,) = r.json()["applied"]
    assert entry["what"] == "limits.g" and entry["result"] == "accepted"
    assert entry["old"] == {"mode": "shadow", "burst": 100}
    assert entry["new"] == {"mode": "enforce", "burst": 5}
    assert entry["who"] == "admin" and entry["reason"] == "greedy client"
    # Five already went through a bucket of five: the very next request is refused.
    assert burst_of(url, 1)[0].status_code == 429
    assert seen(upstreams) == 5
    # Raise the burst: the next one passes again; a new limit starts in shadow.
    r = patch_limits(url, {"limits": {"g": {"burst": 1000},
                                      "ip": {"route": "*", "key": "ip", "rate": 1, "burst": 1}}})
    assert r.status_code == 200, r.text
    assert r.json()["limits"]["ip"]["mode"] == "shadow"
    assert burst_of(url, 1)[0].status_code == 200
    # A no-op PATCH changes nothing and journals nothing.
    n = len(journal(url))
    r = patch_limits(url, {"limits": {"g": {"burst": 1000}}})
    assert r.status_code == 200 and r.json()["applied"] == [] and r.json()["unchanged"] == ["g"]
    assert len(journal(url)) == n


def test_revert_restores_a_limit_and_refuses_a_stale_one(start: Starter,
                                                         upstreams: list[Upstream]) -> None:
    url = start("--limit", "g:" + SLOW + ",mode=enforce")
    before = limits(url).json()["limits"]["g"]
    r = patch_limits(url, {"limits": {"g": {"rate": 50.0, "burst": 50}}, "reason": "loosen"})
    changed = r.json()["applied"][0]["id"]
    assert [r.status_code for r in burst_of(url, 6)] == [200] * 6
    r = httpx.post(f"{url}{BALANCER}/revert/{changed}", json={"reason": "too loose"},
                   headers=WRITE, timeout=10)
    assert r.status_code == 200, r.text
    (entry,) = r.json()["applied"]
    assert entry["reverts"] == changed and entry["what"] == "limits.g"
    after = limits(url).json()["limits"]["g"]
    assert {k: after[k] for k in ("rate", "burst", "mode")} == \
        {k: before[k] for k in ("rate", "burst", "mode")}
    # Reverting the same change again: the limit no longer holds what that entry set.
    r = httpx.post(f"{url}{BALANCER}/revert/{changed}", headers=WRITE, timeout=10)
    assert r.status_code == 409 and r.json()["field"] == "limits.g"
    assert journal(url)[-1]["result"] == "refused"
    # A created limit reverts to no limit; a deleted one comes back whole.
    r = patch_limits(url, {"limits": {"ip": {"route": "*", "key": "ip", "rate": 1,
                                             "burst": 1}}})
    created = r.json()["applied"][0]["id"]
    r = httpx.post(f"{url}{BALANCER}/revert/{created}", headers=WRITE, timeout=10)
    assert r.status_code == 200 and "ip" not in limits(url).json()["limits"]
    r = patch_limits(url, {"limits": {"g": None}})
    deleted = r.json()["applied"][0]["id"]
    assert limits(url).json()["limits"] == {}
    assert burst_of(url, 1)[0].status_code == 200  # no limit at all now
    r = httpx.post(f"{url}{BALANCER}/revert/{deleted}", headers=WRITE, timeout=10)
    assert r.status_code == 200, r.text
    assert limits(url).json()["limits"]["g"]["rate"] == before["rate"]
    # A refused entry and an unknown id are not revertible.
    refused = next(e for e in journal(url) if e["result"] == "refused")
    r = httpx.post(f"{url}{BALANCER}/revert/{refused['id']}", headers=WRITE, timeout=10)
    assert r.status_code == 422
    assert httpx.post(f"{url}{BALANCER}/revert/99999", headers=WRITE,
                      timeout=10).status_code == 404


def test_weights_and_limits_have_separate_versions(start: Starter) -> None:
    url = start("--limit", "g:" + SLOW)
    limits_tag = limits(url).headers["etag"]
    servers_tag = httpx.get(url + BALANCER, headers=READ, timeout=10).headers["etag"]
    r = httpx.patch(url + BALANCER, json={"servers": {"u1": {"weight": 3}}},
                    headers={**WRITE, "if-match": servers_tag}, timeout=10)
    assert r.status_code == 200, r.text
    servers_tag = r.headers["etag"]
    assert limits(url).headers["etag"] == limits_tag  # a weight is not a limit
    r = patch_limits(url, {"limits": {"g": {"rate": 2}}}, limits_tag)
    assert r.status_code == 200, r.text
    assert httpx.get(url + BALANCER, headers=READ, timeout=10).headers["etag"] == servers_tag
    r = httpx.patch(url + BALANCER, json={"servers": {"u1": {"weight": 1}}},
                    headers={**WRITE, "if-match": servers_tag}, timeout=10)
    assert r.status_code == 200, r.text  # and a limit is not a weight


# ---------------------------------------------------------------- metrics

def test_metrics_pass_promtool(start: Starter) -> None:
    promtool = require_binary("promtool")
    url = start("--limit", "g:" + SLOW + ",mode=enforce",
                "--limit", "s:route=*,key=ip,rate=0.001,burst=1,mode=shadow")
    burst_of(url, 5)
    text = httpx.get(f"{url}/_trimtab/metrics", timeout=10).text
    assert 'trimtab_ratelimit_requests_total{limit="g",result="limited",route="*"} 2.0' in text
    assert 'trimtab_ratelimit_requests_total{limit="s",result="shadow_limited",route="*"} 4.0' \
        in text
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_file_store_in_the_state_dir(start: Starter, tmp_path: Path,
                                     upstreams: list[Upstream]) -> None:
    url = start("--state-dir", str(tmp_path), "--limit", "g:" + SLOW + ",mode=enforce")
    assert limits(url).json()["store"] == "file"
    assert [r.status_code for r in burst_of(url, 4)] == [200, 200, 200, 429]
    assert (tmp_path / "ratelimit-balancer.bin").exists()
    # A second balancer on the same state dir shares the buckets (one instance, two processes).
    other = start("--state-dir", str(tmp_path), "--limit", "g:" + SLOW + ",mode=enforce")
    assert burst_of(other, 1)[0].status_code == 429
    assert seen(upstreams) == 3


def test_two_balancers_share_one_limit_through_redis(start: Starter, redis_url: str,  # noqa: F811
                                                     upstreams: list[Upstream]) -> None:
    a = start("--ratelimit-store", redis_url, "--limit", "g:" + SLOW + ",mode=enforce")
    b = start("--ratelimit-store", redis_url, "--limit", "g:" + SLOW + ",mode=enforce")
    assert limits(a).json()["store"] == "redis"
    got = [r.status_code for r in burst_of(a, 2)] + [r.status_code for r in burst_of(b, 3)]
    assert got == [200, 200, 200, 429, 429]  # one bucket of three for both
    assert seen(upstreams) == 3
    assert limits(b).json()["store_errors"] == 0
