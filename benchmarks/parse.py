"""Exposition parsing: trimtab's parser vs prometheus_client's, cold and steady state.

The payload is histogram-heavy, as an API fleet's /metrics is: 100 routes x 2
methods x 2 statuses of a default-bucket Histogram plus a Counter, rendered by
prometheus_client's own ``generate_latest`` from a fresh CollectorRegistry.

- cold: a fresh :class:`TargetParser` per parse (a target's first scrape);
- steady: one parser fed successive scrapes of the same target whose values
  changed in between (new observations before every render), never the same
  body twice in a row, so a cache of whole bodies would gain nothing.

trimtab's parse returns the samples as columns (``Exposition.columns()``) and
builds the ``Sample`` tuples on the first read of ``.samples``; both are timed:
"columns" is the parse alone, "+ .samples" also reads ``.samples`` (what a
consumer iterating ``.samples`` pays). prometheus_client always builds its
``Metric``/``Sample`` objects.

Timings interleave the parsers and report medians of CPU time per parse,
because this machine is shared and noisy. The last line is the figure.

Run: ``.venv/bin/python benchmarks/parse.py``
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from statistics import median

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from trimtab.collectors.exposition import TargetParser

ROUTES, METHODS, STATUSES = 100, ("GET", "POST"), ("200", "500")
SCRAPES = 6  # distinct bodies, cycled; consecutive ones always differ
ROUNDS = 9


def build_bodies(seed: int = 7) -> list[str]:
    """Successive scrapes of one target: the same series, values changed by new observations."""
    rng = random.Random(seed)
    registry = CollectorRegistry()
    labels = ["route", "method", "status"]
    latency = Histogram("http_request_duration_seconds", "Request latency", labels, registry=registry)
    requests = Counter("http_requests", "Requests served", labels, registry=registry)
    combos = [(f"/api/v1/resource_{i}/{{id}}", m, s) for i in range(ROUTES) for m in METHODS for s in STATUSES]
    bodies = []
    for _ in range(SCRAPES):
        for _ in range(4000):
            combo = rng.choice(combos)
            latency.labels(*combo).observe(rng.lognormvariate(-3.0, 1.2))
            requests.labels(*combo).inc()
        bodies.append(generate_latest(registry).decode())
    return bodies


def timed_ms(run: Callable[[], object], calls: int) -> list[float]:
    """CPU time of each of ``calls`` calls, in milliseconds.

    process_time, not wall time: on a busy shared machine wall time counts
    other processes' turns; CPU time counts this parse's work.
    """
    out, kept = [], None
    for _ in range(calls):
        t0 = time.process_time()
        result = run()
        out.append((time.process_time() - t0) * 1e3)
        # A consumer holds a scrape until the next one arrives: keep the previous result
        # alive during the next parse, so the garbage collector sees what it would in use.
        kept = result
    del kept
    return out


def main() -> None:
    bodies = build_bodies()
    n_samples = sum(1 for line in bodies[0].splitlines() if line and not line.startswith("#"))
    print(f"payload: {n_samples} samples, {len(bodies[0]) / 1024:.0f} KiB per scrape, {SCRAPES} distinct scrapes")

    steady_parser = TargetParser()
    steady_parser.parse(bodies[-1])  # the target's first scrape happened before the measurement
    turn = iter(range(10**9))

    def steady() -> object:
        return steady_parser.parse(bodies[next(turn) % SCRAPES])

    def steady_samples() -> object:
        return steady_parser.parse(bodies[next(turn) % SCRAPES]).samples

    def cold() -> object:
        return TargetParser().parse(bodies[0])

    def cold_samples() -> object:
        return TargetParser().parse(bodies[0]).samples

    def reference() -> object:
        return list(text_string_to_metric_families(bodies[0]))

    runs: dict[str, tuple[Callable[[], object], int]] = {
        "prometheus_client": (reference, 1), "trimtab cold": (cold, 3), "trimtab cold + .samples": (cold_samples, 3),
        "trimtab steady": (steady, 30), "trimtab steady + .samples": (steady_samples, 30)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):  # interleaved, so load on the machine hits all of them alike
        for name, (run, calls) in runs.items():
            times[name] += timed_ms(run, calls)
    ms = {name: median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name + ':':27s} {ms[name]:8.2f} ms per parse ({n_samples / ms[name] * 1e3:>10,.0f} samples/s;"
              f" best {min(t):.2f} ms of {len(t)})")
    ref_ms = ms["prometheus_client"]
    print(f"steady ratio: {ref_ms / ms['trimtab steady']:.1f}x (cold {ref_ms / ms['trimtab cold']:.1f}x); "
          f"with .samples read: steady {ref_ms / ms['trimtab steady + .samples']:.1f}x, "
          f"cold {ref_ms / ms['trimtab cold + .samples']:.1f}x")


if __name__ == "__main__":
    main()
