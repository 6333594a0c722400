"""The run-at-a-time first-scrape path (the full parser's bulk path), the columnar result and the GC pause.

The bulk path only takes runs of at least ``MIN_RUN`` sample lines; the
differential tests here set it to 1 so every run of every generated body goes
through it, and compare with prometheus_client and with the per-line loop
(``MIN_RUN`` huge), errors and their line numbers included.
"""

from __future__ import annotations

import gc
import math
import pickle
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from trimtab.collectors.exposition import Exposition, ParseError, Sample, TargetParser, parse
from trimtab.collectors.exposition import full as expo_full

from tests.collectors.exposition.test_exposition import (
    CORPUS,
    OM_TYPE,
    _mutations,
    assert_same_as_reference,
    assert_same_parse,
    expositions,
    normalise_ours,
)

EVERY_RUN, NO_RUN = 1, 10**9


def _parse_with(min_run: int, text: str, content_type: str | None = None) -> Exposition:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(expo_full, "MIN_RUN", min_run)
        return parse(text, content_type)


def _spy_bulk(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, bool]]:
    """Records (first line, end, taken) of every run the bulk path was offered."""
    offered: list[tuple[int, int, bool]] = []
    original = expo_full._Full.bulk_run

    def spy(full: expo_full._Full, lines: list[str], i: int, j: int) -> bool:
        taken = original(full, lines, i, j)
        offered.append((i, j, taken))
        return taken

    monkeypatch.setattr(expo_full._Full, "bulk_run", spy)
    return offered


def _histogram_body(routes: int = 30, le_last: bool = False) -> str:
    registry = CollectorRegistry()
    latency = Histogram("latency_seconds", "Latency", ["route", "method"], registry=registry)
    for i in range(routes):
        latency.labels(f"/r{i}/{{id}}", "GET").observe(0.01 * i)
    body = generate_latest(registry).decode()
    if le_last:  # client_golang's spelling: le after the other labels
        body = "\n".join(_move_le_last(line) for line in body.split("\n"))
    return body


def _move_le_last(line: str) -> str:
    if '{le="' not in line:
        return line
    head, _, rest = line.partition('{le="')
    le, _, rest = rest.partition('",')
    labels, _, value = rest.rpartition("} ")
    return f'{head}{{{labels},le="{le}"}} {value}'


# --- the bulk path is taken, and equals the reference ------------------------------------------

@pytest.mark.parametrize("le_last", [False, True], ids=["le-first", "le-last"])
def test_histogram_runs_are_read_in_bulk_and_equal_reference(monkeypatch: pytest.MonkeyPatch,
                                                             le_last: bool) -> None:
    body = _histogram_body(le_last=le_last)
    offered = _spy_bulk(monkeypatch)
    expo = assert_same_as_reference(body)
    assert offered and all(taken for _, _, taken in offered)
    assert sum(j - i for i, j, _ in offered) == len(expo.samples)


@pytest.mark.parametrize("name", ["node_exporter.prom", "haproxy_exporter.prom"])
def test_corpus_equals_reference_with_every_run_in_bulk(name: str) -> None:
    text = (CORPUS / name).read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(expo_full, "MIN_RUN", EVERY_RUN)
        assert_same_as_reference(text)
        assert_same_as_reference(text.replace("\n", "\r\n"))


_ODD_LINES = {  # a bucket line changed so that the bulk path must hand its run to the per-line loop
    "timestamp": lambda line: line + " 1700000000000",  # valid
    "le-twice": lambda line: line.replace('{le="', '{le="7",le="', 1),
    "blank-in-name": lambda line: line.replace("latency_seconds", "latency seconds", 1),
    "bad-value": lambda line: line.rsplit(" ", 1)[0] + " 1_0",
    "unclosed": lambda line: line.replace('"} ', '" ', 1),
    "junk-after-labels": lambda line: line.replace('"} ', '"x ', 1),
    "nan-bound": lambda line: line.replace('{le="', '{le="NaN', 1).replace('NaN0', 'NaN', 1),
    "word-bound": lambda line: line.replace('{le="', '{le="x', 1),
}


