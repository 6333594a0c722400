"""The examples under a real gunicorn with three sync workers, run by their docstring command.

For the Flask and the Django example: the cockpit's collectors scrape them and see the
framework's route templates; a TTL change through the control API reaches every worker
(each one serves hits afterwards) and so does an invalidation; the journal holds one entry
per change whichever worker answers; the control API refuses bad input as the ASGI agent does; /metrics has the ASGI
agent's families.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.procs import free_port, stop_all, wait_http

from tests.agent.wsgi.apps import starlette_app
from tests.agent.wsgi.test_wsgi_middleware import families
from tests.support import ROOT, poll

WORKERS = 3
W_SECRET, R_SECRET = "w-secret-gunicorn", "r-secret-gunicorn"
TOKENS = f"alice:write:{W_SECRET},bob:read:{R_SECRET}"
W = {"authorization": f"Bearer {W_SECRET}"}
R = {"authorization": f"Bearer {R_SECRET}"}
ITEMS = "/items/<int:id>"
ORDERS = {"flask": "/orders", "django": "/api/orders"}  # Django's sits under an include()
EXAMPLES = {"flask": ROOT / "examples" / "flask_app.py",
            "django": ROOT / "examples" / "django_app" / "shop" / "wsgi.py"}


@dataclass
class Served:
    example: str
    base: str
    state: Path
    proc: subprocess.Popen[bytes]


def docstring_command(source: Path) -> tuple[dict[str, str], list[str]]:
    """(environment, argv) of the one ``gunicorn`` line in the example's docstring."""
    doc = ast.get_docstring(ast.parse(source.read_text())) or ""
    lines = [line.strip() for line in doc.splitlines() if " gunicorn " in f" {line.strip()}"]
    assert len(lines) == 1, f"{source}: one gunicorn command expected, found {lines}"
    words = shlex.split(lines[0])
    env = dict(w.split("=", 1) for w in words[:words.index("gunicorn")])
    return env, words[words.index("gunicorn") + 1:]


@contextlib.contextmanager
def gunicorn(example: str, tmp: Path, extra: tuple[str, ...] = ()) -> Iterator[Served]:
    """The example as its docstring runs it, on a free port, with this test's tokens/state."""
    env, args = docstring_command(EXAMPLES[example])
    assert {"TRIMTAB_TOKENS", "TRIMTAB_STATE_DIR"} <= set(env), env
    port = free_port()
    args[args.index("-b") + 1] = f"127.0.0.1:{port}"
    args[args.index("-w") + 1] = str(WORKERS)
    state = tmp / "state"
    env = {**os.environ, **env, "TRIMTAB_TOKENS": TOKENS, "TRIMTAB_STATE_DIR": str(state),
           "TRIMTAB_INSTANCE": f"{example}-1"}
    # No control socket (gunicorn 27 puts one in ~/.gunicorn, shared by every server), and
    # a short graceful stop: sync workers idle between requests leave at once anyway.
    cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--graceful-timeout", "3",
           *extra, *args]
    with open(tmp / "gunicorn.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", proc, timeout=60)
        yield Served(example, f"http://127.0.0.1:{port}", state, proc)
    finally:
        stop_all([proc])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any worker the master left behind


@pytest.fixture(params=sorted(EXAMPLES))
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    with gunicorn(request.param, tmp_path) as running:
        yield running


