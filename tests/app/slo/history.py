"""A history store written cycle by cycle for SLO tests: two instances at 10 req/s each on
/search; from ``slow_from`` minutes api-2 answers ``slow`` of its 10 req/s over 0.25 s
and 1 of them as a 502."""

from __future__ import annotations

from trimtab.app.slo.definition import SLO
from trimtab.app.store.store import Store
from trimtab.collectors.canonical import HIST_BUCKET, REQUESTS

T0 = 1_700_000_000.0
BOUNDS = ("0.1", "0.25", "+Inf")
LATENCY = SLO("search-fast", "/search", "latency", 0.99, threshold_s=0.25)
AVAIL = SLO("search-ok", "/search", "availability", 0.99)


def fill(store: Store, minutes: int = 20, slow_from: int = 10, slow: float = 2.0) -> None:
    totals: dict[tuple[str, str], float] = {}
    for second in range(minutes * 60 + 1):
        rows = []
        for inst in ("api-1", "api-2"):
            is_slow = inst == "api-2" and second > slow_from * 60
            over = slow if is_slow else 0.0
            per_bucket = {"0.1": 6.0, "0.25": 4.0 - over, "+Inf": over}
            running = 0.0
            for le in BOUNDS:
                key = (inst, le)
                running += per_bucket[le]
                totals[key] = totals.get(key, 0.0) + (running if second else 0.0)
                rows.append((inst, HIST_BUCKET,
                             (("le", le), ("method", "GET"), ("route", "/search")), totals[key]))
            for status, n in (("200", 9.0 if is_slow else 10.0), ("502", 1.0 if is_slow else 0.0)):
                key = (inst, status)
                totals[key] = totals.get(key, 0.0) + (n if second else 0.0)
                rows.append((inst, REQUESTS, (("method", "GET"), ("route", "/search"),
                                              ("status", status)), totals[key]))
        store.write_cycle(T0 + second, rows)
