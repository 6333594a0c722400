"""The caches the parsers of one process share: a fleet's targets that print the same lines
parse and hold each label set once, and nothing one target's parse learnt changes what
another's returns or raises.

Why it matters beyond speed: each label set is a nest of tuples the cyclic collector keeps
walking until it has untracked it, one nesting level per collection. 200 targets' first
scrapes each holding their own copy left ~600,000 tracked tuples, and the collections that
walked them stalled the cockpit's window ~200 ms (issue 16).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from trimtab.collectors.exposition import (
    OPENMETRICS,
    TEXT,
    Exposition,
    ParseError,
    TargetParser,
    forget_shared_caches,
    parse,
)
from trimtab.collectors.exposition.target import shared_caches

from tests.collectors.exposition.test_exposition import (
    normalise_ours,
    normalise_reference,
    reference_metadata,
)

# every test twice: with the parser's C helpers, then with its Python paths alone (conftest)
pytestmark = pytest.mark.usefixtures("reader")

TEXT_TYPE = "text/plain; version=0.0.4"
OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _fleet_body(routes: int = 12, value: int = 1) -> str:
    """What prometheus_client prints for a latency histogram and a counter per route."""
    lines = ["# HELP http_seconds Latency.", "# TYPE http_seconds histogram"]
    for r in range(routes):
        for method in ("GET", "POST"):
            labels = f'method="{method}",route="/api/v1/r{r}/{{id}}",status="200"'
            for le in ("0.005", "0.01", "0.1", "1.0", "+Inf"):
                lines.append(f'http_seconds_bucket{{le="{le}",{labels}}} {value}.0')
            lines.append(f"http_seconds_count{{{labels}}} {value}.0")
            lines.append(f"http_seconds_sum{{{labels}}} {value * 0.25}")
    lines += ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    lines += [f'http_requests_total{{route="/api/v1/r{r}/{{id}}",status="{s}"}} {value}.0'
              for r in range(routes) for s in ("200", "500")]
    return "\n".join(lines) + "\n"


def _same(expo: Exposition, text: str) -> None:
    """``expo`` (parsed by whichever parser) is what prometheus_client reads in ``text``."""
    openmetrics = expo.format == OPENMETRICS
    assert normalise_ours(expo) == normalise_reference(text, openmetrics, expo.types)
    assert ({n: (t, expo.helps.get(n, "")) for n, t in expo.types.items()}
            == reference_metadata(text, openmetrics, expo.types))


def _many_families_body(families: int = 40, value: int = 1) -> str:
    """Many small families, a comment line in every few (the body path reads these)."""
    lines = []
    for f in range(families):
        lines += [f"# HELP pool_{f}_in_use Connections.", f"# TYPE pool_{f}_in_use gauge"]
        lines += [f'pool_{f}_in_use{{backend="api-{f}",server="api-{s}",state="open"}} {value + s}'
                  for s in range(4)]
    return "\n".join(lines) + "\n"


def _learnt(fmt: str) -> bool:
    caches = shared_caches(fmt)
    return bool(caches.series or caches.bases or caches.pending or len(caches.tails) > 1)


@pytest.fixture()
def gc_off() -> Iterator[None]:
    """No collection while a test counts the young generation (restored after)."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_a_bad_label_set_is_refused_by_every_target_that_prints_it() -> None:
    bad = _fleet_body(2).replace('status="500"}', 'status="500}', 1)
    for _ in range(3):  # the first target's parse caches what it found; the others still refuse
        with pytest.raises(ParseError, match="line"):
            TargetParser().parse(bad, TEXT_TYPE)
    good = _fleet_body(2)
    _same(TargetParser().parse(good, TEXT_TYPE), good)


def test_a_second_target_printing_the_same_lines_gets_the_same_label_tuples() -> None:
    body = _fleet_body()
    first, second = TargetParser().parse(body, TEXT_TYPE), TargetParser().parse(body.replace(" 1.0", " 2.0"), TEXT_TYPE)
    labels_a, labels_b = first.columns()[1], second.columns()[1]
    assert labels_a == labels_b
    assert all(a is b for a, b in zip(labels_a, labels_b, strict=True))
    _same(second, body.replace(" 1.0", " 2.0"))


@pytest.mark.parametrize("make", [_fleet_body, _many_families_body],
                         ids=["long runs (bulk path)", "many families (body path)"])