def fresh_get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A GET on a new connection, so that any worker may take it."""
    with httpx.Client(timeout=10.0, headers=headers) as client:
        return client.get(url)


def worker_pids(base: str) -> set[int]:
    seen: set[int] = set()
    poll(lambda: seen.add(fresh_get(f"{base}/_trimtab/health", R).json()["pid"]) or seen,
         lambda s: len(s) >= WORKERS, timeout=60)
    assert len(seen) == WORKERS, seen
    return seen


def set_ttl(base: str, ttl: float, reason: str) -> httpx.Response:
    etag = fresh_get(f"{base}/_trimtab/config", R).headers["etag"]
    with httpx.Client(timeout=10.0) as client:
        return client.patch(f"{base}/_trimtab/config", headers={**W, "if-match": etag},
                            json={"routes": {ITEMS: {"ttl": ttl}}, "reason": reason})


@pytest.mark.slow
def test_a_ttl_change_reaches_every_worker_and_is_journaled_once(served: Served) -> None:
    pids = worker_pids(served.base)
    assert "x-trimtab-cache" not in fresh_get(f"{served.base}/items/1").headers
    r = set_ttl(served.base, 30, "cache items")
    assert r.status_code == 200, r.text
    # Each worker has its own memory store: a hit carries the body its own origin call made.
    hit_by: set[int] = set()

    def one() -> set[int]:
        resp = fresh_get(f"{served.base}/items/1")
        assert resp.status_code == 200
        if resp.headers.get("x-trimtab-cache") == "hit":
            hit_by.add(resp.json()["worker"])
        return hit_by

    assert poll(one, lambda s: s == pids, timeout=90, interval=0.0) == pids
    # An invalidation answered by one worker empties every worker's store: the first answer
    # of each worker afterwards is a miss.
    with httpx.Client(timeout=10.0) as client:
        dropped = client.post(f"{served.base}/_trimtab/cache/invalidate", headers=W,
                              json={"route": ITEMS, "reason": "new prices"})
    assert dropped.status_code == 200, dropped.text
    first: dict[int, str] = {}

    def after() -> dict[int, str]:
        resp = fresh_get(f"{served.base}/items/1")
        first.setdefault(resp.json()["worker"], resp.headers.get("x-trimtab-cache", ""))
        return first

    assert poll(after, lambda f: set(f) == pids, timeout=90, interval=0.0) == \
        dict.fromkeys(pids, "miss")
    assert set_ttl(served.base, 0, "stop caching").status_code == 200
    # Whichever worker answers: one journal entry per change, and no more hits.
    for _ in range(3 * WORKERS):
        entries = fresh_get(f"{served.base}/_trimtab/journal", R).json()["entries"]
        assert [(e["what"], e["result"], e["new"], e["reason"]) for e in entries] == [
            ("config", "accepted", {"routes": {ITEMS: {"ttl": 30.0}}}, "cache items"),
            ("cache.invalidate", "accepted", {"route": ITEMS}, "new prices"),
            ("config", "accepted", {"routes": {ITEMS: {"ttl": 0.0}}}, "stop caching")]
        assert "x-trimtab-cache" not in fresh_get(f"{served.base}/items/1").headers


@pytest.mark.slow
def test_the_cockpit_scrapes_route_templates(served: Served) -> None:
    from trimtab.app.model.fleet import FleetModel
    from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

    model = FleetModel()
    target = ScrapeTarget("wsgi", f"{served.base}/metrics", token=R_SECRET)
    engine = ScrapeEngine([target], model.ingest, on_cycle=model.tick,
                          on_traces=model.ingest_traces, on_config=model.ingest_config,
                          traces_interval=0.5).start()
    try:
        def seen() -> tuple[bool, bool, bool]:
            for n in range(5):
                fresh_get(f"{served.base}/items/{n}")
            fresh_get(f"{served.base}/search?q=x")
            return model.read(lambda m: (
                ITEMS in m.routes and m.routes[ITEMS].rate > 0,
                ITEMS in m.configs.get("wsgi", {}).get("routes", {}),
                any(t.get("route") == ITEMS for t in m.traces)))

        assert poll(seen, all, timeout=90, interval=0.2) == (True, True, True)
        assert model.read(lambda m: m.health["wsgi"].up)
        assert not model.read(lambda m: [r for r in m.routes if "/items/" in r and r != ITEMS])
        # Every route the framework declares is configurable, includes joined as Django does.
        orders = ORDERS[served.example]
        assert {ITEMS, "/search", orders} <= set(model.read(lambda m: m.configs["wsgi"]["routes"]))
        with httpx.Client(timeout=10.0) as client:
            assert client.post(f"{served.base}{orders}", json=[1]).status_code == 201
        # Another worker may answer the scrape: it sees the POST once its worker published.
        assert f'route="{orders}",status="201"' in poll(
            lambda: fresh_get(f"{served.base}/metrics").text,
            lambda text: f'route="{orders}",status="201"' in text, timeout=30)
    finally:
        engine.stop()


@pytest.mark.slow
def test_bad_input_and_metric_families_as_the_asgi_agent(served: Served) -> None:
    worker_pids(served.base)  # every worker up: the refusals below land on any of them
    journal = served.state / next(p.name for p in served.state.glob("journal-*.jsonl"))
    before = journal.read_bytes()
    etag = fresh_get(f"{served.base}/_trimtab/config", R).headers["etag"]
    with httpx.Client(timeout=10.0) as client:
        bad = client.patch(f"{served.base}/_trimtab/config", headers={**W, "if-match": etag},
                           json={"routes": {ITEMS: {"ttl": -5}}})
        anonymous = client.patch(f"{served.base}/_trimtab/config", headers={"if-match": etag},
                                 json={"routes": {ITEMS: {"ttl": 5}}})
    assert bad.status_code == 422, bad.text
    assert f"routes['{ITEMS}'].ttl" in [e["field"] for e in bad.json()["errors"]]
    assert anonymous.status_code == 401, anonymous.text
    assert fresh_get(f"{served.base}/_trimtab/config", R).headers["etag"] == etag
    added = journal.read_bytes()[len(before):].decode().splitlines()
    assert len(added) == 1 and '"refused"' in added[0]  # the 401 is counted, not journaled
    for secret in (W_SECRET, R_SECRET):
        assert secret not in journal.read_text()
    # The same families (names, types, label names, buckets) as the ASGI agent after the
    # same requests (merged over the workers through the state dir on the WSGI side).
    asgi = TrimtabMiddleware(starlette_app(), instance="asgi", tokens=TOKENS)

    async def drive() -> None:
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            for path in ("/items/1", "/nope"):
                await client.get(path)
            await client.patch("/_trimtab/config")

    asyncio.run(drive())
    for path in ("/items/1", "/nope"):
        fresh_get(f"{served.base}{path}")
    wanted = families(asgi.metrics_payload("")[0].decode())
    got = poll(lambda: families(fresh_get(f"{served.base}/metrics").text),
               lambda fams: fams == wanted, timeout=30)
    assert got == wanted


@pytest.mark.slow
def test_an_app_built_before_fork_still_counts_every_worker(tmp_path: Path) -> None:
    """``--preload`` builds the agent in the master: each worker must still publish its own
    counters (named by the pid that serves), so /metrics sums all the requests once."""
    with gunicorn("flask", tmp_path, extra=("--preload",)) as running:
        pids = worker_pids(running.base)
        for n in range(60):
            assert fresh_get(f"{running.base}/items/{n}").status_code == 200
        published = {int(p.stem.rsplit("-", 1)[1])
                     for p in (running.state / "metrics").glob("*.json")}
        assert published <= pids

        def counted() -> float:
            text = fresh_get(f"{running.base}/metrics").text
            return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == "trimtab_http_requests_total"
                       and s.labels["route"] == ITEMS)

        assert poll(counted, lambda n: n == 60.0, timeout=30) == 60.0
