"""Helpers the tests share: one polling loop, one uvicorn subprocess, one HAProxy config.

Kept here (not in conftest.py) so that test modules import them by name; conftest.py holds
fixtures only.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from trimtab.agent.procs import free_port, stop_all, wait_http

ROOT = Path(__file__).resolve().parents[1]

_T = TypeVar("_T")


# ---------------------------------------------------------------- polling

def poll(fn: Callable[[], _T], ok: Callable[[_T], object] = bool, timeout: float = 15.0,
         interval: float = 0.05) -> _T:
    """Call ``fn`` until ``ok(value)`` holds or ``timeout`` seconds pass; the last value.

    Never raises on timeout: callers assert on the value so that a failure shows what was seen.
    ``fn`` is always called at least once, and once more after the deadline is checked.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for(condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.05,
             what: str = "condition") -> None:
    """Block until ``condition()`` is truthy; ``TimeoutError`` naming ``what`` if it never is."""
    if not poll(condition, bool, timeout, interval):
        raise TimeoutError(f"{what} not met within {timeout:g} s")


# ---------------------------------------------------------------- uvicorn subprocess

def start_uvicorn(app: str, log: Path, *, port: int | None = None, factory: bool = False,
                  env: Mapping[str, str] | None = None, args: Sequence[str] = (),
                  new_session: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``uvicorn <app>`` on a free loopback port (or ``port``); (process, port).

    Runs from the repository root so that ``tests.…`` apps import; output goes to ``log``.
    ``env`` replaces the environment when given. The caller waits and stops it (``stop_all``);
    :func:`uvicorn_server` does both.
    """
    port = free_port() if port is None else port
    cmd = [sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), app,
           "--app-dir", str(ROOT), "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *args]
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=dict(env) if env is not None else None,
                                start_new_session=new_session)
    return proc, port


@contextlib.contextmanager
def uvicorn_server(app: str, log: Path, *, ready: str = "/metrics", factory: bool = False,
                   env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A uvicorn subprocess serving ``app``, answering 200 on ``ready``; yields its base URL.

    Stopped (SIGTERM, then SIGKILL) on exit, also when it never became ready.
    """
    proc, port = start_uvicorn(app, log, factory=factory, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + ready, proc)
        yield base
    finally:
        stop_all([proc])


# ---------------------------------------------------------------- HAProxy config

def haproxy_config(port: int, servers: Mapping[str, str], *, sock: str | Path | None = None,
                   tcp: int | None = None, prom: int | None = None,
                   weights: Mapping[str, int] | None = None,
                   backends: Mapping[str, str] | None = None) -> str:
    """An haproxy.cfg: frontend ``fe`` on ``port`` before backend ``be`` and its ``servers``.

    ``servers`` maps a server name to ``host:port``; every backend in ``backends`` (name to
    balance algorithm, default ``{"be": "roundrobin"}``) lists all of them with ``weights``
    (default 1). ``sock``/``tcp`` add admin-level stats sockets (runtime API) on a Unix path /
    a loopback port; ``prom`` adds a frontend serving the Prometheus exporter on /metrics.
    """
    backends = {"be": "roundrobin"} if backends is None else backends
    weights = weights or {}
    lines = []
    if sock is not None or tcp is not None:
        lines.append("global")
        if sock is not None:
            lines.append(f"  stats socket {sock} mode 600 level admin")
        if tcp is not None:
            lines.append(f"  stats socket ipv4@127.0.0.1:{tcp} level admin")
        lines.append("  stats timeout 5s")
    lines += ["defaults", "  mode http", "  timeout connect 2s", "  timeout client 10s",
              "  timeout server 10s",
              "frontend fe", f"  bind 127.0.0.1:{port}", "  default_backend be"]
    if prom is not None:
        lines += ["frontend prom", f"  bind 127.0.0.1:{prom}",
                  "  http-request use-service prometheus-exporter if { path /metrics }"]
    for name, balance in backends.items():
        lines += [f"backend {name}", f"  balance {balance}"]
        lines += [f"  server {s} {addr} weight {weights.get(s, 1)}" for s, addr in servers.items()]
    return "\n".join(lines) + "\n"
