"""``_Full.bound_last``: buckets and quantiles written as client_golang writes them
(``{rest,le="x"}``, ``{quantile="x"}``) read with string methods must give exactly what the
label-set grammar gives, and refuse (None) whatever it cannot vouch for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trimtab.collectors.exposition import OPENMETRICS, TEXT, ParseError
from trimtab.collectors.exposition.full import _Full
from trimtab.collectors.exposition.grammar import _Floats

from tests.collectors.exposition.test_exposition import OM_TYPE, assert_same_as_reference

# every test twice: with the parser's C helpers, then with its Python paths alone (conftest)
pytestmark = pytest.mark.usefixtures("reader")


def _full(fmt: str) -> _Full:
    return _Full(fmt, _Floats(), {}, {})


def _by_grammar(fmt: str, block: str) -> object:
    try:
        return _full(fmt).label_set(block)
    except ParseError as exc:
        return exc.reason


@pytest.mark.parametrize("block", [
    'le="0.1"', 'quantile="0.5"', 'a="b",le="1"', 'a="b",quantile="NaN"', 'a="b",le="+Inf"',
    'z="1",le="1"', 'a="b",le="x"', 'a="b",le=""', 'a="b",le="1",', 'a="b", le="1"', 'a="b",le="1" ',
    'a="b\\"",le="1"', 'a="b\\\\",le="1"', 'a="b",le="1\\""', 'le="1",le="2"', 'quantile="1",le="2"',
    'a="b",c="le=\\"1\\""', 'a="b,le="1"', 'a="b"x,le="1"', 'le="1"x', 'a="le=",le="2"',
])
@pytest.mark.parametrize("fmt", [TEXT, OPENMETRICS])
def test_bound_last_equals_the_grammar_or_declines(block: str, fmt: str) -> None:
    found = _full(fmt).bound_last("x{" + block + "}", 1)
    if found is not None:
        assert found == _by_grammar(fmt, block)


_PIECES = st.sampled_from(['le="', 'quantile="', 'a="', 'z="', '"', ",", "\\", "1", "0.5", "NaN", " ", "=", "x"])


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(_PIECES, max_size=10).map("".join), st.sampled_from([TEXT, OPENMETRICS]))
def test_fuzz_bound_last_never_disagrees_with_the_grammar(block: str, fmt: str) -> None:
    found = _full(fmt).bound_last("x{" + block + "}", 1)
    if found is not None:
        assert found == _by_grammar(fmt, block)


def test_client_golang_spelling_equals_reference() -> None:
    lines = ["# HELP h Latency.", "# TYPE h histogram"]
    for handler in ("/a", "/b"):
        lines += [f'h_bucket{{handler="{handler}",le="{le}"}} {k}' for k, le in enumerate(("0.1", "1", "+Inf"))]
        lines += [f'h_sum{{handler="{handler}"}} 1.5', f'h_count{{handler="{handler}"}} 2']
    lines += ["# HELP s Pauses.", "# TYPE s summary"]
    lines += [f's{{quantile="{q}"}} {q}' for q in ("0", "0.5", "1")] + ["s_sum 3", "s_count 3"]
    text = "\n".join(lines) + "\n"
    assert_same_as_reference(text)
    assert_same_as_reference(text + "# EOF\n", OM_TYPE)


@pytest.mark.parametrize("text", [
    'g{le=",a",z="1"} 1\n',
    'g{quantile=",",z="1"} 2\n',
    'g{le=",",z=","} 3\n',
    "# TYPE h histogram\n" + "".join(f'h_bucket{{le="{le}",a=",{i}"}} {k}\n' for i in range(40)
                                     for k, le in enumerate(("0.1", "1", "+Inf"))),
], ids=["le", "quantile", "both commas", "bucket runs"])
@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_a_bound_label_value_that_starts_with_a_comma_is_read_as_prometheus_client_reads_it(
        text: str, openmetrics: bool) -> None:
    # The bound pair was cut at the first '",' of the label set, the end of the value's
    # opening quote: 'le=",a"' was refused as a malformed label set.
    assert_same_as_reference(text + "# EOF\n" if openmetrics else text,
                             OM_TYPE if openmetrics else None)


@pytest.mark.parametrize("labels", [
    'a=",le="', 'x="1",b=",quantile="', 'z="x\\",le="', 'le=",quantile="', 'a="le=\\"1\\""',
])
@pytest.mark.parametrize("content_type", [None, OM_TYPE])
def test_a_bound_label_written_inside_a_value_is_part_of_the_value(labels: str, content_type: str | None) -> None:
    """``,le="`` inside a quoted value is no bound label: the label set is valid, the same on
    every path (the whole-body path, the per-line loop) and as prometheus_client reads it."""
    om = content_type == OM_TYPE
    head = "# TYPE m gauge\n"
    short = head + f"m{{{labels}}} 1\n" + ("# EOF\n" if om else "")
    long_ = head + f"m{{{labels}}} 1\n" + "".join(f'm{{i="{i}"}} {i}\n' for i in range(60)) + ("# EOF\n" if om else "")
    for text in (short, long_):
        assert_same_as_reference(text, content_type)


@pytest.mark.parametrize("block", ['le = "1"', 'le="1" ', ' le="1"', 'le\t=\t"1"', 'route="/", le = "0.5"'])
def test_a_bucket_bound_written_with_blanks_is_numeric(block: str) -> None:
    """0.0.4 allows blanks around ``=`` and after commas: ``le = "1"`` is a bucket's bound."""
    text = f'# TYPE h histogram\nh_bucket{{{block}}} 1\nh_bucket{{le="+Inf"}} 2\nh_sum 1\nh_count 2\n'
    many = text + "".join(f'# TYPE g{i} gauge\ng{i}{{le = "{i}"}} {i}\n' for i in range(40))  # whole-body path
    long_ = text + "".join(f'h_bucket{{le="{i}",x="{i}"}} {i}\n' for i in range(60))  # the per-line loop
    for body in (text, many, long_):
        expo = assert_same_as_reference(body)
        assert dict(expo.samples[0].labels)["le"] in ("1", "0.5")