@pytest.mark.parametrize("odd", list(_ODD_LINES))
def test_odd_line_inside_a_run_falls_back_and_reports_like_the_per_line_loop(
        monkeypatch: pytest.MonkeyPatch, odd: str) -> None:
    lines = _histogram_body().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("latency_seconds_bucket")) + 20
    lines[at] = _ODD_LINES[odd](lines[at])
    text = "\n".join(lines)
    offered = _spy_bulk(monkeypatch)
    try:
        expected = _parse_with(NO_RUN, text)
    except ParseError as exc:
        with pytest.raises(ParseError) as raised:
            parse(text)
        assert (raised.value.line_no, str(raised.value)) == (exc.line_no, str(exc))
        assert exc.line_no == at + 1
    else:
        assert odd == "timestamp"
        got = assert_same_as_reference(text)
        assert_same_parse(got, expected)
        assert got.columns()[3] is not None and 1700000000.0 in got.columns()[3]
    assert offered and not offered[0][2]  # declined, and nothing of it kept


@pytest.mark.parametrize("labels", [
    'le="1",a="b"', 'le="1"x",a="b"', 'le="1",a="b"x', 'le="1",le="2"', 'le="1",a="b",', 'le="1", a="b"',
    'le="1",', 'le="1\\"",a="b"', 'le="NaN",a="b"', 'a="b",le="1"', 'a="b",,le="1"', 'a="b" ,le="1"',
    'quantile="0.5",a="b"', 'le="1",a="b",quantile="x"', 'le="1",quantile="2"', 'a="le=\\"1\\"",b="c"',
])
@pytest.mark.parametrize("family", ["gauge", "histogram", "summary"])
@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_label_set_shapes_read_alike_in_bulk_and_per_line(labels: str, family: str, openmetrics: bool) -> None:
    """A run of one shape of label set beside le/quantile: same samples or the same error."""
    name = {"gauge": "g", "histogram": "h_bucket", "summary": "s"}[family]
    lines = [f"# TYPE {name.removesuffix('_bucket')} {family}"]
    lines += [f'{name}{{{labels.replace("b", f"b{k}")}}} {k}' for k in range(3)]
    text = "\n".join(lines + (["# EOF"] if openmetrics else [])) + "\n"
    content_type = OM_TYPE if openmetrics else None
    try:
        expected = _parse_with(NO_RUN, text, content_type)
    except ParseError as exc:
        with pytest.raises(ParseError) as raised:
            _parse_with(EVERY_RUN, text, content_type)
        assert (raised.value.line_no, str(raised.value)) == (exc.line_no, str(exc))
        return
    assert_same_parse(_parse_with(EVERY_RUN, text, content_type), expected)
    if family != "histogram":  # the reference wants _count/_sum beside buckets
        assert_same_as_reference(text, content_type)


@pytest.mark.parametrize(("text", "content_type"), [
    ("a 1\nb 2\na 3\n# EOF\n", OM_TYPE),               # a family twice: not contiguous
    ("a 1\nb 2\n# TYPE b gauge\n", None),               # TYPE after the family's samples
    ("# TYPE a gauge\na 1\na_total 2\n# TYPE a_total counter\n", None),
    ("# TYPE a counter\na_total 1\na_created 2\nb 3\n# EOF\n", OM_TYPE),  # valid: three families
])
def test_runs_spanning_families_read_alike_in_bulk_and_per_line(text: str, content_type: str | None) -> None:
    try:
        expected = _parse_with(NO_RUN, text, content_type)
    except ParseError as exc:
        with pytest.raises(ParseError) as raised:
            _parse_with(EVERY_RUN, text, content_type)
        assert (raised.value.line_no, str(raised.value)) == (exc.line_no, str(exc))
        return
    got = _parse_with(EVERY_RUN, text, content_type)
    assert_same_parse(got, expected)
    assert_same_as_reference(text, content_type)


# --- differential fuzz: bulk path vs reference, and vs the per-line loop -------------------------

@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.booleans())
def test_fuzz_bulk_path_equals_reference(data: st.DataObject, openmetrics: bool) -> None:
    text = data.draw(expositions(openmetrics=openmetrics))
    content_type = OM_TYPE if openmetrics else "text/plain; version=0.0.4"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(expo_full, "MIN_RUN", EVERY_RUN)
        assert_same_as_reference(text, content_type)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.booleans())
