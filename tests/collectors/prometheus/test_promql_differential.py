"""histogram_quantile bit for bit against the real ``prometheus`` binary (issue 16, item 2).

Several hundred crafted classic histograms (seeded random ones plus the known edge cases:
NaN and infinite counts, dips, tiny relative steps, duplicate bounds, no ``+Inf`` bucket,
one bucket, no observations, bounds at or below zero) are served in one static exposition,
one label set each. A real Prometheus scrapes it; one instant query per quantile answers for
every histogram at once. trimtab parses the same exposition with its own parser and computes
``histogram_quantile`` on the same counts. Every answer must be the same float64, bit for
bit (NaN equal to NaN; trimtab's ``None`` is Prometheus' NaN).
"""

from __future__ import annotations

import math
import random
import re
import struct
import subprocess
from pathlib import Path

import httpx
from trimtab.collectors.exposition import parse
from trimtab.collectors.promql import (
    BucketFix,
    bucket_fix_for_version,
    histogram_quantile,
    le_value,
)

from tests.collectors.prometheus.prom_server import running_prometheus
from tests.collectors.prometheus.static_exposition import serving_exposition
from tests.conftest import require_binary
from tests.support import poll

METRIC = "tt_hq"
SEED = 20240616
RANDOM_HISTOGRAMS = 320
QUANTILES = (-0.5, -0.1, 0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0, 1.01,
             1.5)
# Prometheus' JSON API writes sample values with Go's strconv.FormatFloat(v, 'f', -1, 64):
# the shortest decimal that reads back as the same float64, never an exponent; and
# "NaN", "+Inf", "-Inf". Anything else means the parse below could not be trusted.
GO_FLOAT = re.compile(r"NaN|[+-]Inf|-?[0-9]+(\.[0-9]+)?")
INF, NAN = math.inf, math.nan

Histogram = list[tuple[str, float]]  # (le label exactly as exposed, count)


