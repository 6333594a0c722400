"""Synthetic scrapes on a clock the test moves (task K: the before/after card).

One instance ``api-1`` serving ``/r`` (latency histogram, requests, 5xx, cache hits) and
one balancer ``lb`` with servers ``a`` and ``b``; the test sets the levels, then steps the
clock: every step is one scrape per target and one model tick, as the collector does.
"""

from __future__ import annotations

import numpy as np
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

ROUTE = "/r"
API = ScrapeTarget("api-1", "http://127.0.0.1:1/metrics")
LB = ScrapeTarget("lb", "http://127.0.0.1:2/metrics", kind="balancer")
LES = tuple(round(0.01 * i, 2) for i in range(1, 101)) + (float("inf"),)  # 10 ms buckets to 1 s


class SyntheticFleet:
    """Counters that grow by ``rps`` per second at the levels set on the attributes."""

    def __init__(self, model: FleetModel, start: float = 10_000.0, seed: int = 5) -> None:
        self.model = model
        self.now = start
        self.rng = np.random.default_rng(seed)
        self.rps = 100
        self.latency = 0.20  # seconds, every request of a step at about this
        self.noise = 0.01
        self.error_ratio = 0.01
        self.hit_ratio = 0.30
        self.weights = {"a": 1.0, "b": 1.0}
        self.share_a = 0.5  # observed share of server a
        self.buckets = dict.fromkeys(LES, 0.0)
        self.requests = self.errors = self.hits = self.misses = 0.0
        self.lb = {"a": 0.0, "b": 0.0}

    def clock(self) -> float:
        """The injectable clock (what ``time.time`` is to the live cockpit)."""
        return self.now

    def step(self, seconds: float = 1.0, count: int = 1) -> None:
        """``count`` scrape cycles ``seconds`` apart."""
        for _ in range(count):
            self.now += seconds
            n = self.rps * seconds
            at = max(0.001, self.latency + self.rng.normal(0, self.noise))
            for le in LES:
                if at <= le:
                    self.buckets[le] += n
            errs = round(n * max(0.0, self.error_ratio + self.rng.normal(0, 0.002)))
            self.requests += n - errs
            self.errors += errs
            hits = round(n * min(1.0, max(0.0, self.hit_ratio + self.rng.normal(0, 0.02))))
            self.hits += hits
            self.misses += n - hits
            share = min(1.0, max(0.0, self.share_a + self.rng.normal(0, 0.01)))
            self.lb["a"] += round(n * share)
            self.lb["b"] += n - round(n * share)
            self._ingest(API, self._instance_text())
            self._ingest(LB, self._balancer_text())
            self.model.tick(self.now)

    def _ingest(self, target: ScrapeTarget, text: str) -> None:
        self.model.ingest(ScrapeResult(target, self.now, True, 0.01, parse(text), ""))

    def _instance_text(self) -> str:
        lines = ["# TYPE trimtab_http_request_duration_seconds histogram"]
        for le, count in self.buckets.items():
            bound = "+Inf" if le == float("inf") else f"{le:g}"
            lines.append(f'trimtab_http_request_duration_seconds_bucket{{route="{ROUTE}",'
                         f'le="{bound}"}} {count}')
        lines += ["# TYPE trimtab_http_requests_total counter",
                  f'trimtab_http_requests_total{{route="{ROUTE}",status="200"}} {self.requests}',
                  f'trimtab_http_requests_total{{route="{ROUTE}",status="500"}} {self.errors}',
                  "# TYPE trimtab_cache_requests_total counter",
                  f'trimtab_cache_requests_total{{route="{ROUTE}",result="hit"}} {self.hits}',
                  f'trimtab_cache_requests_total{{route="{ROUTE}",result="miss"}} {self.misses}']
        return "\n".join(lines) + "\n"

    def _balancer_text(self) -> str:
        total = sum(self.weights.values())
        lines = ["# TYPE trimtab_balancer_requests_total counter"]
        lines += [f'trimtab_balancer_requests_total{{server="{s}"}} {n}'
                  for s, n in self.lb.items()]
        lines += [f'trimtab_balancer_server_weight{{server="{s}"}} {w}'
                  for s, w in self.weights.items()]
        lines += [f'trimtab_balancer_expected_share{{server="{s}"}} {w / total}'
                  for s, w in self.weights.items()]
        return "\n".join(lines) + "\n"
