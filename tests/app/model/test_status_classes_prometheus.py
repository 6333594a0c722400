"""Status class rates and mean response size equal a real Prometheus on the same samples.

As tests/app/model/test_prometheus_equality.py (whose helpers this reuses): a real
``prometheus`` scrapes the real demo fleet; the samples it stored are read back raw and
fed to a FleetModel; at a dozen instants Prometheus evaluates the expression
``FleetModel.promql`` names for ``rate_2xx``, ``rate_5xx`` (the demo answers 200/201 and
502) and ``size_mean``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.canonical import HIST_BUCKET, PROCESS_START, REQUESTS, SIZE_COUNT, SIZE_SUM
from trimtab.collectors.exposition import Exposition, Sample
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget
from trimtab.demo.fleet import DemoFleet

from tests.app.model.test_prometheus_equality import (
    _instants,
    _prom_values,
    _query,
    _wait_for_history,
)
from tests.collectors.prometheus.prom_server import running_prometheus

NAMES = (HIST_BUCKET, REQUESTS, SIZE_SUM, SIZE_COUNT, PROCESS_START)
METRICS = ("rate_2xx", "rate_5xx", "size_mean")
TOLERANCE = 1e-9


def _stored_scrapes(client: httpx.Client, end_ms: int) -> list[ScrapeResult]:
    """Every sample of NAMES Prometheus holds of the last 90 s, one scrape per target and time."""
    data = _query(client, "{__name__=~\"" + "|".join(NAMES) + "\"}[90s]", end_ms)
    scrapes: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for series in data["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        target = labels["instance"]
        key = tuple(sorted(labels.items()))
        for ts, value in series["values"]:
            scrapes[(target, round(float(ts) * 1000))].append(Sample(name, key, float(value)))
    return [ScrapeResult(ScrapeTarget(target, f"prometheus:{target}"), t_ms / 1000, True, 0.0,
                         Exposition(samples=samples))
            for (target, t_ms), samples in sorted(scrapes.items(), key=lambda kv: kv[0][1])]


def _compare(client: httpx.Client, scrapes: list[ScrapeResult], end_ms: int
             ) -> tuple[tuple[float, str], dict[str, int]]:
    model = FleetModel(rate_window=10.0)
    fed, worst = 0, (0.0, "")
    compared: dict[str, int] = dict.fromkeys(METRICS, 0)
    for t_ms in _instants(scrapes, end_ms):
        while fed < len(scrapes) and round(scrapes[fed].timestamp * 1000) <= t_ms:
            model.ingest(scrapes[fed])
            fed += 1
        model.tick(t_ms / 1000)
        for metric in METRICS:
            expr = model.promql(metric)
            prom = _prom_values(client, expr, t_ms, "route")
            mine = {key: float(v[-1]) for key, (t, v) in model.snapshot(metric).items()
                    if len(t) and t[-1] == t_ms / 1000}
            for key in set(prom) | set(mine):
                p, m = prom.get(key, math.nan), mine.get(key, math.nan)
                if key not in mine and p == 0.0:
                    continue  # a class the route never answered with: no series kept, on purpose
                where = f"{metric} {key} at {t_ms}: trimtab {m!r} Prometheus {p!r} ({expr})"
                if math.isnan(p) and math.isnan(m):
                    continue
                assert not (math.isnan(p) or math.isnan(m)), where
                diff = abs(m - p) / abs(p) if p else abs(m)
                compared[metric] += 1
                if diff > worst[0]:
                    worst = (diff, where)
    return worst, compared


@pytest.mark.slow
def test_status_classes_and_size_equal_prometheus(tmp_path: Path) -> None:
    fleet = DemoFleet(rps=100.0, log_dir=str(tmp_path))
    try:
        fleet.start()
        with running_prometheus(tmp_path, {"demo": [t.url for t in fleet.targets]}) as prom, \
                httpx.Client(base_url=prom, timeout=30.0) as client:
            _wait_for_history(client, 45.0)
            end_ms = round(time.time() * 1000) - 2000  # every scrape up to here is stored
            worst, compared = _compare(client, _stored_scrapes(client, end_ms), end_ms)
    finally:
        fleet.stop()
    print(f"largest relative difference trimtab vs Prometheus: {worst[0]:.3e} ({worst[1]}), "
          f"values compared: {compared}")
    assert all(n >= 12 for n in compared.values()), compared
    assert worst[0] <= TOLERANCE, worst
