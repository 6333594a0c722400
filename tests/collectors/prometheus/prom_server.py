"""A real ``prometheus`` binary on a free loopback port, scraping given targets (test helper)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from trimtab.agent.procs import free_port, stop_all, wait_http

from tests.conftest import require_binary

GLOBAL = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
"""


def config(jobs: Mapping[str, Sequence[str]], rule_files: Sequence[Path] = ()) -> str:
    """A prometheus.yml: each job scrapes its metrics URLs (``http://host:port/path``) every second.

    ``rule_files`` are loaded and evaluated every second.

    URLs of one job that differ in path become separate jobs ``job``, ``job-2``, ...
    (a Prometheus job has one ``metrics_path``).
    """
    out = [GLOBAL]
    if rule_files:
        out.insert(0, "rule_files: [" + ", ".join(f'"{p}"' for p in rule_files) + "]\n")
    for job, urls in jobs.items():
        by_path: dict[str, list[str]] = {}
        for url in urls:
            parts = urlsplit(url)
            by_path.setdefault(parts.path or "/metrics", []).append(parts.netloc)
        for i, (path, hosts) in enumerate(by_path.items()):
            name = job if i == 0 else f"{job}-{i + 1}"
            out.append(f"  - job_name: {name}\n    metrics_path: {path}\n"
                       f"    static_configs: [{{targets: {list(hosts)!r}}}]\n".replace("'", '"'))
    return "".join(out)


@contextmanager
def running_prometheus(work: Path, jobs: Mapping[str, Sequence[str]],
                       rule_files: Sequence[Path] = ()) -> Iterator[str]:
    """Start Prometheus scraping ``jobs`` (and evaluating ``rule_files``); yields its base URL;
    always stopped afterwards."""
    binary = require_binary("prometheus")
    port = free_port()
    (work / "prometheus.yml").write_text(config(jobs, rule_files))
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{port}/-/ready", procs[0], timeout=60.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all(procs)
        log.close()


@contextmanager
def running_victoria_metrics(work: Path, jobs: Mapping[str, Sequence[str]]) -> Iterator[str]:
    """Start single-node VictoriaMetrics scraping ``jobs`` (same config); yields its base URL.

    ``-search.latencyOffset=0s`` and no response cache: a scrape is queryable as soon as it
    is stored (the defaults hide the last 30 s, which a live source must see).
    """
    binary = require_binary("victoria-metrics")
    port = free_port()
    # VictoriaMetrics has no rule evaluation; its strict parser refuses the field.
    (work / "vm-scrape.yml").write_text(config(jobs).replace("  evaluation_interval: 1s\n", ""))
    log = open(work / "victoria-metrics.log", "wb")  # noqa: SIM115 - closed below
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [binary, f"-httpListenAddr=127.0.0.1:{port}",
             f"-promscrape.config={work / 'vm-scrape.yml'}",
             f"-storageDataPath={work / 'vm-data'}", "-search.latencyOffset=0s",
             "-search.disableCache", "-loggerLevel=WARN"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{port}/health", procs[0], timeout=60.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_all(procs)
        log.close()