def _spell(value: float) -> str:
    """A count or bound as the text format spells it; repr round-trips exactly in Go too."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _h(*pairs: tuple[float, float]) -> Histogram:
    return [(_spell(le), count) for le, count in pairs]


EDGE_CASES: dict[str, Histogram] = {
    "no_observations": _h((0.1, 0.0), (INF, 0.0)),
    "only_inf": _h((INF, 10.0)),
    "no_inf": _h((0.1, 1.0), (0.2, 2.0)),
    "one_bucket": _h((0.1, 5.0)),
    "nan_total": _h((0.1, 5.0), (0.2, 10.0), (INF, NAN)),
    "nan_middle": _h((0.1, 5.0), (0.2, NAN), (INF, 20.0)),
    "nan_then_dip": _h((0.1, 5.0), (0.2, NAN), (0.3, 3.0), (INF, 10.0)),
    "nan_first_then_dip": _h((0.1, NAN), (0.2, 6.0), (0.3, 3.0), (INF, 10.0)),
    "ulp_order": _h((0.01, 48.0), (0.025, 78.0), (INF, 78.0)),
    "tiny_step": _h((1.0, 1e12 - 0.25), (2.0, 1e12), (3.0, 1.5e12), (INF, 2e12)),
    "tiny_dip": _h((1.0, 1e12), (2.0, 1e12 - 0.25), (3.0, 1.5e12), (INF, 2e12)),
    "negative_bounds": _h((-1.0, 5.0), (0.0, 8.0), (INF, 10.0)),
    "empty_first": _h((0.2, 0.0), (0.3, 10.0), (INF, 10.0)),
    "minus_inf_bound": _h((-INF, 2.0), (1.0, 5.0), (INF, 10.0)),
    "inf_counts": _h((0.1, 5.0), (0.2, INF), (INF, INF)),
    "duplicate_bounds": [("0.3", 4.0), ("0.3e0", 5.0), ("0.1", 2.0), ("+Inf", 10.0),
                         ("Inf", 1.0)],
}


def _bounds(rng: random.Random) -> list[float]:
    n = rng.choice([0, 1, 2, 3, 5, 8, 10, 12])
    style = rng.random()
    if style < 0.4:  # exponential, prometheus_client style
        start, factor = rng.choice([0.001, 0.005, 0.01, 0.1]), rng.choice([2.0, 2.5, 10.0])
        bounds = [start * factor**i for i in range(n)]
    elif style < 0.6:  # linear, may start at or below zero
        start, width = rng.choice([-2.0, -0.5, 0.0, 0.05]), rng.choice([0.1, 0.25, 1.0])
        bounds = [start + width * i for i in range(n)]
    else:  # arbitrary
        bounds = sorted({rng.uniform(-0.1, 1.0) if rng.random() < 0.1 else rng.uniform(0, 30)
                         for _ in range(n)})
    if rng.random() < 0.9:
        bounds.append(INF)
    return bounds


def _counts(rng: random.Random, n: int) -> list[float]:
    kind = rng.random()
    if kind < 0.1:
        return [0.0] * n
    if kind < 0.5:  # integer counts
        steps = [float(rng.choice([0, 0, 1, 2, 7, 40])) for _ in range(n)]
    elif kind < 0.85:  # per-second rates: fractions with rounding noise
        steps = [rng.choice([0.0, rng.random() * 3]) / rng.choice([15.0, 30.0, 60.0])
                 for _ in range(n)]
    else:  # huge counts, where 2.49's relative tolerance can matter
        steps = [rng.choice([0.0, 0.25, 1e11 * rng.random()]) + (1e12 if i == 0 else 0.0)
                 for i in range(n)]
    out, total = [], 0.0
    for step in steps:
        total += step
        out.append(total)
    return out


def _damage(rng: random.Random, counts: list[float]) -> None:
    """What real inputs do to cumulative counts: dips, NaN, ±Inf, float noise."""
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        i = rng.randrange(len(counts))
        kind = rng.random()
        if kind < 0.35:
            counts[i] = max(0.0, counts[i] - rng.choice([1.0, 0.5, counts[i] * rng.random()]))
        elif kind < 0.55:
            counts[i] = NAN
        elif kind < 0.62:
            counts[i] = INF
        elif kind < 0.65:
            counts[i] = -rng.random()
        else:  # relative noise around 2.49's 1e-12 tolerance, either direction
            counts[i] *= 1 + rng.choice([-1, 1]) * rng.choice([1e-14, 5e-13, 1e-12, 3e-12, 1e-9])


def random_histogram(rng: random.Random) -> Histogram:
    bounds = _bounds(rng)
    if not bounds:
        return []
    counts = _counts(rng, len(bounds))
    _damage(rng, counts)
    pairs = [(_spell(le), count) for le, count in zip(bounds, counts)]
    # The same bound spelled differently by a second series (at most twice: Go's unstable
    # sort decides the order in which three or more would be added, see promql.py).
    if rng.random() < 0.1:
        le, count = rng.choice(pairs)
        alt = "Inf" if le == "+Inf" else le + "e0" if "e" not in le else None
        if alt is not None:
            pairs.append((alt, count / 3 if math.isfinite(count) else count))
    rng.shuffle(pairs)  # exposition order must not matter
    return pairs


def exposition(histograms: dict[str, Histogram]) -> str:
    return "".join(f'{METRIC}_bucket{{h="{name}",le="{le}"}} {_spell(count)}\n'
                   for name, pairs in histograms.items() for le, count in pairs)


def trimtab_buckets(text: str) -> dict[str, list[tuple[float, float]]]:
    """The exposition read back by trimtab's own parser: h → [(bound, count)]."""
    out: dict[str, list[tuple[float, float]]] = {}
    for sample in parse(text).samples:
        labels = dict(sample.labels)
        out.setdefault(labels["h"], []).append((le_value(labels["le"]), sample.value))
    return out


