"""Requests/s and added p99 of the built-in balancer vs HAProxy, same backend, same load.

One tiny uvicorn backend (a raw ASGI app answering a fixed JSON body) sits behind
(a) ``trimtab agent balance`` (the built-in Python balancer, uvicorn) and
(b) HAProxy 2.x (roundrobin, one server). The same closed-loop load generator
(asyncio, HTTP/1.1 keep-alive, ``--concurrency`` connections) drives the
backend directly, then each balancer, for ``--seconds`` per leg; legs are
interleaved over ``--rounds`` rounds and each figure is the median round, so a
noisy neighbour slows all legs alike. Everything shares this machine's cores
(load generator included), which favours neither side.

"Added p99" = p99 through the balancer − p99 direct to the backend.
The last line is the built-in balancer's requests/s divided by HAProxy's.

Run: ``.venv/bin/python benchmarks/balancer_throughput.py [--seconds 4] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = b'{"instance":"bench"}'


async def backend_app(scope: dict, receive: object, send: object) -> None:
    """The backend: a fixed 200 JSON answer, as cheap as uvicorn allows."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})  # type: ignore[operator]


async def _connection(host: str, port: int, stop_at: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET /bench HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode("latin-1"))
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def load(url: str, seconds: float, concurrency: int) -> tuple[float, float]:
    """Closed loop for ``seconds``: (requests/s, p99 latency in ms)."""
    host, _, port = url.removeprefix("http://").partition(":")
    latencies: list[float] = []

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_connection(host, int(port), start + seconds, latencies)
                               for _ in range(concurrency)))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(0.99 * (len(latencies) - 1))] * 1000


def _start_processes(tmp: Path) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    from trimtab.agent.procs import free_port, spawn, wait_http

    procs: list[subprocess.Popen[bytes]] = []
    bport, lport, hport = free_port(), free_port(), free_port()
    here = str(Path(__file__).resolve().parent)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", here, "balancer_throughput:backend_app",
         "--port", str(bport), "--log-level", "warning", "--no-access-log"],
        stdin=subprocess.DEVNULL))
    urls = {"direct": f"http://127.0.0.1:{bport}"}
    wait_http(urls["direct"] + "/", procs[-1])
    procs.append(spawn(["balance", "--port", str(lport), f"b1={urls['direct']}"]))
    urls["built-in"] = f"http://127.0.0.1:{lport}"
    wait_http(urls["built-in"] + "/_trimtab/metrics", procs[-1])
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(f"""global
  nbthread {os.cpu_count() or 1}
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{hport}
  default_backend be
backend be
  balance roundrobin
  server b1 127.0.0.1:{bport}
""")
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    procs.append(subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL))
    urls["haproxy"] = f"http://127.0.0.1:{hport}"
    wait_http(urls["haproxy"] + "/", procs[-1])
    return urls, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    from trimtab.agent.procs import stop_all

    with tempfile.TemporaryDirectory() as tmp:
        urls, procs = _start_processes(Path(tmp))
        try:
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in urls}
            for name in urls:
                load(urls[name], 1.0, args.concurrency)  # warm-up: connections, caches
            for _ in range(args.rounds):
                for name, url in urls.items():
                    results[name].append(load(url, args.seconds, args.concurrency))
        finally:
            stop_all(procs)
    report(results, args)


def report(results: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> None:
    """Median round per leg, then the ratio line."""
    rps = {k: statistics.median(r for r, _ in v) for k, v in results.items()}
    p99 = {k: statistics.median(p for _, p in v) for k, v in results.items()}
    print(f"cores={os.cpu_count()} concurrency={args.concurrency} seconds/leg={args.seconds} "
          f"rounds={args.rounds} (median round shown)")
    for name in results:
        added = "" if name == "direct" else f"  added p99 {p99[name] - p99['direct']:+7.2f} ms"
        print(f"{name:>9}: {rps[name]:8.0f} req/s  p99 {p99[name]:7.2f} ms{added}")
    print(f"ratio built-in/haproxy requests/s: {rps['built-in'] / rps['haproxy']:.3f}")


if __name__ == "__main__":
    main()
