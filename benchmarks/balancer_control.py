"""Latency of one weight change: through the trimtab HAProxy agent vs straight to the socket.

A real haproxy (admin socket in a temp dir) and the agent (``trimtab agent
haproxy``: uvicorn, bearer token, If-Match, file journal with fsync) run on
this machine. Each round sets the same weight both ways, alternating values so
every change is real:

- direct: one ``set weight direct/s1 W`` written to the UNIX socket (connect,
  send, read the answer) — what a shell script with socat does. It targets a
  backend the agent does not manage, so it does not move the agent's ETag;
- agent: one ``PATCH /_trimtab/balancer`` with the ETag from the previous
  answer on a keep-alive HTTP connection. The agent reads the live state
  (``show stat`` + ``show servers state``), checks the version, validates, applies
  ``set weight``, journals (fsync) and answers with the fresh state (two more reads).

Legs alternate inside each round; figures are medians and p95 over all changes.
The last line is the agent's median latency divided by the direct one.

Run: ``.venv/bin/python benchmarks/balancer_control.py [--changes 300]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TOKEN = "bench-write-token"
CONFIG = """global
  stats socket {sock} mode 600 level admin
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance roundrobin
  server s1 127.0.0.1:{dead} weight 1
  server s2 127.0.0.1:{dead} weight 1
backend direct
  balance roundrobin
  server s1 127.0.0.1:{dead} weight 1
"""


def _start(tmp: Path) -> tuple[str, str, list[subprocess.Popen[bytes]]]:
    from trimtab.agent.balance.haproxy import HAProxyError, RuntimeClient
    from trimtab.agent.procs import free_port

    sock = str(tmp / "admin.sock")
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(CONFIG.format(sock=sock, port=free_port(), dead=free_port()))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    procs = [subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL)]
    deadline = time.monotonic() + 15
    while True:
        try:
            RuntimeClient(sock).show_info()
            break
        except HAProxyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    port = free_port()
    env = {**os.environ, "TRIMTAB_TOKENS": f"bench:write:{TOKEN}"}
    code = "import sys; from trimtab.agent.balance.haproxy import main; main(sys.argv[1:])"
    procs.append(subprocess.Popen(
        [sys.executable, "-c", code, "--socket", sock, "--backend", "be", "--port", str(port),
         "--journal", str(tmp / "journal.jsonl"), "--interval", "5"],
        env=env, stdin=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}/_trimtab/balancer"
    _wait(url, procs[-1])
    return sock, url, procs


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("agent exited")
        try:
            if httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("agent did not start")


def measure(sock: str, url: str, changes: int) -> tuple[list[float], list[float]]:
    """Per-change latencies in ms: (direct, agent)."""
    from trimtab.agent.balance.haproxy import RuntimeClient

    direct_client = RuntimeClient(sock)
    direct: list[float] = []
    agent: list[float] = []
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(headers=auth, timeout=10.0) as http:
        tag = http.get(url).headers["etag"]
        for i in range(changes):
            weight = 2 + i % 50
            t0 = time.perf_counter()
            direct_client.set_weight("direct", "s1", weight)
            direct.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            resp = http.patch(url, headers={"if-match": tag},
                              json={"servers": {"s1": {"weight": weight}}, "reason": "bench"})
            agent.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise RuntimeError(f"agent refused: {resp.status_code} {resp.text}")
            tag = resp.headers["etag"]
    if direct_client.get_weight("be", "s1")[0] != 2 + (changes - 1) % 50:
        raise RuntimeError("the agent's last weight did not reach haproxy")
    return direct, agent


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=300)
    args = parser.parse_args()
    from trimtab.agent.procs import stop_all

    with tempfile.TemporaryDirectory() as tmp:
        sock, url, procs = _start(Path(tmp))
        try:
            measure(sock, url, 20)  # warm-up: imports, connections, journal file
            direct, agent = measure(sock, url, args.changes)
        finally:
            stop_all(procs)
    d, a = statistics.median(direct), statistics.median(agent)
    print(f"changes={args.changes} cores={os.cpu_count()}")
    print(f"direct socket: median {d:7.3f} ms  p95 {p95(direct):7.3f} ms")
    print(f"agent API    : median {a:7.3f} ms  p95 {p95(agent):7.3f} ms  (journal fsync included)")
    print(f"ratio agent/direct median latency: {a / d:.1f}")


if __name__ == "__main__":
    main()