def same_bits(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


def prom_query(client: httpx.Client, base: str, query: str) -> list[dict]:
    response = client.get(f"{base}/api/v1/query", params={"query": query})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    assert body["data"]["resultType"] == "vector", body
    return body["data"]["result"]


def wait_for_scrape(client: httpx.Client, base: str, series: int, timeout: float = 30.0) -> None:
    def stored() -> bool:
        result = prom_query(client, base, f"count({METRIC}_bucket)")
        return bool(result) and float(result[0]["value"][1]) == series

    if not poll(stored, bool, timeout, interval=0.2):
        raise AssertionError(f"Prometheus did not store all {series} series within {timeout} s")


def installed_fix() -> tuple[str, BucketFix]:
    out = subprocess.run([require_binary("prometheus"), "--version"], capture_output=True,
                         text=True, timeout=30, check=True)
    found = re.search(r"prometheus, version (\S+)", out.stdout + out.stderr)
    assert found, out
    return found[1], bucket_fix_for_version(found[1])


def compare(prom: dict[str, float], ours: dict[str, list[tuple[float, float]]],
            q: float, fix: BucketFix) -> list[str]:
    mismatches = []
    for name, buckets in ours.items():
        result = histogram_quantile(q, buckets, fix=fix)
        mine = NAN if result is None else result.value
        if not same_bits(mine, prom[name]):
            mismatches.append(f"q={q!r} {name} {buckets}: trimtab {mine!r}, "
                              f"prometheus {prom[name]!r}")
    return mismatches


def test_histogram_quantile_matches_prometheus_bit_for_bit(tmp_path: Path) -> None:
    version, fix = installed_fix()
    other = next(f for f in BucketFix if f is not fix)
    rng = random.Random(SEED)
    histograms = dict(EDGE_CASES)
    for i in range(RANDOM_HISTOGRAMS):
        if pairs := random_histogram(rng):
            histograms[f"r{i:03d}"] = pairs
    text = exposition(histograms)
    ours = trimtab_buckets(text)
    assert set(ours) == set(histograms)
    series = sum(len(p) for p in histograms.values())

    compared, mismatches, other_mismatches = 0, [], 0
    with serving_exposition(text) as url, running_prometheus(tmp_path, {"hq": [url]}) as base, \
            httpx.Client(timeout=30.0) as client:
        wait_for_scrape(client, base, series)
        for q in (*QUANTILES, NAN):
            result = prom_query(client, base, f"histogram_quantile({q!r}, {METRIC}_bucket)")
            prom: dict[str, float] = {}
            for sample in result:
                spelled = sample["value"][1]
                assert GO_FLOAT.fullmatch(spelled), spelled
                prom[sample["metric"]["h"]] = float(spelled)
            assert set(prom) == set(ours), set(prom) ^ set(ours)
            mismatches += compare(prom, ours, q, fix)
            other_mismatches += len(compare(prom, ours, q, other))
            compared += len(prom)

    print(f"\nprometheus {version} ({fix.name}): {len(histograms)} histograms "
          f"({len(histograms) - len(EDGE_CASES)} random, seed {SEED}), {len(QUANTILES)} quantiles "
          f"+ NaN: {compared} comparisons, {len(mismatches)} mismatches "
          f"({other_mismatches} under {other.name})")
    assert len(histograms) - len(EDGE_CASES) >= 300 and compared >= 300 * len(QUANTILES)
    assert not mismatches, "\n".join(mismatches[:20])
    # The data tell the two Prometheus generations apart, so a wrong default cannot pass.
    assert other_mismatches > 0


def test_the_edge_cases_are_in_the_exposition() -> None:
    """Guard against the generator silently dropping the cases the issue names."""
    text = exposition(EDGE_CASES)
    ours = trimtab_buckets(text)
    assert ours["nan_total"] == [(0.1, 5.0), (0.2, 10.0), (INF, ours["nan_total"][2][1])]
    assert math.isnan(ours["nan_total"][2][1])
    assert sorted(le for le, _ in ours["duplicate_bounds"]) == [0.1, 0.3, 0.3, INF, INF]
