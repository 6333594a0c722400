"""Real ``uvicorn --workers 2``: a config change reaches every worker, or the agent refuses."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http

from tests.support import start_uvicorn

TOKENS = "alice:write:w-secret"
W = {"authorization": "Bearer w-secret"}
FACTORY = "trimtab.demo.app:app_from_env"


def _uvicorn(port: int, log: Path, env_extra: dict[str, str],
             unset: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRIMTAB_TOKENS": TOKENS, "TRIMTAB_INSTANCE": "api-w",
           "TRIMTAB_SLOWNESS": "0", **env_extra}
    for name in unset:
        env.pop(name, None)
    # Its own session: the workers are stopped with the supervisor (see _stop_group).
    return start_uvicorn(FACTORY, log, port=port, factory=True, env=env, args=("--workers", "2"),
                         new_session=True)[0]


@pytest.fixture()
def workers(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = _uvicorn(port, tmp_path / "uvicorn.log", {"TRIMTAB_STATE_DIR": str(tmp_path / "st")})
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop uvicorn and its worker processes (they share its session)."""
    pgid = proc.pid
    stop_all([proc])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, 9)  # any worker the supervisor left behind


def _health_by_pid(url: str, want: int, deadline_s: float = 30.0) -> dict[int, int]:
    """Poll health on fresh connections until two workers report version ``want``."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with httpx.Client(headers=W, timeout=5.0) as client:  # new connection each time
            body = client.get(f"{url}/_trimtab/health").json()
        seen[body["pid"]] = body["config_version"]
        if len(seen) >= 2 and all(v == want for v in seen.values()):
            return seen
    return seen


def test_config_change_reaches_every_worker(workers: str) -> None:
    assert len(_health_by_pid(workers, 1)) == 2  # two distinct workers answer
    with httpx.Client(headers=W, timeout=5.0) as client:
        etag = client.get(f"{workers}/_trimtab/config").headers["etag"]
        r = client.patch(f"{workers}/_trimtab/config", headers={"if-match": etag},
                         json={"routes": {"/search": {"ttl": 42}}, "reason": "workers"})
        assert r.status_code == 200, r.text
    seen = _health_by_pid(workers, 2)
    assert len(seen) == 2 and set(seen.values()) == {2}, seen
    # Whichever worker answers, the document and the journal are the same.
    for _ in range(6):
        with httpx.Client(headers=W, timeout=5.0) as client:
            doc = client.get(f"{workers}/_trimtab/config").json()
            journal = client.get(f"{workers}/_trimtab/journal").json()["entries"]
        assert doc["routes"]["/search"]["ttl"] == 42.0
        assert [(e["id"], e["result"]) for e in journal] == [(1, "accepted")]


def test_stale_if_match_is_refused_across_workers(workers: str) -> None:
    with httpx.Client(headers=W, timeout=5.0) as client:
        etag = client.get(f"{workers}/_trimtab/config").headers["etag"]
        first = client.patch(f"{workers}/_trimtab/config", headers={"if-match": etag},
                             json={"routes": {"/search": {"ttl": 1}}})
    with httpx.Client(headers=W, timeout=5.0) as other:  # likely another worker
        second = other.patch(f"{workers}/_trimtab/config", headers={"if-match": etag},
                             json={"routes": {"/search": {"ttl": 2}}})
    assert first.status_code == 200 and second.status_code == 412


def test_workers_without_shared_state_refuse_with_a_clear_message(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "uvicorn.log"
    proc = _uvicorn(port, log, {}, unset=("TRIMTAB_STATE_DIR",))
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and b"TRIMTAB_STATE_DIR" not in log.read_bytes():
            time.sleep(0.1)
        assert b"would diverge between workers" in log.read_bytes()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
    finally:
        _stop_group(proc)


def _health_until(url: str, done: Callable[[dict[int, dict[str, Any]]], bool],
                  touch: str | None = None, deadline_s: float = 30.0) -> dict[int, dict[str, Any]]:
    """Poll health per worker (fresh connections), optionally requesting ``touch`` in between."""
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not done(seen):
        if touch:  # anonymous: a request with Authorization would bypass the cache
            httpx.get(f"{url}{touch}", timeout=5.0)
        with httpx.Client(headers=W, timeout=5.0) as client:
            body = client.get(f"{url}/_trimtab/health").json()
        seen[body["pid"]] = body
    return seen


def test_cache_invalidation_reaches_every_workers_memory_store(workers: str) -> None:
    def both(pred: Callable[[dict[str, Any]], bool]) -> Callable[[dict[int, Any]], bool]:
        return lambda seen: len(seen) >= 2 and all(pred(h) for h in seen.values())

    warm = _health_until(workers, both(lambda h: h["cache_entries"] >= 1), touch="/products/1")
    assert len(warm) == 2 and all(h["cache_entries"] >= 1 for h in warm.values()), ("warm", warm)
    with httpx.Client(headers=W, timeout=5.0) as client:
        r = client.post(f"{workers}/_trimtab/cache/invalidate", json={"route": "/products/{id}"})
        assert r.status_code == 200, r.text
    cold = _health_until(workers, both(lambda h: h["cache_entries"] == 0))
    assert len(cold) == 2 and all(h["cache_entries"] == 0 for h in cold.values()), ("cold", cold)


def test_metrics_are_summed_over_workers(workers: str, tmp_path: Path) -> None:
    def search_count(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("trimtab_http_requests_total{") and '"/search"' in line)

    snapshots = tmp_path / "st" / "metrics"
    deadline = time.monotonic() + 30.0
    sent = 0
    # Fresh connections until both workers have served /search (their snapshots say so).
    while time.monotonic() < deadline:
        httpx.get(f"{workers}/search?q=x", timeout=5.0)
        sent += 1
        counts = [search_count_json(p) for p in snapshots.glob("*.json")]
        if sent >= 10 and sum(1 for c in counts if c > 0) >= 2:
            break
    assert sum(1 for c in counts if c > 0) >= 2, counts
    # Every scrape, whichever worker answers, reports all requests once published.
    answers: list[float] = []
    while time.monotonic() < deadline:
        answers = [search_count(httpx.get(f"{workers}/metrics", timeout=5.0).text)
                   for _ in range(8)]
        if answers == [sent] * 8:
            break
        time.sleep(0.2)
    assert answers == [sent] * 8, (answers, sent)


def search_count_json(path: Path) -> float:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0.0
    return float(sum(n for route, _, _, n in data["requests"] if route == "/search"))
