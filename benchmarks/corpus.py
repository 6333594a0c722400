"""A corpus of real expositions, scraped from real programs at run time.

Shared by ``benchmarks/parse.py`` and the differential test
``tests/collectors/exposition/test_real_corpus.py``: both see the same bodies, so the speed
the benchmark reports is the speed on bodies the test proved are parsed right.

The programs (each on loopback ports chosen now, each stopped on exit):

- ``prometheus`` (the apt server) scraping itself, HAProxy and the demo instance at 1 s, so its
  own ``/metrics`` carries its scrape and TSDB families;
- ``haproxy`` with its built-in Prometheus exporter, three backends of four servers each;
- a ``prometheus_client`` process: the default registry (process, platform, GC collectors) plus
  a counter, histogram and summary whose labels hold quotes, backslashes, newlines and braces,
  observed with exemplars by a thread while it runs;
- a demo instance (``trimtab.demo.app`` under uvicorn), its traffic sent through HAProxy.

Each is fetched in the text format 0.0.4 and, where the program offers it, OpenMetrics,
``SCRAPES`` times with traffic in between, so successive scrapes of a target differ in their
values (and sometimes in their series, as real targets do). No body text is written here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from trimtab.agent.procs import free_port, stop_all, wait_http

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: tests.support is importable from the repo root
    sys.path.insert(0, str(ROOT))

from tests.support import haproxy_config  # noqa: E402

SCRAPES = 6
TEXT_ACCEPT = "text/plain;version=0.0.4"
OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

# The prometheus_client program: default collectors, hostile label values, exemplars.
_CLIENT_PROGRAM = r'''
import random, sys, threading, time
from prometheus_client import Counter, Histogram, Summary, Gauge, Info, start_http_server

routes = ['/users/{id}', '/q?a="b"&c=\\d', 'multi\nline', 'brace}{,=', 'tab\there', 'ünï "cödé"']
requests = Counter("app_requests", 'Requests "served" \\ per route\nand method', ["route", "method"])
latency = Histogram("app_latency_seconds", "Latency", ["route"])
size = Summary("app_payload_bytes", "Payload size", ["route"])
inflight = Gauge("app_inflight", "In flight, NaN before the first request", ["route"])
Info("app_build", "Build information").info({"version": "1.2.3", "commit": "dead\\beef"})
for route in routes:
    inflight.labels(route).set(float("nan"))
rng = random.Random(1)

def work():
    n = 0
    while True:
        n += 1
        route = rng.choice(routes)
        trace = {"trace_id": "%016x" % rng.getrandbits(64)}
        requests.labels(route, rng.choice(["GET", "POST"])).inc(exemplar=trace)
        latency.labels(route).observe(rng.lognormvariate(-3, 1.2), exemplar=trace)
        size.labels(route).observe(rng.randint(1, 1 << 16))
        inflight.labels(route).set(rng.choice([0, 1, 2, float("inf")]))
        time.sleep(0.001)

threading.Thread(target=work, daemon=True).start()
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(3600)
'''


@dataclass(frozen=True)
class Body:
    """Successive scrapes of one target in one format; ``content_type`` as the server sent it."""

    name: str
    content_type: str
    scrapes: tuple[str, ...]

    @property
    def openmetrics(self) -> bool:
        """True when the server answered in OpenMetrics."""
        return "application/openmetrics-text" in self.content_type


def _binary(name: str) -> str:
    for candidate in (f"/usr/bin/{name}", f"/usr/sbin/{name}"):
        if Path(candidate).exists():
            return candidate
    raise FileNotFoundError(f"{name} is not installed (Debian package: {name})")


def _prometheus_config(targets: dict[str, str]) -> str:
    jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
                   for job, addr in targets.items())
    return f"global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n{jobs}"


@contextlib.contextmanager
def real_targets(workdir: Path) -> Iterator[tuple[dict[str, str], str]]:
    """Start the four programs; yields ({name: metrics URL}, the URL that takes demo traffic).

    Every process is stopped on exit, also when one fails to start.
    """
    procs: list[subprocess.Popen[bytes]] = []
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def start(name: str, cmd: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        with (logs / f"{name}.log").open("wb") as out:
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                          stdin=subprocess.DEVNULL, env=env))
        wait_http(ready, procs[-1], timeout=60)

    try:
        demo_port, client_port = free_port(), free_port()
        fe, prom_exporter, prom_port = free_port(), free_port(), free_port()
        start("demo", [sys.executable, "-m", "uvicorn", "--factory", "trimtab.demo.app:app_from_env",
                       "--host", "127.0.0.1", "--port", str(demo_port), "--log-level", "warning"],
              f"http://127.0.0.1:{demo_port}/metrics",
              env={**os.environ, "TRIMTAB_INSTANCE": "api-1", "TRIMTAB_SLOWNESS": "0.01"})
        start("client_python", [sys.executable, "-c", _CLIENT_PROGRAM, str(client_port)],
              f"http://127.0.0.1:{client_port}/metrics")
        servers = {f"api-{i}": f"127.0.0.1:{demo_port}" for i in range(1, 5)}
        config = workdir / "haproxy.cfg"
        config.write_text(haproxy_config(fe, servers, prom=prom_exporter, backends={
            "be": "roundrobin", "search": "leastconn", "static": "first"}))
        start("haproxy", [_binary("haproxy"), "-db", "-f", str(config)],
              f"http://127.0.0.1:{prom_exporter}/metrics")
        prom_config = workdir / "prometheus.yml"
        prom_config.write_text(_prometheus_config({
            "prometheus": f"127.0.0.1:{prom_port}", "haproxy": f"127.0.0.1:{prom_exporter}",
            "demo": f"127.0.0.1:{demo_port}", "client": f"127.0.0.1:{client_port}"}))
        start("prometheus", [_binary("prometheus"), f"--config.file={prom_config}",
                             f"--storage.tsdb.path={workdir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
              f"http://127.0.0.1:{prom_port}/-/ready")
        yield ({"prometheus": f"http://127.0.0.1:{prom_port}/metrics",
                "haproxy": f"http://127.0.0.1:{prom_exporter}/metrics",
                "client_python": f"http://127.0.0.1:{client_port}/metrics",
                "demo": f"http://127.0.0.1:{demo_port}/metrics"},
               f"http://127.0.0.1:{fe}")
    finally:
        stop_all(procs)


def _traffic(client: httpx.Client, base: str) -> None:
    """A few requests of every kind through HAProxy, so every program's values move."""
    for path in ("/products/7", "/products/8", "/search?q=x", "/nope", "/products/7"):
        client.get(base + path)
    client.post(base + "/orders", content=b"{}")


