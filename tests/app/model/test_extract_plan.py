"""The planned extraction (app/model/extractor.py) against the per-sample one (extract()).

Random layouts over every kind of series extract() reads (buckets with odd or missing
``le``, status classes, sizes, cache, rate limits, balancer gauges and counters, ``_created``
markers, process start, service labels valid and not, unrelated series), random value
sequences (counters growing, resetting, going NaN, Inf, -0.0, markers changing), layouts
changing under the extractor (series appearing, vanishing, reordered, the target's service
changing), scraped as text through a real TargetParser (the same tuples each scrape) and as
plain sample lists (equal, not identical). Every scrape's Counters must be the same, float
for float; then two FleetModels fed the same scrapes, one per path, must derive the same
series bit for bit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from trimtab.app.model.extract import Counters, extract
from trimtab.app.model.extractor import Extractor, build_plan
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.canonical import (
    CACHE,
    HIST_BUCKET,
    LB_BUCKET,
    LB_ERRORS,
    LB_EXPECTED,
    LB_IN_FLIGHT,
    LB_REQUESTS,
    LB_STATE,
    LB_UP,
    LB_WEIGHT,
    PROCESS_START,
    RATELIMIT,
    REQUESTS,
    SIZE_COUNT,
    SIZE_SUM,
)
from trimtab.collectors.exposition import Exposition, Sample, TargetParser
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

FIELDS = ("buckets", "requests", "errors", "cache", "lb_requests", "lb_expected", "lb_weight",
          "lb_in_flight", "lb_up", "lb_state", "lb_errors", "lb_buckets", "start", "created")
ROUTES = ("/a", "/b/{id}", '/q"x')  # a quote: escaped in the text


def universe() -> list[tuple[str, dict[str, str], str]]:
    """(name, labels, kind) of every series a scrape may hold; kind drives its values."""
    out: list[tuple[str, dict[str, str], str]] = []
    for route in ROUTES:
        for method in ("GET", "POST"):  # two series per bucket group: summed in order
            for le in ("0.1", "0.5", "1e0", "+Inf"):
                out.append((HIST_BUCKET, {"route": route, "method": method, "le": le}, "counter"))
            out.append(("trimtab_http_request_duration_seconds_created",
                        {"route": route, "method": method}, "created"))
            for status in ("200", "503", "5xx", "429", "404", "", "1xx", "abc"):
                out.append((REQUESTS, {"route": route, "method": method, "status": status}, "counter"))
                out.append(("trimtab_http_requests_created",
                            {"route": route, "method": method, "status": status}, "created"))
        out.append((HIST_BUCKET, {"route": route, "le": "1.0", "method": "PUT"}, "counter"))  # le 1e0 too
        out.append((HIST_BUCKET, {"route": route, "method": "GET"}, "counter"))  # no le
        out.append((HIST_BUCKET, {"route": route, "le": "soon"}, "counter"))  # not a number
        out.append((SIZE_SUM, {"route": route}, "counter"))
        out.append((SIZE_COUNT, {"route": route}, "counter"))
        out.append(("trimtab_http_response_size_bytes_created", {"route": route}, "created"))
        for result in ("hit", "miss", "bypass"):
            for reason in ("a", "b"):
                out.append((CACHE, {"route": route, "result": result, "reason": reason}, "counter"))
            out.append(("trimtab_cache_requests_created", {"route": route, "result": result}, "created"))
        for result in ("allowed", "limited", "shadow_limited"):
            out.append((RATELIMIT, {"route": route, "limit": "per-ip", "result": result}, "counter"))
            out.append(("trimtab_ratelimit_requests_created",
                        {"route": route, "limit": "per-ip", "result": result}, "created"))
    for service in ("shop", "bad · name"):  # a series' own service label, valid or not
        out.append((REQUESTS, {"route": "/a", "status": "200", "service": service}, "counter"))
        out.append((HIST_BUCKET, {"route": "/a", "le": "0.1", "service": service}, "counter"))
        out.append((CACHE, {"route": "/a", "result": "hit", "service": service}, "counter"))
        out.append(("trimtab_http_requests_created",
                    {"route": "/a", "status": "200", "service": service}, "created"))
    for server in ("s1", "s2"):
        out += [(LB_REQUESTS, {"server": server}, "counter"),
                (LB_REQUESTS, {"server": server, "pool": "x"}, "counter"),  # same server twice
                (LB_EXPECTED, {"server": server}, "gauge"), (LB_WEIGHT, {"server": server}, "gauge"),
                (LB_IN_FLIGHT, {"server": server}, "gauge"), (LB_UP, {"server": server}, "flag"),
                (LB_ERRORS, {"server": server}, "counter"),
                ("trimtab_balancer_requests_created", {"server": server}, "created"),
                ("trimtab_balancer_errors_created", {"server": server}, "created")]
        out += [(LB_STATE, {"server": server, "state": st}, "flag") for st in ("ready", "drain", "maint")]
        out += [(LB_BUCKET, {"server": server, "le": le}, "counter") for le in ("0.1", "+Inf", "x")]
        out.append(("trimtab_balancer_upstream_request_duration_seconds_created",
                    {"server": server}, "created"))
    out += [(LB_REQUESTS, {}, "counter"), (LB_IN_FLIGHT, {}, "gauge"),  # no server label
            (PROCESS_START, {}, "start"), (PROCESS_START, {"pid": "2"}, "start"),
            ("go_goroutines", {}, "gauge"), ("trimtab_balancer_other_thing", {"server": "s1"}, "gauge"),
            ("trimtab_http_requests_total_x", {"route": "/a"}, "counter")]
    return out


class Series:
    """One series' values over successive scrapes."""

    def __init__(self, kind: str, rng: random.Random) -> None:
        self.kind, self.rng = kind, rng
        self.value = rng.choice((0.0, 1.0, 1e6, 2.0 ** 53 - 3, 0.1))
        self.created = float(rng.randint(1_000, 2_000))

    def next(self) -> float:
        r = self.rng.random()
        if self.kind == "counter":
            if r < 0.04:  # a reset
                self.value = self.rng.choice((0.0, 1.0, 0.3))
                self.created += 1.0
            elif r < 0.07:
                return math.nan  # staleness marker
            elif r < 0.08:
                return self.rng.choice((math.inf, -0.0))
            else:
                self.value += self.rng.choice((0.0, 1.0, 3.0, 0.1, 1e-9, 1e9))
            return self.value
        if self.kind == "created":
            if r < 0.05:
                self.created += self.rng.choice((1.0, 0.5))
            elif r < 0.08:
                return self.rng.choice((math.nan, math.inf))
            return self.created
        if self.kind == "start":
            if r < 0.05:
                self.created += 10.0
            elif r < 0.08:
                return math.nan
            return self.created
        if self.kind == "flag":
            return self.rng.choice((0.0, 1.0, 1.0, math.nan))
        return self.rng.choice((0.0, 0.25, 1.0, 7.5, -0.0, math.nan))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(rows: list[tuple[str, dict[str, str], float]]) -> str:
    lines = []
    for name, labels, value in rows:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {value!r}" if inner else f"{name} {value!r}")
    return "\n".join(lines) + "\n"


