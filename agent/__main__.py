"""``python -m trimtab.agent instance|balance|loadgen``: the agent's processes."""

from __future__ import annotations

import argparse
import asyncio
import sys


def _instance(args: argparse.Namespace) -> None:
    import uvicorn

    from .demo_app import build_app

    app = build_app(args.name, slowness=args.slowness, product_ttl=args.product_ttl)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


def _balance(args: argparse.Namespace) -> None:
    import uvicorn

    from .balancer import Balancer, Server

    servers = []
    for spec in args.servers:
        name, sep, url = spec.partition("=")
        if not sep or not url.startswith("http"):
            sys.exit(f"trimtab agent balance: server must be NAME=URL, got {spec!r}")
        servers.append(Server(name, url.rstrip("/")))
    uvicorn.run(Balancer(servers), host=args.host, port=args.port, log_level="warning",
                access_log=False)


def _loadgen(args: argparse.Namespace) -> None:
    from .loadgen import TrafficGenerator

    asyncio.run(TrafficGenerator(args.url, rps=args.rps).run(args.duration))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trimtab-agent", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("instance", help="run a demo API instance with the middleware")
    inst.add_argument("--name", default="api")
    inst.add_argument("--host", default="127.0.0.1")
    inst.add_argument("--port", type=int, required=True)
    inst.add_argument("--slowness", type=float, default=1.0)
    inst.add_argument("--product-ttl", type=float, default=10.0)
    inst.set_defaults(func=_instance)
    bal = sub.add_parser("balance", help="run the built-in weighted balancer")
    bal.add_argument("--host", default="127.0.0.1")
    bal.add_argument("--port", type=int, required=True)
    bal.add_argument("servers", nargs="+", metavar="NAME=URL")
    bal.set_defaults(func=_balance)
    gen = sub.add_parser("loadgen", help="send demo traffic")
    gen.add_argument("--url", required=True)
    gen.add_argument("--rps", type=float, default=100.0)
    gen.add_argument("--duration", type=float, default=None)
    gen.set_defaults(func=_loadgen)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
