"""``python -m trimtab.demo instance|loadgen``: the demo fleet's API instances and traffic."""

from __future__ import annotations

import argparse
import asyncio

from trimtab.agent.serve import add_server_options, serve


def _instance(args: argparse.Namespace) -> None:
    from .app import build_app

    app = build_app(args.name, slowness=args.slowness, product_ttl=args.product_ttl,
                    state_dir=args.state_dir, redis_url=args.redis_url)
    serve(app, args, prog="trimtab demo instance")


def _loadgen(args: argparse.Namespace) -> None:
    from .loadgen import TrafficGenerator

    asyncio.run(TrafficGenerator(args.url, rps=args.rps).run(args.duration))


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line) and run the chosen process."""
    parser = argparse.ArgumentParser(prog="trimtab-demo", description=__doc__)
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
    gen = sub.add_parser("loadgen", help="send demo traffic")
    gen.add_argument("--url", required=True)
    gen.add_argument("--rps", type=float, default=100.0)
    gen.add_argument("--duration", type=float, default=None)
    gen.set_defaults(func=_loadgen)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