def test_more_targets_add_no_label_tuples_for_the_collector_to_walk(gc_off: None, make) -> None:  # type: ignore[no-untyped-def]
    body = make()

    def young_tuples_per_target(forget: bool) -> float:
        kept = [TargetParser().parse(body, TEXT_TYPE)]  # the first target parses every label set
        before = sum(1 for o in gc.get_objects(0) if type(o) is tuple)
        for _ in range(20):
            if forget:  # as each target had its own caches
                forget_shared_caches()
            kept.append(TargetParser().parse(body, TEXT_TYPE))
        for expo in kept:
            _same(expo, body)
        return (sum(1 for o in gc.get_objects(0) if type(o) is tuple) - before) / 20

    own, shared = young_tuples_per_target(True), young_tuples_per_target(False)
    n_samples = body.count("\n") - body.count("#")
    # Its own copy: a labels tuple per sample and the pairs in it, still tracked; shared,
    # a target adds a handful of containers for its columns.
    assert own > n_samples, f"{own:.0f} tuples per target with its own caches, {n_samples} samples"
    assert shared < own / 10, f"{shared:.0f} tuples per target shared vs {own:.0f} each its own"


def test_each_format_keeps_its_own_caches() -> None:
    text = _fleet_body(3)
    om = text.replace("http_requests_total{", "http_requests_total{").replace(
        "# TYPE http_requests_total counter", "# TYPE http_requests counter") + "# EOF\n"
    om = om.replace("# HELP http_requests_total", "# HELP http_requests")
    assert shared_caches(TEXT) is not shared_caches(OPENMETRICS)
    _same(TargetParser().parse(text, TEXT_TYPE), text)
    # the label sets were learnt under each format's own rules, into each format's caches
    assert _learnt(TEXT) and not _learnt(OPENMETRICS)
    _same(TargetParser().parse(om, OM_TYPE), om)
    assert _learnt(OPENMETRICS)


def test_churning_label_sets_start_the_caches_over_and_leave_a_parse_in_flight_its_own() -> None:
    caches = shared_caches(TEXT)
    held = []  # parsers kept alive: the bound counts them
    for i in range(3):
        parser = TargetParser()
        parser.parse(_fleet_body(2, value=i), TEXT_TYPE)
        held.append(parser)
    old_tails = caches.tails
    learnt = dict(old_tails)
    churn = TargetParser()
    held.append(churn)
    limit = 2 * sum(caches.samples.values()) + 2 * 30 + 1024  # 30 samples a scrape below
    for i in range(limit // 10 + 50):  # each scrape ten label sets never seen before
        body = "".join(f'x_total{{id="{i}-{k}"}} 1\n' for k in range(10)) + "".join(
            f'y{{n="{k}"}} 2\n' for k in range(20))
        expo = churn.parse(body, TEXT_TYPE)
        assert len(expo.columns()[0]) == 30
        assert len(caches.series) <= limit + 30
        assert len(caches.tails) <= limit + 30
    assert caches.tails is not old_tails  # replaced, not cleared in place...
    assert old_tails == learnt  # ...so a parse still holding the old dict reads it whole
    again = _fleet_body(2, value=9)
    _same(held[0].parse(again, TEXT_TYPE), again)


def test_one_shot_parses_share_too_and_equal_the_reference() -> None:
    body = _fleet_body(4)
    a, b = parse(body), parse(body)
    assert a.columns()[1][0] is b.columns()[1][0]
    _same(b, body)


def test_a_small_targets_parses_leave_a_big_targets_label_sets_alone() -> None:
    """The bound is the sum of every sharing parser's samples, not the one that parsed last:
    10 small targets' scrapes emptied a 20,000-series target's caches, and its next full
    parse took 4.7x as long rebuilding them (found by review)."""
    big = "".join(f'x_total{{id="{i}",zone="z{i % 7}"}} {i}\n' for i in range(20_000))
    caches = shared_caches(TEXT)
    big_parser = TargetParser()
    first = big_parser.parse(big, TEXT_TYPE)
    small = [TargetParser() for _ in range(10)]
    for round_ in range(3):  # full parses, then value-only ones
        for k, parser in enumerate(small):
            parser.parse(f'y{{k="{k}"}} {round_}\n', TEXT_TYPE)
    again = big_parser.parse(big + 'x_total{id="new"} 1\n', TEXT_TYPE)  # a new line: full parse
    assert caches.series or caches.pending or len(caches.tails) > 1
    same = sum(a is b for a, b in zip(first.columns()[1], again.columns()[1]))
    assert same == 20_000  # every label set found, none parsed again
    _same(again, big + 'x_total{id="new"} 1\n')


def test_a_parser_that_changes_format_counts_in_the_new_one_only() -> None:
    parser = TargetParser()
    parser.parse(_fleet_body(2), TEXT_TYPE)
    assert parser in shared_caches(TEXT).samples
    om = "# TYPE g gauge\ng 1\n# EOF\n"
    parser.parse(om, OM_TYPE)
    assert parser not in shared_caches(TEXT).samples and parser in shared_caches(OPENMETRICS).samples
