"""Request traces: one span per request, child spans, W3C traceparent, a bounded ring buffer.

API::

    tracer = Tracer("api-1", capacity=2048)
    with span("db.query", table="users"):      # in user code, inside a request (module function)
        ...
    current_traceparent()   # "00-<trace>-<span>-01" for outgoing calls, or None
    tracer.query(since=cursor, min_ms=50, route="/search", limit=100)
        # -> {"traces": [...], "next": cursor, "dropped": n}

A trace record (JSON-ready)::

    {"cursor": 17, "trace_id": "4bf9...", "span_id": "00f0...", "parent_id": "..."|None,
     "name": "GET /products/{id}", "route": ..., "method": ..., "status": 200,
     "instance": "api-1", "cache": "hit"|"miss"|"bypass"|"off", "start": unix_s,
     "duration_ms": 12.3, "children": [{"span_id", "name", "start", "duration_ms", "tags"}]}

An incoming ``traceparent`` (version 00, non-zero ids) is honoured: the request
span joins that trace as a child of the caller's span. A malformed one is
ignored and a new trace starts, as the W3C spec requires. Children per request
are capped (``MAX_CHILDREN``) so a loop of spans cannot grow memory.
"""

from __future__ import annotations

import contextvars
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MAX_CHILDREN = 64
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
# Ids need uniqueness, not secrecy: a seeded Mersenne Twister is ~10x cheaper than urandom.
# Reseed in forked workers, or two workers would mint the same ids.
_rand = random.Random()
os.register_at_fork(after_in_child=_rand.seed)


class RequestSpan:
    """The span of one request while it runs; children are appended by :func:`span`."""

    __slots__ = ("children", "parent_id", "span_id", "start", "trace_id")

    def __init__(self, trace_id: str, span_id: str, parent_id: str | None, start: float) -> None:
        self.trace_id, self.span_id, self.parent_id = trace_id, span_id, parent_id
        self.start = start
        self.children: list[tuple[Any, ...]] = []

    @property
    def traceparent(self) -> str:
        """W3C header value naming this span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-01"

    def child(self, name: str, start: float, seconds: float, **tags: Any) -> None:
        """Record a finished child span (dropped beyond ``MAX_CHILDREN``)."""
        if len(self.children) < MAX_CHILDREN:
            # Tuples of atomics only: the GC stops tracking them, so a full ring
            # buffer does not make every collection slower.
            self.children.append((f"{_rand.getrandbits(64):016x}", name, start,
                                  seconds * 1000.0, tuple((k, str(v)) for k, v in tags.items())))


_current: contextvars.ContextVar[RequestSpan | None] = contextvars.ContextVar(
    "trimtab_span", default=None)


def current_span() -> RequestSpan | None:
    """The request span of the running request, if any."""
    return _current.get()


def current_traceparent() -> str | None:
    """The ``traceparent`` value to put on outgoing calls from the current request."""
    span = _current.get()
    return span.traceparent if span is not None else None


def parse_traceparent(value: bytes | str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) from a valid W3C header, else None."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    match = _TRACEPARENT.match(text.strip().lower())
    if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
        return None
    return match[1], match[2]


@contextmanager
def span(name: str, **tags: Any) -> Iterator[None]:
    """Time a block of user code as a child of the current request span (no-op outside one)."""
    parent = _current.get()
    start, t0 = time.time(), time.perf_counter()
    try:
        yield
    finally:
        if parent is not None:
            parent.child(name, start, time.perf_counter() - t0, **tags)


class Tracer:
    """Creates request spans and keeps the last ``capacity`` finished ones."""

    def __init__(self, instance: str, capacity: int = 2048) -> None:
        self.instance = instance
        self._ring: deque[tuple[Any, ...]] = deque(maxlen=capacity)
        self._cursor = 0
        self._lock = threading.Lock()

    def begin(self, traceparent: bytes | None) -> tuple[RequestSpan, contextvars.Token[Any]]:
        """Start a request span (joining the caller's trace when valid) and make it current."""
        parent = parse_traceparent(traceparent)
        trace_id = parent[0] if parent else f"{_rand.getrandbits(128):032x}"
        span = RequestSpan(trace_id, f"{_rand.getrandbits(64):016x}",
                           parent[1] if parent else None, time.time())
        return span, _current.set(span)

    def end(self, span: RequestSpan, token: contextvars.Token[Any], *, route: str, method: str,
            status: int, cache: str, seconds: float) -> None:
        """Finish the request span and store it in the ring buffer."""
        _current.reset(token)
        with self._lock:
            self._cursor += 1
            self._ring.append((self._cursor, span.trace_id, span.span_id, span.parent_id, route,
                               method, status, cache, span.start, seconds * 1000.0,
                               tuple(span.children)))

    def ingest(self, records: list[tuple[Any, ...]]) -> None:
        """Store spans received from elsewhere (OTLP, Zipkin), all under one lock.

        Each record is laid out as :meth:`end` stores it, without the cursor, plus
        ``(instance, name, source)``: such spans name their own service and span.
        """
        with self._lock:
            for record in records:
                self._cursor += 1
                self._ring.append((self._cursor, *record))

    def span(self, name: str, **tags: Any) -> Any:
        """Same as the module-level :func:`span`."""
        return span(name, **tags)

    def query(self, since: int = 0, min_ms: float = 0.0, route: str | None = None,
              limit: int = 100) -> dict[str, Any]:
        """Finished traces after cursor ``since`` matching the filters, oldest first.

        ``next`` is the cursor to pass next time (it moves past filtered-out
        records too); ``dropped`` counts records after ``since`` that the ring
        buffer already overwrote.
        """
        with self._lock:
            records = list(self._ring)
            newest = self._cursor
        oldest = records[0][0] if records else newest + 1
        dropped = max(0, oldest - since - 1)
        out: list[dict[str, Any]] = []
        nxt = max(since, newest)
        for record in records:
            if record[0] <= since or record[9] < min_ms or (route is not None
                                                            and record[4] != route):
                continue
            out.append(self._as_dict(record))
            if len(out) >= limit:
                nxt = record[0]
                break
        return {"traces": out, "next": nxt, "dropped": dropped}

    def _as_dict(self, r: tuple[Any, ...]) -> dict[str, Any]:
        own = len(r) <= 11  # ingested records carry (instance, name, source)
        return {"cursor": r[0], "trace_id": r[1], "span_id": r[2], "parent_id": r[3],
                "name": f"{r[5]} {r[4]}" if own else r[12], "route": r[4], "method": r[5],
                "status": r[6], "instance": self.instance if own else r[11], "cache": r[7],
                "start": r[8], "duration_ms": r[9], "source": "agent" if own else r[13],
                "children": [{"span_id": c[0], "name": c[1], "start": c[2], "duration_ms": c[3],
                              "tags": dict(c[4])} for c in r[10]]}
