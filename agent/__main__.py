"""``python -m trimtab.agent instance|balance|haproxy|loadgen``: the agent's processes.

Every server goes through :func:`.serve.serve` (bind guard, read timeouts, connection cap);
``trimtab.agent.balancer`` and ``trimtab.agent.haproxy`` run as modules delegate here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .serve import add_server_options, serve



def _instance(args: argparse.Namespace) -> None:
    from .demo_app import build_app

    app = build_app(args.name, slowness=args.slowness, product_ttl=args.product_ttl,
                    state_dir=args.state_dir, redis_url=args.redis_url)
    serve(app, args)


def _balance(args: argparse.Namespace) -> None:
    from .balancer import Balancer, parse_servers
    from .journal import Journal

    try:
        app = Balancer(parse_servers(args.servers, args.weight), policy=args.policy,
                       health_path=args.health_path, health_interval=args.health_interval,
                       journal=Journal(args.journal))
    except ValueError as err:
        sys.exit(f"trimtab agent balance: {err}")
    serve(app, args)


def _haproxy(args: argparse.Namespace) -> None:
    from .haproxy import build_app

    serve(build_app(args.socket, args.backend, args.journal, not args.no_reapply, args.timeout,
                     args.interval), args)


def _loadgen(args: argparse.Namespace) -> None:
    from .loadgen import TrafficGenerator

    asyncio.run(TrafficGenerator(args.url, rps=args.rps).run(args.duration))


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line) and run that agent process."""
    parser = argparse.ArgumentParser(prog="trimtab-agent", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("instance", help="run a demo API instance with the middleware")
    inst.add_argument("--name", default="api")
    add_server_options(inst)
    inst.add_argument("--state-dir", default=None,
                      help="config + journal directory (default: $TRIMTAB_STATE_DIR, else memory)")
    inst.add_argument("--redis-url", default=None,
                      help="shared Redis response cache (default: $TRIMTAB_REDIS_URL, else memory)")
    inst.add_argument("--slowness", type=float, default=1.0)
    inst.add_argument("--product-ttl", type=float, default=10.0)
    inst.set_defaults(func=_instance)
    bal = sub.add_parser("balance", help="run the built-in weighted balancer")
    add_server_options(bal)
    bal.add_argument("--policy", default="swrr", choices=("swrr", "leastconn", "iphash"))
    bal.add_argument("--weight", action="append", default=[], metavar="NAME=W")
    bal.add_argument("--health-path", default=None, help="e.g. /healthz; no checks if unset")
    bal.add_argument("--health-interval", type=float, default=1.0)
    bal.add_argument("--journal", default=None, help="JSONL journal file (memory if unset)")
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
    hap.set_defaults(func=_haproxy)
    gen = sub.add_parser("loadgen", help="send demo traffic")
    gen.add_argument("--url", required=True)
    gen.add_argument("--rps", type=float, default=100.0)
    gen.add_argument("--duration", type=float, default=None)
    gen.set_defaults(func=_loadgen)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
