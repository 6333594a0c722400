"""The value-only path reads OpenMetrics exemplars of the usual shape in one regex pass.

A warm parser (the previous scrape had the same lines up to the values) must return what a
fresh parse returns, or raise the same error on the same line, whatever follows the values:
new or changed exemplars, timestamps, and every way an exemplar can be wrong.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import generate_latest
from trimtab.collectors.exposition import ParseError, TargetParser, parse

from tests.collectors.exposition.test_exposition import (
    OM_TYPE,
    assert_same_as_reference,
    assert_same_parse,
)

# every test twice: with the parser's C helpers, then with its Python paths alone (conftest)
pytestmark = pytest.mark.usefixtures("reader")


def _body(observations: int) -> str:
    registry = CollectorRegistry()
    latency = Histogram("latency_seconds", "Latency", ["route"], registry=registry)
    hits = Counter("hits", "Hits", ["route"], registry=registry)
    Gauge("temperature", "T", registry=registry).set(21.5)
    for i in range(observations):
        route = f"/r{i % 3}"
        latency.labels(route).observe(0.001 * (i % 40), exemplar={"trace_id": f"{i:016x}"})
        hits.labels(route).inc(exemplar={"trace_id": f"{i:016x}"})
    return generate_latest(registry).decode()


def _replace_first(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _set_value(exemplar: str, value: str) -> str:
    labels, _, rest = exemplar.partition("} ")
    return f"{labels}}} {value} {rest.split(' ', 1)[1]}"


_EXEMPLAR_EDITS = {  # applied to what follows " # " on the second scrape's first exemplar bucket line
    "valid-changed": lambda ex: ex.replace('trace_id="', 'trace_id="ff'),
    "two-labels": lambda ex: ex.replace("{trace_id=", '{span_id="1",trace_id='),
    "escaped-value": lambda ex: ex.replace('trace_id="', 'trace_id="a\\"b'),
    "no-timestamp": lambda ex: ex.rsplit(" ", 1)[0],
    "bad-timestamp": lambda ex: ex.rsplit(" ", 1)[0] + " 12x",
    "inf-timestamp": lambda ex: ex.rsplit(" ", 1)[0] + " +Inf",
    "nan-value": lambda ex: _set_value(ex, "NaN"),
    "bad-value": lambda ex: _set_value(ex, "1_0"),
    "name-label": lambda ex: ex.replace("trace_id", "__name__"),
    "too-long": lambda ex: ex.replace('trace_id="', 'trace_id="' + "x" * 120),
    "empty-labels": lambda ex: "{}" + ex.split("}", 1)[1],
    "bad-label-name": lambda ex: ex.replace("trace_id", "9trace"),
    "two-spaces": lambda ex: ex.replace("} ", "}  ", 1),
}


@pytest.mark.parametrize("edit", list(_EXEMPLAR_EDITS))
def test_warm_parse_of_an_edited_exemplar_equals_a_fresh_parse(edit: str) -> None:
    first, second = _body(60), _body(61)
    line = next(x for x in second.split("\n") if x.startswith("latency_seconds_bucket") and " # " in x)
    head, _, exemplar = line.partition(" # ")
    second = _replace_first(second, line, f"{head} # {_EXEMPLAR_EDITS[edit](exemplar)}")
    warm = TargetParser()
    warm.parse(first, OM_TYPE)
    try:
        expected = parse(second, OM_TYPE)
    except ParseError as exc:
        assert edit not in ("valid-changed", "two-labels", "no-timestamp", "nan-value")
        with pytest.raises(ParseError) as raised:
            warm.parse(second, OM_TYPE)
        assert (raised.value.line_no, str(raised.value)) == (exc.line_no, str(exc))
        return
    got = warm.parse(second, OM_TYPE)
    assert_same_parse(got, expected)
    assert got.exemplars == expected.exemplars or edit == "nan-value"  # NaN != NaN
    if edit in ("valid-changed", "two-labels", "no-timestamp"):
        assert_same_as_reference(second, OM_TYPE)


def test_exemplar_on_a_gauge_after_a_warm_scrape_is_refused() -> None:
    first = _body(30)
    second = _replace_first(first, "temperature 21.5", 'temperature 21.5 # {trace_id="a"} 1.0')
    warm = TargetParser()
    warm.parse(first, OM_TYPE)
    with pytest.raises(ParseError) as raised:
        parse(second, OM_TYPE)
    with pytest.raises(ParseError) as warm_raised:
        warm.parse(second, OM_TYPE)
    assert (warm_raised.value.line_no, str(warm_raised.value)) == (raised.value.line_no, str(raised.value))


def test_successive_exemplar_scrapes_equal_fresh_parses_and_reference() -> None:
    warm = TargetParser()
    for n in (40, 41, 45, 46, 90, 91):
        body = _body(n)
        got = warm.parse(body, OM_TYPE)
        assert_same_parse(got, parse(body, OM_TYPE))
        assert got.exemplars == parse(body, OM_TYPE).exemplars
        assert len(got.exemplars) > 10
        assert_same_as_reference(body, OM_TYPE)