def test_fuzz_bulk_path_equals_per_line_loop_on_broken_bodies(data: st.DataObject, openmetrics: bool) -> None:
    """One character changed anywhere: same result or the same error on the same line."""
    content_type = OM_TYPE if openmetrics else None
    first = data.draw(expositions(openmetrics=openmetrics))
    bodies = [data.draw(_mutations(first)) for _ in range(3)]
    for body in bodies:
        try:
            expected = _parse_with(NO_RUN, body, content_type)
        except ParseError as exc:
            with pytest.raises(ParseError) as raised:
                _parse_with(EVERY_RUN, body, content_type)
            assert (raised.value.line_no, str(raised.value)) == (exc.line_no, str(exc))
            continue
        assert_same_parse(_parse_with(EVERY_RUN, body, content_type), expected)


def test_warm_full_parse_after_a_new_series_equals_a_fresh_one() -> None:
    """A changed shape re-runs the full parser with the series found by the last one."""
    first, second = _histogram_body(20), _histogram_body(21)
    target = TargetParser()
    target.parse(first)
    target.parse(first)  # the deferred cache entries are added on the next full parse
    assert_same_parse(target.parse(second), parse(second))
    assert_same_parse(target.parse(first), parse(first))


@pytest.mark.parametrize("family", [
    "# TYPE s summary\n" + "".join(f's{{quantile="0.5",x="a{k}"}} 1\ns_sum{{x="a{k}"}} 2\n' for k in range(3)),
    "# TYPE h histogram\n" + "".join(f'h_bucket{{x="a{k}",le="+Inf"}} 1\nh_count{{x="a{k}"}} 1\n'
                                      for k in range(3)),
])
def test_series_found_in_bulk_serve_the_next_full_parse(family: str) -> None:
    """Bound labels written where the C passes do not cut them still count as bound
    when the series cache hands the series to a later full parse."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(expo_full, "MIN_RUN", EVERY_RUN)
        target = TargetParser()
        target.parse(family)
        changed = family + "other 1\n"  # a new shape: the full parser runs, with the cache
        assert_same_parse(target.parse(changed), parse(changed))
        assert_same_parse(target.parse(family), parse(family))


def test_text_after_a_label_set_is_an_error_in_bulk_too() -> None:
    text = "".join(f'g{{a="b{k}"}} {k}\n' for k in range(3)) + 'g{a="c"x 5\n'
    for min_run in (EVERY_RUN, NO_RUN):
        with pytest.raises(ParseError) as raised:
            _parse_with(min_run, text)
        assert raised.value.line_no == 4


# --- the columnar result -----------------------------------------------------------------------

def _columns_as_samples(expo: Exposition) -> list[Sample]:
    names, labels, values, stamps = expo.columns()
    return [Sample(n, lab, v, None if stamps is None else stamps[k])
            for k, (n, lab, v) in enumerate(zip(names, labels, values, strict=True))]


@pytest.mark.parametrize("body", [_histogram_body(5), "a 1 1000\nb{x=\"y\"} NaN\n", ""])
def test_columns_equal_samples_for_value_only_and_full_parses(body: str) -> None:
    target = TargetParser()
    full = target.parse(body)
    fast = target.parse(body)  # same shape: the value-only path
    for expo in (full, fast):
        columns = _columns_as_samples(expo)
        assert normalise_ours(Exposition(columns)) == normalise_ours(expo)
        assert expo.samples is expo.samples  # built once
        assert _columns_as_samples(expo) == columns  # also once samples exist
    assert full == fast or any(math.isnan(s.value) for s in full.samples)


def test_lazy_exposition_compares_pickles_and_keeps_attribute_errors() -> None:
    body = _histogram_body(3)
    target = TargetParser()
    target.parse(body)
    expo = target.parse(body)
    assert "samples" not in expo.__dict__  # not built until read
    clone = pickle.loads(pickle.dumps(expo))
    assert clone == expo == parse(body)
    assert clone.samples == parse(body).samples
    with pytest.raises(AttributeError):
        _ = expo.nonexistent
    assert Exposition().samples == [] and Exposition().columns() == ([], [], [], None)


# --- the garbage collector is left as it was found -----------------------------------------------

@pytest.fixture
def gc_restored() -> Iterator[None]:
    was = gc.isenabled()
    try:
        yield
    finally:
        gc.enable() if was else gc.disable()


@pytest.mark.usefixtures("gc_restored")
@pytest.mark.parametrize("enabled", [True, False])
def test_first_scrape_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    gc.enable() if enabled else gc.disable()
    TargetParser().parse(_histogram_body(3))
    assert gc.isenabled() is enabled
    with pytest.raises(ParseError):
        TargetParser().parse("a 1\nb{x=\"1} 2\n")
    assert gc.isenabled() is enabled
