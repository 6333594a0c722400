"""The one way the agent serves HTTP: bind guard, request read timeouts, a connection cap.

Every server the agent starts (``python -m trimtab.agent balance|haproxy``, ``python -m trimtab.demo instance``,
and the ``main`` of :mod:`.balancer` / :mod:`.haproxy`, which delegate to it) goes
through :func:`serve`:

- loopback by default; any other bind needs TLS (or ``--insecure-bind``);
- ``--header-timeout`` (default 10 s): from the connection opening (or the end of
  the previous response) until the request's headers are complete;
- ``--body-timeout`` (default 30 s): from the end of the headers until the whole
  request body has arrived (a total, not per chunk: a client trickling one byte
  a second would otherwise hold the connection forever);
- ``--max-connections`` (default 256): connections beyond it get a 503 and are closed
  at once, so slow clients cannot exhaust file descriptors.

Why a protocol subclass: uvicorn bounds idle keep-alive connections
(``timeout_keep_alive``) but not a request that is being received slowly — any byte
cancels that timer — and ``limit_concurrency`` only answers 503 once a *complete*
request arrives, so connections that never finish their headers are not limited at
all. The guard is a small subclass of uvicorn's h11 protocol that reads h11's state
after every event (waiting for headers / receiving the body / neither) and keeps
one timer per phase. When a timer fires the connection gets a 408 if a request was
under way (an idle keep-alive connection is just closed, as uvicorn does) and is
closed; an application still waiting for that body sees ``http.disconnect``.
A TLS handshake is bounded by asyncio's own ``ssl_handshake_timeout`` (60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Limits:
    """Bounds on how slowly a client may send and how many may be connected."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header/body read deadlines and a connection cap."""

    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None  # "headers", "body" or None (nothing to wait for)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._answer_and_close(503, "too_many_connections",
                                   "the agent has too many open connections; retry later")
            return
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """Arm the deadline of the phase h11 is in; a phase keeps its first deadline."""
        if self.transport is None or self.transport.is_closing():
            self._cancel()
            return
        state = self.conn.their_state
        phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if phase == self._phase:
            return  # more bytes of the same phase do not extend its deadline
        self._cancel()
        self._phase = phase
        if phase is not None:
            timeout = self.limits.header_timeout if phase == "headers" \
                else self.limits.body_timeout
            self._deadline = self.loop.call_later(timeout, self._expire)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase == "headers":
            if self.conn.trailing_data[0]:  # part of a request arrived: say why we hang up
                self._answer_and_close(408, "request_timeout",
                                       "request headers not received in time")
                return
        elif self.cycle is not None and not self.cycle.response_started:
            self.cycle.disconnected = True  # the app's own answer, if any, is dropped
            self._answer_and_close(408, "request_timeout", "request body not received in time")
            return
        self.transport.close()

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": code, "message": message, "status": status}).encode()
        reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
        head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
        self.transport.write(head + body)
        self.transport.close()


def protocol_for(limits: Limits) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class bound to ``limits`` (uvicorn instantiates it)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(raw: str) -> float | int:
        value = kind(raw)
        if not 0 < value < 1e6:
            raise argparse.ArgumentTypeError(f"must be > 0, got {raw}")
        return value

    return parse


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Bind, TLS and limit options shared by every agent server."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ssl-certfile", help="TLS certificate (PEM), required off loopback")
    parser.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    parser.add_argument("--insecure-bind", action="store_true",
                        help="allow a non-loopback bind without TLS")
    defaults = Limits()
    parser.add_argument("--header-timeout", type=_positive(float),
                        default=defaults.header_timeout,
                        help="seconds a client has to send a request's headers")
    parser.add_argument("--body-timeout", type=_positive(float), default=defaults.body_timeout,
                        help="seconds a client has to send a request's body")
    parser.add_argument("--max-connections", type=_positive(int),
                        default=defaults.max_connections,
                        help="open connections beyond this get 503 and are closed")


def check_bind(args: argparse.Namespace, prog: str = "trimtab agent") -> None:
    """Exit unless the bind is loopback, has TLS, or the operator opted out explicitly."""
    tls = bool(args.ssl_certfile and args.ssl_keyfile)
    if args.host not in LOOPBACK and not tls and not args.insecure_bind:
        sys.exit(f"{prog}: refusing to serve the control API on {args.host} without TLS; "
                 "give --ssl-certfile and --ssl-keyfile (or --insecure-bind on a trusted network)")


def serve(app: Any, args: argparse.Namespace, prog: str = "trimtab agent") -> None:
    """Run ``app`` under uvicorn with the bind guard, the read timeouts and the cap."""
    check_bind(args, prog)
    import uvicorn

    limits = Limits(args.header_timeout, args.body_timeout, args.max_connections)
    # ws="none": an Upgrade request would hand the socket to a protocol without the guard,
    # and no agent endpoint speaks WebSocket.
    # proxy_headers=False: uvicorn would otherwise take the client address from
    # X-Forwarded-For whenever the peer is loopback, so anyone on the host could pick the
    # address rate limits key on and the sidecar forwards. The peer is the client.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                http=protocol_for(limits), ws="none", proxy_headers=False)
