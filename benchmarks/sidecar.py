"""Requests/s and added p99 of the trimtab sidecar vs HAProxy as a plain proxy, same upstream.

The upstream is a real nginx answering ``/bench`` with a fixed JSON body (a service in
"any language"). In front of it, in the same run: (a) ``python -m trimtab.agent sidecar``
(metrics, traces, route resolution, cache lookup on every request; no TTL set, so every
request goes upstream) and (b) HAProxy (roundrobin, one server, no logging). The same
closed-loop load generator as ``balancer_throughput.py`` (asyncio, keep-alive) drives
nginx directly, then each proxy; legs interleave over ``--rounds`` and each figure is
the median round. Everything shares this machine's cores, load generator included.

The last line is the sidecar's requests/s divided by HAProxy's.

Run: ``.venv/bin/python benchmarks/sidecar.py [--seconds 4] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from balancer_throughput import load  # noqa: E402 - the same load generator, same rules

NGINX = """\
{user}
worker_processes 1;
error_log {work}/error.log;
pid {work}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;  # the closed loop reuses each connection throughout
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /bench {{ default_type application/json; return 200 '{{"instance":"bench"}}'; }}
    }}
}}
"""


def _start(tmp: Path) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    from trimtab.agent.procs import free_port, wait_http

    procs: list[subprocess.Popen[bytes]] = []
    nport, sport, hport = free_port(), free_port(), free_port()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    user = "user root root;" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(NGINX.format(user=user, work=tmp, port=nport))
    procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                                   "-g", "daemon off;"], stdin=subprocess.DEVNULL))
    urls = {"direct": f"http://127.0.0.1:{nport}"}
    wait_http(urls["direct"] + "/bench", procs[-1])
    (tmp / "routes.txt").write_text("/bench\n")
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "trimtab.agent", "sidecar", "--port", str(sport),
         "--upstream", urls["direct"], "--routes", str(tmp / "routes.txt")],
        stdin=subprocess.DEVNULL))
    urls["sidecar"] = f"http://127.0.0.1:{sport}"
    wait_http(urls["sidecar"] + "/metrics", procs[-1])
    (tmp / "haproxy.cfg").write_text(f"""global
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
  server n1 127.0.0.1:{nport}
""")
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    procs.append(subprocess.Popen([haproxy, "-db", "-f", str(tmp / "haproxy.cfg")],
                                  stdin=subprocess.DEVNULL))
    urls["haproxy"] = f"http://127.0.0.1:{hport}"
    wait_http(urls["haproxy"] + "/bench", procs[-1])
    return urls, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    from trimtab.agent.procs import stop_all

    with tempfile.TemporaryDirectory() as tmp:
        urls, procs = _start(Path(tmp))
        try:
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in urls}
            for url in urls.values():
                load(url, 1.0, args.concurrency)  # warm-up: connections, caches
            for _ in range(args.rounds):
                for name, url in urls.items():
                    results[name].append(load(url, args.seconds, args.concurrency))
        finally:
            stop_all(procs)
    rps = {k: statistics.median(r for r, _ in v) for k, v in results.items()}
    p99 = {k: statistics.median(p for _, p in v) for k, v in results.items()}
    print(f"cores={os.cpu_count()} concurrency={args.concurrency} seconds/leg={args.seconds} "
          f"rounds={args.rounds} (median round shown); upstream nginx")
    for name in results:
        added = "" if name == "direct" else f"  added p99 {p99[name] - p99['direct']:+7.2f} ms"
        print(f"{name:>8}: {rps[name]:8.0f} req/s  p99 {p99[name]:7.2f} ms{added}")
    print(f"ratio sidecar/haproxy requests/s: {rps['sidecar'] / rps['haproxy']:.3f}")


if __name__ == "__main__":
    main()