def scrape_corpus(workdir: Path, scrapes: int = SCRAPES) -> list[Body]:
    """Every program in every format it offers, ``scrapes`` successive scrapes each."""
    with real_targets(workdir) as (urls, base), httpx.Client(timeout=10) as client:
        time.sleep(2.5)  # Prometheus has scraped every job a few times: its scrape families exist
        got: dict[tuple[str, str], list[str]] = {}
        types: dict[tuple[str, str], str] = {}
        # One round first, not kept: a server's first /metrics request adds series (Prometheus's
        # handler="/metrics" histogram), a start-up change, not what a target's scrapes see later.
        for kept in [False] + [True] * scrapes:
            _traffic(client, base)
            time.sleep(0.3)  # the client program's thread and the servers' clocks move on
            for name, url in urls.items():
                for fmt, accept in (("text", TEXT_ACCEPT), ("openmetrics", OM_ACCEPT)):
                    response = client.get(url, headers={"accept": accept}).raise_for_status()
                    content_type = response.headers.get("content-type", "")
                    served = "openmetrics" if "application/openmetrics-text" in content_type else "text"
                    if served != fmt or not kept:
                        continue  # this program offers only the text format, or a warm-up round
                    got.setdefault((name, fmt), []).append(response.text)
                    types[(name, fmt)] = content_type
    return [Body(f"{name} {fmt}", types[(name, fmt)], tuple(texts)) for (name, fmt), texts in got.items()]


def build_corpus(scrapes: int = SCRAPES) -> list[Body]:
    """:func:`scrape_corpus` in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="trimtab-corpus-") as tmp:
        return scrape_corpus(Path(tmp), scrapes)


if __name__ == "__main__":
    for body in build_corpus():
        lines = body.scrapes[0].count("\n")
        print(f"{body.name:26s} {body.content_type:60s} {lines:6d} lines, {len(body.scrapes)} scrapes")
