"""Rate limits in real uvicorn agents: every worker, two instances on one Redis, Redis killed,
shadow counting what enforce then refuses, and the control client's typed calls."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from trimtab.agent.procs import stop_all, wait_http
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import APPLIED, REFUSED, Agent, expected_etags

from tests.agent.test_redis_store import redis_url  # noqa: F401  (the redis-server fixture)
from tests.support import poll, start_uvicorn

W = {"authorization": "Bearer w-secret"}
R = {"authorization": "Bearer r-secret"}
TOKENS = "alice:write:w-secret,bob:read:r-secret"
APP = "tests.agent.ratelimit.live_app:app"
ITEMS = "/items/{i}"


@contextmanager
def agent(tmp_path: Path, name: str, *, state: bool = False, store: str | None = None,
          workers: int = 1) -> Iterator[str]:
    env = {**os.environ, "TRIMTAB_TOKENS": TOKENS, "LIVE_INSTANCE": name}
    env.pop("TRIMTAB_STATE_DIR", None)
    env.pop("TRIMTAB_RATELIMIT_STORE", None)
    if state:
        env["TRIMTAB_STATE_DIR"] = str(tmp_path / f"state-{name}")
    if store:
        env["TRIMTAB_RATELIMIT_STORE"] = store
    args = ["--workers", str(workers)] if workers > 1 else []
    proc, port = start_uvicorn(APP, tmp_path / f"{name}.log", factory=True, env=env, args=args)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/metrics", proc)
        yield base
    finally:
        stop_all([proc])


def set_limits(base: str, limits: Mapping[str, Any], reason: str = "test") -> int:
    with httpx.Client(base_url=base, timeout=10) as c:
        etag = c.get("/_trimtab/config", headers=R).headers["etag"]
        r = c.patch("/_trimtab/config", json={"limits": dict(limits), "reason": reason},
                    headers={**W, "if-match": etag})
        assert r.status_code == 200, r.text
        return int(r.json()["journal_id"])


def fresh(base: str, n: int, path: str = "/items/1",
          headers: dict[str, str] | None = None) -> list[httpx.Response]:
    """``n`` requests, each on a new connection (so a multi-worker server spreads them)."""
    out = []
    for _ in range(n):
        with httpx.Client(base_url=base, timeout=10) as c:
            out.append(c.get(path, headers=headers))
    return out


def counters(base: str) -> dict[tuple[str, ...], float]:
    text = httpx.get(base + "/metrics", timeout=10).text
    out: dict[tuple[str, ...], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in ("trimtab_ratelimit_requests_total", "trimtab_http_requests_total",
                          "trimtab_ratelimit_store_errors_total"):
                out[(s.name, *sorted(s.labels.items()))] = s.value  # type: ignore[arg-type]
    return out


def total(found: dict[tuple[str, ...], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for k, v in found.items() if k[0] == name and want <= set(k[1:]))


@pytest.mark.slow
def test_a_change_reaches_every_worker_at_once(tmp_path: Path) -> None:
    with agent(tmp_path, "w2", state=True, workers=2) as base:
        seen: set[int] = set()
        poll(lambda: seen.update(r.json()["pid"] for r in fresh(base, 4)) or seen,
             lambda s: len(s) == 2, timeout=60)
        assert len(seen) == 2, "uvicorn never spread requests over both workers"
        enforce = set_limits(base, {"all": {"route": "*", "key": "global", "rate": 0.001,
                                            "burst": 1, "mode": "enforce"}})
        # The very next requests, on both workers: one shared bucket of one request.
        statuses = Counter(r.status_code for r in fresh(base, 30))
        assert statuses == {200: 1, 429: 29}
        shadow = set_limits(base, {"all": {"mode": "shadow"}})
        replies = fresh(base, 30)
        assert {r.status_code for r in replies} == {200}
        assert all("ratelimit" not in r.headers for r in replies)  # shadow is invisible
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.post(f"/_trimtab/revert/{shadow}", headers=W).status_code == 200
        assert Counter(r.status_code for r in fresh(base, 10)) == {429: 10}
        # Every worker's counts, whichever worker answers the scrape (the other worker
        # publishes its snapshot within a second).
        # (Shadow counts polled too: a worker's last shadow decisions may wait for its
        # trailing publish while the final requests all went to the other worker.)
        found = poll(lambda: counters(base), lambda f: total(
            f, "trimtab_ratelimit_requests_total", result="limited") == 39 and total(
            f, "trimtab_http_requests_total", status="429") == 39 and total(
            f, "trimtab_ratelimit_requests_total", result="shadow_limited") == 30, timeout=30)
        assert total(found, "trimtab_http_requests_total", status="429") == 39
        assert total(found, "trimtab_ratelimit_requests_total", result="limited") == 39
        assert total(found, "trimtab_ratelimit_requests_total", result="shadow_limited") == 30
        assert enforce < shadow


@pytest.mark.slow
def test_two_instances_on_one_redis_share_one_global_limit(
        tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    with ExitStack() as stack:
        bases = [stack.enter_context(agent(tmp_path, f"r{i}", store=redis_url)) for i in (1, 2)]
        for base in bases:
            set_limits(base, {"fleet": {"route": ITEMS, "key": "global", "rate": 0.001,
                                        "burst": 500, "mode": "enforce"}})
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def client(k: int) -> None:
            with httpx.Client(base_url=bases[k % 2], timeout=10) as c:
                for i in range(250):
                    code = c.get(f"/items/{i}").status_code
                    with lock:
                        statuses[code] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert sum(statuses.values()) == 2000
        assert abs(statuses[200] - 500) <= 25, statuses  # ±5 % (it is exact: one Lua script)
        refused = [total(counters(b), "trimtab_http_requests_total", status="429") for b in bases]
        assert sum(refused) == statuses[429]


@pytest.mark.slow
def test_redis_killed_mid_run_loses_no_request(tmp_path: Path, redis_url: str  # noqa: F811
                                               ) -> None:
    with ExitStack() as stack:
        bases = [stack.enter_context(agent(tmp_path, f"k{i}", store=redis_url)) for i in (1, 2)]
        for base in bases:
            set_limits(base, {"fleet": {"route": "*", "key": "ip", "rate": 1000,
                                        "burst": 1000, "mode": "enforce"}})
        codes: list[int] = []
        with httpx.Client(timeout=10) as c:
            for i in range(600):
                if i == 200:
                    try:
                        redis.Redis.from_url(redis_url).shutdown(nosave=True)
                    except redis.ConnectionError:
                        pass  # SHUTDOWN answers by closing the connection
                codes.append(c.get(f"{bases[i % 2]}/items/{i}").status_code)
        assert Counter(codes) == {200: 600}
        errors = sum(total(counters(b), "trimtab_ratelimit_store_errors_total") for b in bases)
        assert errors > 0


LOAD = [("k-small", 5), ("k-mid", 30), ("k-greedy", 60)]  # 95 requests, three API keys


def replay(base: str) -> Counter[int]:
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=base, timeout=10) as c:
        for rnd in range(60):
            for key, n in LOAD:
                if rnd < n:
                    statuses[c.get(f"/items/{rnd}", headers={"x-api-key": key}).status_code] += 1
    return statuses


def test_shadow_counts_what_enforce_then_refuses(tmp_path: Path) -> None:
    limit = {"route": ITEMS, "key": "header:X-Api-Key", "rate": 0.001, "burst": 20}
    with agent(tmp_path, "shadow") as base:
        set_limits(base, {"per-key": {**limit, "mode": "shadow"}})
        assert replay(base) == {200: 95}
        would = total(counters(base), "trimtab_ratelimit_requests_total", result="shadow_limited")
    with agent(tmp_path, "enforce") as base:
        set_limits(base, {"per-key": {**limit, "mode": "enforce"}})
        refused = replay(base)[429]
        found = counters(base)
    assert would == refused == 10 + 40  # what each key sent beyond its burst of 20
    assert total(found, "trimtab_ratelimit_requests_total", result="limited") == refused
    assert total(found, "trimtab_http_requests_total", status="429") == refused


def test_control_client_reads_sets_and_rolls_back_limits(tmp_path: Path) -> None:
    with agent(tmp_path, "client") as base, ControlClient("w-secret") as client:
        me = Agent("client", base)
        reads = client.read_configs([me])
        bad = client.set_limit([me], "per-ip", {"route": ITEMS, "key": "ip", "rate": 0,
                                                "burst": 5}, "too strict", expected_etags(reads))
        assert bad.outcomes[me].status == REFUSED
        assert "limits['per-ip'].rate" in bad.outcomes[me].fields
        result = client.set_limit([me], "per-ip", {"route": ITEMS, "key": "ip", "rate": 0.001,
                                                   "burst": 2, "mode": "enforce"}, "greedy",
                                  expected_etags(reads))
        assert result.outcomes[me].status == APPLIED
        assert Counter(r.status_code for r in fresh(base, 4)) == {200: 2, 429: 2}
        read = client.read_limits(me)
        view = read.limits["per-ip"]
        assert (view.rate, view.burst, view.mode, read.store) == (0.001, 2, "enforce", "memory")
        assert view.counts == {ITEMS: {"allowed": 2, "limited": 2, "shadow_limited": 0}}
        assert client.read_config(me).limits()["per-ip"].key == "ip"
        back = client.rollback(result)
        assert back.outcomes[me].status == APPLIED
        assert client.read_limits(me).limits == {}
        assert Counter(r.status_code for r in fresh(base, 3)) == {200: 3}
