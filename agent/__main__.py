"""``python -m trimtab.agent balance|haproxy|sidecar``: the agent's processes beside a fleet.

Every server goes through :func:`.serve.serve` (bind guard, read timeouts, connection cap);
``trimtab.agent.balance.proxy`` and ``trimtab.agent.balance.haproxy`` run as modules delegate here.
(The demo fleet's API instances and traffic generator are ``python -m trimtab.demo``.)
"""

from __future__ import annotations

import argparse
import math
import sys

from .serve import add_server_options, serve


def _balance(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .balance.limits_builtin import limits_from_cli
    from .balance.proxy import Balancer, parse_servers
    from .journal import Journal
    from .sidecar import routes_from_file

    try:
        routes = routes_from_file(Path(args.routes)) if args.routes else []
        app = Balancer(parse_servers(args.servers, args.weight), policy=args.policy,
                       health_path=args.health_path, health_interval=args.health_interval,
                       journal=Journal(args.journal),
                       limits=limits_from_cli(args.limit, args.limits), routes=routes,
                       ratelimit_store=args.ratelimit_store, state_dir=args.state_dir)
    except ValueError as err:  # RoutesError is one
        sys.exit(f"trimtab agent balance: {err}")
    serve(app, args)


def _haproxy(args: argparse.Namespace) -> None:
    from .balance.haproxy import build_app

    try:
        app = build_app(args.socket, args.backend, args.journal, not args.no_reapply,
                        args.timeout, args.interval, args.limits_map, args.limits_counts)
    except ValueError as err:
        sys.exit(f"trimtab agent haproxy: {err}")
    serve(app, args)


def _sidecar(args: argparse.Namespace) -> None:
    from .config import MAX_TTL
    from .middleware import TrimtabMiddleware
    from .sidecar import RoutesError, UpstreamProxy, load_openapi, routes_from_file

    prog = "trimtab agent sidecar"
    try:
        templates: list[str] = []
        if args.openapi:
            templates += load_openapi(args.openapi)
        if args.routes:
            from pathlib import Path

            templates += routes_from_file(Path(args.routes))
        ttls = {}
        for spec in args.ttl:
            route, sep, value = spec.rpartition("=")
            if not sep or not route.startswith("/"):
                raise ValueError(f"--ttl {spec!r}: write ROUTE=SECONDS, e.g. /items/{{id}}=30")
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not 0 <= seconds <= MAX_TTL:  # NaN fails too
                raise ValueError(f"--ttl {spec!r}: the ttl must be 0 to {MAX_TTL:g} seconds")
            ttls[route] = seconds
        proxy = UpstreamProxy(args.upstream, timeout=args.upstream_timeout)
        app = TrimtabMiddleware(proxy, instance=args.instance, ttls=ttls,
                                patterns=tuple(dict.fromkeys(templates)),
                                state_dir=args.state_dir)
    except (RoutesError, ValueError) as err:
        sys.exit(f"{prog}: {err}")
    serve(app, args, prog)


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line) and run the chosen process."""
    parser = argparse.ArgumentParser(prog="trimtab-agent", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    bal = sub.add_parser("balance", help="run the built-in weighted balancer")
    add_server_options(bal)
    bal.add_argument("--policy", default="swrr", choices=("swrr", "leastconn", "iphash"))
    bal.add_argument("--weight", action="append", default=[], metavar="NAME=W")
    bal.add_argument("--health-path", default=None, help="e.g. /healthz; no checks if unset")
    bal.add_argument("--health-interval", type=float, default=1.0)
    bal.add_argument("--journal", default=None, help="JSONL journal file (memory if unset)")
    bal.add_argument("--routes", help="routes file: one template per line, e.g. /items/{id}; "
                     "without it every request's route is '*' for rate limits")
    bal.add_argument("--limits", metavar="FILE",
                     help="start-up rate limits: JSON object name -> {route, key, rate, burst, "
                     "mode}; changed live under /_trimtab/balancer/limits")
    bal.add_argument("--limit", action="append", default=[],
                     metavar="NAME:route=R,key=K,rate=N,burst=N,mode=M",
                     help="one start-up rate limit (repeatable; mode defaults to shadow)")
    bal.add_argument("--ratelimit-store", default=None,
                     help="memory, file (needs --state-dir) or a redis:// URL "
                     "(default: $TRIMTAB_RATELIMIT_STORE, else file with --state-dir, else memory)")
    bal.add_argument("--state-dir", default=None,
                     help="where the 'file' rate limit store keeps its table")
    bal.add_argument("servers", nargs="+", metavar="NAME=URL")
    bal.set_defaults(func=_balance)
    hap = sub.add_parser("haproxy", help="control a real HAProxy through its runtime API")
    add_server_options(hap)
    hap.add_argument("--socket", required=True, help="stats socket path or ipv4@host:port")
    hap.add_argument("--backend", required=True, help="HAProxy backend to control")
    hap.add_argument("--journal", default=None, help="JSONL journal file (desired state)")
    hap.add_argument("--no-reapply", action="store_true",
                     help="after an HAProxy reload, report drift instead of re-applying")
    hap.add_argument("--timeout", type=float, default=2.0, help="runtime API timeout, s")
    hap.add_argument("--interval", type=float, default=1.0, help="reload check period, s")
    hap.add_argument("--limits-map", default=None, metavar="PATH",
                     help="the HAProxy map holding rate limits, as named in its config "
                     "(see trimtab.agent.balance.limits_haproxy); enables /_trimtab/balancer/limits")
    hap.add_argument("--limits-counts", default=None, metavar="TABLE",
                     help="stick-table whose gpc values count allowed/limited/shadow_limited")
    hap.set_defaults(func=_haproxy)
    side = sub.add_parser("sidecar", help="the agent as a reverse proxy in front of any service")
    add_server_options(side)
    side.add_argument("--upstream", required=True, help="the service, e.g. http://127.0.0.1:8080")
    side.add_argument("--instance", default="api", help="instance name in metrics and traces")
    side.add_argument("--openapi", help="OpenAPI document (path or URL) naming the routes")
    side.add_argument("--routes", help="routes file: one template per line, e.g. /items/{id}")
    side.add_argument("--ttl", action="append", default=[], metavar="ROUTE=SECONDS",
                      help="initial cache TTL of a route (changed live through the control API)")
    side.add_argument("--state-dir", default=None,
                      help="where config, journal and worker counters persist")
    side.add_argument("--upstream-timeout", type=float, default=30.0,
                      help="seconds to wait for the upstream's answer to start (504 after)")
    side.set_defaults(func=_sidecar)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