def scrapes(seed: int, n: int) -> Iterator[tuple[str, list[tuple[str, dict[str, str], float]]]]:
    """(service of the target, rows) per scrape: layouts last a few scrapes, then change."""
    rng = random.Random(seed)
    every = universe()
    state = {i: Series(kind, rng) for i, (_, _, kind) in enumerate(every)}
    chosen = sorted(rng.sample(range(len(every)), rng.randint(1, len(every))))
    service = rng.choice(("", "", "api"))
    for _ in range(n):
        r = rng.random()
        if r < 0.15:  # series appear and vanish
            flip = set(rng.sample(range(len(every)), rng.randint(1, 8)))
            chosen = sorted(set(chosen) ^ flip) or [0]
        elif r < 0.18:  # same series, another order (grouped by name, as text wants)
            rng.shuffle(chosen)
            order = {name: k for k, name in enumerate(dict.fromkeys(every[i][0] for i in chosen))}
            chosen.sort(key=lambda i: order[every[i][0]])
        elif r < 0.20:  # the target joins another service
            service = rng.choice(("", "api", "shop"))
        yield service, [(every[i][0], every[i][1], state[i].next()) for i in chosen]


def _bits(value: Any) -> Any:
    """A form of ``value`` equal only to the same floats (repr tells every double apart
    but NaNs, which are equal here), in the same dict order."""
    if isinstance(value, dict):
        return [(_bits(k), _bits(v)) for k, v in value.items()]
    if isinstance(value, tuple | list):
        return [_bits(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


def assert_same(planned: Counters, reference: Counters) -> None:
    for name in FIELDS:
        assert _bits(getattr(planned, name)) == _bits(getattr(reference, name)), name
    a, b = planned.layout, reference.layout
    assert a.series == b.series and a.service == b.service
    assert _bits(a.groups) == _bits(b.groups) and _bits(a.keys) == _bits(b.keys)
    assert np.array_equal(a.index, b.index)
    assert planned.values.dtype == reference.values.dtype == np.float64
    assert planned.values.tobytes() == reference.values.tobytes()


@pytest.mark.parametrize("seed", range(12))
def test_planned_counters_equal_per_sample_counters(seed: int) -> None:
    parser, extractor, listed = TargetParser(), Extractor(), Extractor()
    previous: tuple[Counters, Counters] | None = None
    for service, rows in scrapes(seed, 120):
        expo = parser.parse(render(rows))
        reference = extract(expo, service)
        planned = extractor.extract(expo, service)
        assert_same(planned, reference)
        # The same scrape as a list of samples: equal names and labels, never the same tuples.
        samples = Exposition(samples=[Sample(n, tuple(sorted(lab.items())), v) for n, lab, v in rows])
        assert_same(listed.extract(samples, service), extract(samples, service))
        if previous is not None:  # the cheap marker comparison decides as the dicts do
            old_planned, old_reference = previous
            expected = old_reference.start == reference.start and old_reference.created == reference.created
            assert planned.same_markers(old_planned) is expected
        previous = planned, reference
    assert 1 < extractor.builds < 120  # plans were reused, and rebuilt on layout changes


def test_plan_is_reused_only_for_the_same_layout() -> None:
    parser, extractor = TargetParser(), Extractor()
    body = 'trimtab_http_requests_total{route="/a",status="200"} 1\n'
    extractor.extract(parser.parse(body))
    plan = extractor.plan
    extractor.extract(parser.parse(body.replace(" 1\n", " 2\n")))
    assert extractor.plan is plan and extractor.builds == 1
    # Another service keys the same series under other routes: a new plan.
    counters = extractor.extract(parser.parse(body), "shop")
    assert extractor.builds == 2 and counters.requests == {"shop · /a": 1.0}
    # One label value more: a new plan, and what it says is right.
    counters = extractor.extract(parser.parse(body.replace('"200"', '"503"')), "shop")
    assert extractor.builds == 3 and counters.errors == {"shop · /a": 1.0}


def test_empty_and_unrelated_scrapes() -> None:
    extractor = Extractor()
    for text in ("", "go_goroutines 3\n", "process_start_time_seconds NaN\n"):
        expo = TargetParser().parse(text)
        assert_same(extractor.extract(expo), extract(expo))
    plan = build_plan((), ())
    assert plan.layout.series == () and len(plan.apply([]).values) == 0


class _Reference(Extractor):
    """The per-sample path, in the model's place of a plan."""

    def extract(self, expo: Exposition, service: str = "") -> Counters:
        return extract(expo, service)


def _series(model: FleetModel) -> dict[tuple[str, str], bytes]:
    return {key: b"".join(a.tobytes() for a in ring.arrays()) for key, ring in model.series.items()}


@pytest.mark.parametrize("seed", range(4))
def test_models_fed_by_either_path_derive_the_same_series(seed: int) -> None:
    """Three targets (one a balancer) with their own random sequences, ticked every second."""
    planned, reference = FleetModel(rate_window=5.0), FleetModel(rate_window=5.0)
    names = [("api-1", "instance"), ("api-2", "instance"), ("lb", "balancer")]
    for name, _ in names:
        reference._extractors[name] = _Reference()
    parsers = {name: TargetParser() for name, _ in names}
    feeds = {name: scrapes(seed * 10 + k, 60) for k, (name, _) in enumerate(names)}
    t0 = 1_700_000_000.0
    for step in range(60):
        for k, (name, kind) in enumerate(names):
            service, rows = next(feeds[name])
            if (step + k) % 17 == 16:
                continue  # a missed scrape
            target = ScrapeTarget(name, f"http://127.0.0.1:{9000 + k}/metrics", kind=kind, service=service)
            expo = parsers[name].parse(render(rows))
            when = t0 + step + 0.1 * k
            planned.ingest(ScrapeResult(target, when, True, 0.01, expo))
            reference.ingest(ScrapeResult(target, when, True, 0.01, expo))
        planned.tick(t0 + step + 0.5)
        reference.tick(t0 + step + 0.5)
    assert _series(planned) == _series(reference)
    assert len(planned.series) > 20
    assert _bits([vars(r) for r in planned.routes.values()]) == _bits([vars(r) for r in reference.routes.values()])
    for table in ("cache", "limits", "share"):
        assert _bits([vars(r) for r in getattr(planned, table)]) == _bits(
            [vars(r) for r in getattr(reference, table)]), table
    assert sum(e.builds for e in planned._extractors.values()) > 3
