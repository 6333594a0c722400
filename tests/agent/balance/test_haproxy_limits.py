"""Rate limits on a real HAProxy 2.6 through the agent's control API (runtime API + a map).

The test writes an haproxy.cfg with one limit (a stick-table on ``src``, its threshold and
mode read from a map) in front of two real upstreams that count what reaches them, starts
the HAProxy agent (``python -m trimtab.agent haproxy --limits-map ...``) and changes the
limit through ``/_trimtab/balancer/limits``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.agent.balance.haproxy import RuntimeClient
from trimtab.agent.procs import free_port, stop_all

from tests.agent.balance.test_balancer_limits import Upstream, upstreams  # noqa: F401
from tests.conftest import require_binary
from tests.support import poll, wait_for

TOKENS = "admin:write:w-secret-8,viewer:read:r-secret-8"
WRITE = {"authorization": "Bearer w-secret-8"}
READ = {"authorization": "Bearer r-secret-8"}
LIMITS = "/_trimtab/balancer/limits"


def config(port: int, sock: Path, mp: Path, ups: list[Upstream]) -> str:
    m = str(mp)
    return "\n".join([
        "global", f"  stats socket {sock} mode 600 level admin", "  stats timeout 5s",
        "defaults", "  mode http", "  timeout connect 2s", "  timeout client 10s",
        "  timeout server 10s",
        "frontend fe", f"  bind 127.0.0.1:{port}",
        "  http-request track-sc0 src table st_per_ip",
        "  http-request track-sc2 str(trimtab) table st_counts",
        f"  http-request set-var(txn.rl_limit) str(per-ip.limit),map({m},0)",
        f"  http-request set-var(txn.rl_mode) str(per-ip.mode),map({m},0)",
        f"  http-request set-var(txn.rl_period) str(per-ip.period),map({m},0)",
        "  acl rl_over sc_http_req_rate(0),sub(txn.rl_limit) gt 0",
        "  acl rl_on var(txn.rl_mode) -m int ge 1",
        "  http-request sc-inc-gpc(0,2) if rl_on !rl_over",
        "  http-request sc-inc-gpc(1,2) if rl_over { var(txn.rl_mode) -m int 2 }",
        "  http-request sc-inc-gpc(2,2) if rl_over { var(txn.rl_mode) -m int 1 }",
        "  http-request deny deny_status 429 hdr retry-after %[var(txn.rl_period)] "
        "if rl_over { var(txn.rl_mode) -m int 2 }",
        "  default_backend be",
        "backend be", "  balance roundrobin",
        *(f"  server {u.name} {u.url.removeprefix('http://')}" for u in ups),
        "backend st_per_ip", "  stick-table type ip size 10k expire 2000s store "
        "http_req_rate(1000s)",
        "backend st_counts", "  stick-table type string len 32 size 10 expire 24d store gpc(3)",
    ]) + "\n"


MAP = "per-ip.route *\nper-ip.key ip\nper-ip.period 1000\nper-ip.limit 3\nper-ip.mode 2\n" \
      "per-ip.gpc 0\n"


class Fleet:
    def __init__(self, tmp: Path, ups: list[Upstream]) -> None:
        self.tmp, self.ups = tmp, ups
        self.sock, self.map = tmp / "admin.sock", tmp / "limits.map"
        self.map.write_text(MAP)
        self.port = free_port()
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(config(self.port, self.sock, self.map, ups))
        self.log = open(tmp / "haproxy.log", "wb")  # noqa: SIM115 - closed in close()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.haproxy = subprocess.Popen([require_binary("haproxy"), "-W", "-db", "-f", str(cfg)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.client = RuntimeClient(str(self.sock), 2.0)
        wait_for(self._answers, 30, what="haproxy stats socket")
        self.url = f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            return "Pid" in self.client.show_info()
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def agent(self, *extra: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "trimtab.agent", "haproxy", "--port", str(port),
             "--socket", str(self.sock), "--backend", "be", "--interval", "0.2",
             "--limits-map", str(self.map), "--limits-counts", "st_counts", *extra],
            stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + LIMITS, headers=READ, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, what="haproxy agent")
        return url

    def close(self) -> None:
        stop_all([*self.procs, self.haproxy])
        self.log.close()


@pytest.fixture
def fleet(tmp_path: Path, upstreams: list[Upstream],  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setenv("TRIMTAB_TOKENS", TOKENS)
    f = Fleet(tmp_path, upstreams)
    try:
        yield f
    finally:
        f.close()


def codes(url: str, n: int) -> list[int]:
    with httpx.Client(base_url=url, timeout=10) as c:
        return [c.get("/search", params={"q": i}).status_code for i in range(n)]


def seen(ups: list[Upstream]) -> int:
    return sum(u.total() for u in ups)


def patch(url: str, limits: dict[str, Any]) -> httpx.Response:
    tag = httpx.get(url + LIMITS, headers=READ, timeout=10).headers["etag"]
    return httpx.patch(url + LIMITS, json={"limits": limits, "reason": "t"}, timeout=10,
                       headers={**WRITE, "if-match": tag})


def test_haproxy_limit_changes_live_shadow_and_revert(fleet: Fleet) -> None:
    url = fleet.agent()
    doc = httpx.get(url + LIMITS, headers=READ, timeout=10).json()
    assert doc["limits"]["per-ip"] | {"counts": {}} == {
        "route": "*", "key": "ip", "rate": 0.003, "burst": 3, "mode": "enforce", "counts": {}}
    assert doc["period_seconds"] == {"per-ip": 1000} and doc["store"] == "haproxy"
    # Enforce: three pass, the rest are HAProxy's 429s, never forwarded.
    assert codes(fleet.url, 5) == [200, 200, 200, 429, 429]
    assert seen(fleet.ups) == 3
    refused = httpx.get(fleet.url + "/x", timeout=10)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1000"
    counts = httpx.get(url + LIMITS, headers=READ, timeout=10).json()["limits"]["per-ip"]
    assert counts["counts"] == {"*": {"allowed": 3, "limited": 3, "shadow_limited": 0}}
    # Shadow through the control API: nothing refused from the next request on, counted.
    r = patch(url, {"per-ip": {"mode": "shadow"}})
    assert r.status_code == 200, r.text
    shadow_id = r.json()["applied"][0]["id"]
    assert codes(fleet.url, 3) == [200, 200, 200] and seen(fleet.ups) == 6
    doc = httpx.get(url + LIMITS, headers=READ, timeout=10).json()
    assert doc["limits"]["per-ip"]["counts"]["*"]["shadow_limited"] == 3
    # Back to enforce with a limit high enough: 429s stop (HAProxy counted the refused too).
    r = patch(url, {"per-ip": {"mode": "enforce", "rate": 0.1, "burst": 100}})
    assert r.status_code == 200, r.text
    assert "per-ip.limit 100" in fleet.client.command(f"show map {fleet.map}")
    assert codes(fleet.url, 3) == [200, 200, 200]
    # Tighten again: the next request is refused.
    raised = r.json()["applied"][0]["id"]
    r = httpx.post(f"{url}/_trimtab/balancer/revert/{raised}", headers=WRITE, timeout=10)
    assert r.status_code == 200, r.text
    doc = httpx.get(url + LIMITS, headers=READ, timeout=10).json()["limits"]["per-ip"]
    assert (doc["mode"], doc["burst"]) == ("shadow", 3)
    assert codes(fleet.url, 1) == [200]  # shadow again: served
    r = httpx.post(f"{url}/_trimtab/balancer/revert/{shadow_id}", headers=WRITE, timeout=10)
    assert r.status_code == 200, r.text
    assert codes(fleet.url, 1) == [429]


def test_what_haproxy_cannot_do_is_422_and_changes_nothing(fleet: Fleet) -> None:
    url = fleet.agent()
    before = httpx.get(url + LIMITS, headers=READ, timeout=10)
    for limits, words in (
            ({"per-ip": {"rate": 5}}, "burst = rate × 1000"),
            ({"per-ip": {"burst": 10}}, "burst = rate × 1000"),
            ({"per-ip": {"route": "/x"}}, "unknown route"),
            ({"per-ip": {"key": "global"}}, "fixed by the HAProxy config"),
            ({"per-ip": None}, "set mode off instead"),
            ({"new": {"route": "*", "key": "ip", "rate": 1, "burst": 1000}}, "cannot add"),
            ({"per-ip": {"rate": 0}}, "must be a number")):
        r = patch(url, limits)
        assert r.status_code == 422, (limits, r.text)
        assert words in r.json()["message"], (limits, r.text)
        entries = httpx.get(url + "/_trimtab/balancer/journal", headers=READ,
                            timeout=10).json()["entries"]
        assert entries[-1]["result"] == "refused" and entries[-1]["what"] == "limits"
    after = httpx.get(url + LIMITS, headers=READ, timeout=10)
    assert after.headers["etag"] == before.headers["etag"]
    assert codes(fleet.url, 4) == [200, 200, 200, 429]


def test_a_reload_loses_the_map_change_and_the_agent_restores_it(fleet: Fleet) -> None:
    url = fleet.agent()
    assert patch(url, {"per-ip": {"mode": "off"}}).status_code == 200
    old = fleet.client.show_info()["Pid"]
    for _ in range(20):  # the master may not have its handler yet: repeat until a new worker
        fleet.haproxy.send_signal(signal.SIGUSR2)
        pid = poll(lambda: fleet.client.show_info().get("Pid") if fleet._answers() else None,
                   lambda p: p not in (None, old), timeout=2)
        if pid not in (None, old):
            break
    shown = poll(lambda: fleet.client.command(f"show map {fleet.map}"),
                 lambda t: "per-ip.mode 0" in t, timeout=30)
    assert "per-ip.mode 0" in shown
    entries = httpx.get(url + "/_trimtab/balancer/journal", headers=READ,
                        timeout=10).json()["entries"]
    assert any(e["who"] == "trimtab-agent" and e["what"] == "limits.per-ip" for e in entries)
    assert codes(fleet.url, 5) == [200] * 5
