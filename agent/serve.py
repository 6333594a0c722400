"""Serving an agent ASGI app with uvicorn: loopback by default, TLS for any other bind."""

from __future__ import annotations

import argparse
import sys

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def serve(app: object, args: argparse.Namespace, prog: str = "trimtab agent") -> None:
    """uvicorn on loopback by default; any other bind needs TLS (or an explicit opt-out)."""
    import uvicorn

    tls = bool(args.ssl_certfile and args.ssl_keyfile)
    if args.host not in LOOPBACK and not tls and not args.insecure_bind:
        sys.exit(f"{prog}: refusing to serve the control API on {args.host} without TLS; "
                 "give --ssl-certfile and --ssl-keyfile (or --insecure-bind on a trusted network)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)


def add_bind_options(parser: argparse.ArgumentParser) -> None:
    """``--host``, ``--port`` and the TLS options :func:`serve` reads."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ssl-certfile", help="TLS certificate (PEM), required off loopback")
    parser.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    parser.add_argument("--insecure-bind", action="store_true",
                        help="allow a non-loopback bind without TLS")
