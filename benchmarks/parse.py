"""Exposition parsing: trimtab's parser vs prometheus_client's, cold and steady state.

The payload is histogram-heavy, as an API fleet's /metrics is: 100 routes x 2
methods x 2 statuses of a default-bucket Histogram plus a Counter, rendered by
prometheus_client's own ``generate_latest`` from a fresh CollectorRegistry.

- cold: a fresh :class:`TargetParser` per parse (a target's first scrape);
- steady: one parser fed successive scrapes of the same target whose values
  changed in between (new observations before every render), never the same
  body twice in a row, so a cache of whole bodies would gain nothing.

Timings interleave both parsers and keep each one's best of several rounds,
because this machine is shared and noisy. The last line is the figure.

Run: ``.venv/bin/python benchmarks/parse.py``
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trimtab.collectors.exposition import TargetParser

ROUTES, METHODS, STATUSES = 100, ("GET", "POST"), ("200", "500")
SCRAPES = 6  # distinct bodies, cycled; consecutive ones always differ


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


def best_ms(run: Callable[[], object], rounds: int) -> float:
    """Best CPU time (process_time: a busy shared machine inflates wall time unevenly) of ``rounds`` calls, in milliseconds."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best * 1e3


def main() -> None:
    bodies = build_bodies()
    n_samples = sum(1 for line in bodies[0].splitlines() if line and not line.startswith("#"))
    print(f"payload: {n_samples} samples, {len(bodies[0]) / 1024:.0f} KiB per scrape, {SCRAPES} distinct scrapes")

    steady_parser = TargetParser()
    steady_parser.parse(bodies[-1])  # the target's first scrape happened before the measurement
    turn = iter(range(10**9))

    def steady() -> object:
        return steady_parser.parse(bodies[next(turn) % SCRAPES])

    def cold() -> object:
        return TargetParser().parse(bodies[0])

    def reference() -> object:
        return list(text_string_to_metric_families(bodies[0]))

    ref_ms = ours_cold = ours_steady = float("inf")
    for _ in range(5):  # interleaved rounds: load on the machine hits both parsers alike
        ref_ms = min(ref_ms, best_ms(reference, 1))
        ours_cold = min(ours_cold, best_ms(cold, 3))
        ours_steady = min(ours_steady, best_ms(steady, 20))
    print(f"prometheus_client: {ref_ms:8.2f} ms per parse ({n_samples / ref_ms * 1e3:,.0f} samples/s)")
    print(f"trimtab cold:      {ours_cold:8.2f} ms per parse ({n_samples / ours_cold * 1e3:,.0f} samples/s)")
    print(f"trimtab steady:    {ours_steady:8.2f} ms per parse ({n_samples / ours_steady * 1e3:,.0f} samples/s)")
    print(f"steady ratio: {ref_ms / ours_steady:.1f}x (cold {ref_ms / ours_cold:.1f}x)")


if __name__ == "__main__":
    main()
