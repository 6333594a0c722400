"""The C label-set reader (``native.c.label_sets``, _native.c) against the Python path.

A first scrape's label sets (``name{labels}``) are read in C when they are in the plain
shape, and by the Python path otherwise. For every text C reads, it must find what
``_Full.label_set`` finds (labels sorted and unescaped, and which bound label holds a number);
every other text, valid or not, it must leave to Python. Whole bodies must parse alike with
and without it, errors included.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trimtab.collectors.exposition import (
    OPENMETRICS,
    TEXT,
    ParseError,
    forget_shared_caches,
    native,
    parse,
)
from trimtab.collectors.exposition.body import _tail
from trimtab.collectors.exposition.full import _Full
from trimtab.collectors.exposition.grammar import _BOUND_OK, _NONE, _Floats

from tests.collectors.exposition.conftest import require_native
from tests.collectors.exposition.test_exposition import OM_TYPE

TEXT_TYPE = "text/plain; version=0.0.4"


@pytest.fixture(autouse=True)
def _built() -> None:
    require_native()


def _python(tail: str, fmt: str) -> object:
    """What the Python path finds for one ``labels}`` text (_BAD for no label set)."""
    full = _Full(fmt, _Floats(), {}, {})
    return _tail(full, tail)


def _c(tails: list[str], fmt: str) -> list[object]:
    return native.c.label_sets(tails, fmt == OPENMETRICS, _NONE, _BOUND_OK["le"], _BOUND_OK["quantile"])  # type: ignore[union-attr]


PLAIN = [
    'a="1"}', 'route="/users/{id}",method="GET"}', 'z="1",a="2",m="3"}', 'le="0.5"}', 'le="+Inf",route="/"}',
    'route="/",le="1e-3"}', 'quantile="0.99"}', 'le="NaN"}', 'le="nan"}', 'le="x"}', 'le="Infinity"}',
    'quantile="-inf",x="y"}', 'le="1",quantile="x"}', 'handle="1"}', 'ale="1"}',
    'v="q\\"uote"}', 'v="back\\\\slash"}', 'v="new\\nline"}', 'v="tab\\there"}', 'v="\\\\n"}', 'v="\\\\"}',
    'v="ünï \\"cödé\\" {x}"}', 'v=""}', 'v="}"}', 'v="a,b=c"}', 'v="#"}', 'v=" "}', '_="1"}', 'A9_b="1"}',
    'v="1",}',  # a trailing comma: 0.0.4 allows it, OpenMetrics does not
]
NOT_PLAIN = [
    "}", "", 'a="1"', 'a = "1"}', ' a="1"}', 'a="1" }', 'a="1",,b="2"}', 'a="1",b="2",}x', '9a="1"}',
    'a-b="1"}', '__name__="x"}', 'a="1",a="2"}', 'a="1}', 'a="1\\"}', 'a=1}', 'a="1"b="2"}', ',a="1"}',
    'le="1",quantile="2"}', 'a="\ud800"}', 'ä="1"}', 'a="1",}}',
]


@pytest.mark.parametrize("fmt", [TEXT, OPENMETRICS])
def test_plain_label_sets_are_read_as_the_python_path_reads_them(fmt: str) -> None:
    got = _c(PLAIN, fmt)
    for tail, found in zip(PLAIN, got):
        if found is None:
            assert fmt == OPENMETRICS and tail.endswith(',}'), tail  # only the trailing comma is left
            continue
        assert found == _python(tail, fmt), tail


@pytest.mark.parametrize("fmt", [TEXT, OPENMETRICS])
def test_every_other_text_is_left_to_the_python_path(fmt: str) -> None:
    assert _c(NOT_PLAIN, fmt) == [None] * len(NOT_PLAIN)


def test_arguments_that_do_not_fit_are_refused() -> None:
    with pytest.raises(TypeError):
        native.c.label_sets(('a="1"}',), False, (), ("le",), ("quantile",))  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        native.c.label_sets([b'a="1"}'], False, (), ("le",), ("quantile",))  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        native.c.label_sets(['a="1"}'], False, ())  # type: ignore[union-attr]


_names = st.sampled_from(["a", "b", "le", "quantile", "route", "_x", "__name__", "9", "a-b", "", "ä"])
_values = st.one_of(
    st.sampled_from(["0.5", "+Inf", "-Inf", "NaN", "1e3", "1_0", "", "x", "1.", ".5", "inf", "nan"]),
    st.text(alphabet='ab\\"n{},= \tü\u00e9', max_size=6),
)
_seps = st.sampled_from([",", ",", ",", ", ", " ,", ",,", ""])


@st.composite
def _tails(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(_names, _values), max_size=4))
    parts = [f'{name}{draw(st.sampled_from(["=", "=", " = "]))}"{value}"' for name, value in pairs]
    text = ""
    for k, part in enumerate(parts):
        text += (draw(_seps) if k else "") + part
    return text + draw(st.sampled_from(["}", "}", ",}", "", "}}"]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tails=st.lists(_tails(), min_size=1, max_size=6), fmt=st.sampled_from([TEXT, OPENMETRICS]))
def test_any_label_set_is_read_as_the_python_path_reads_it_or_left_to_it(tails: list[str], fmt: str) -> None:
    for tail, found in zip(tails, _c(tails, fmt)):
        if found is not None:
            assert found == _python(tail, fmt), tail


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tails=st.lists(_tails(), min_size=1, max_size=5), fmt=st.sampled_from([TEXT, OPENMETRICS]))
def test_any_body_parses_alike_with_and_without_the_c_label_sets(tails: list[str], fmt: str) -> None:
    """A first scrape of a histogram and a counter whose samples carry these label sets: the
    same parse, or the same error, both ways (the whole-body path and the per-line loop)."""
    lines = ["# TYPE h histogram"]
    lines += [f"h_bucket{{{tail} {k}" for k, tail in enumerate(tails)]
    lines += ["# TYPE c counter"] + [f"c{'_total' if fmt == OPENMETRICS else ''}{{{tail} 1" for tail in tails]
    text = "\n".join(lines + (["# EOF"] if fmt == OPENMETRICS else [])) + "\n"
    content_type = OM_TYPE if fmt == OPENMETRICS else TEXT_TYPE
    outcomes = []
    for on in (True, False):
        forget_shared_caches()
        saved, native.ENABLED = native.ENABLED, on
        try:
            expo = parse(text, content_type)
            outcomes.append(("ok", expo.columns()[:2], [repr(v) for v in expo.columns()[2]]))
        except ParseError as exc:
            outcomes.append(("error", str(exc)))
        finally:
            native.ENABLED = saved
    assert outcomes[0] == outcomes[1], text


def test_reading_a_label_set_leaves_no_utf8_copy_in_the_cached_text() -> None:
    """The tails are the shared caches' keys, kept for the life of the process: reading one
    in C must not leave a UTF-8 copy of a non-ASCII one inside it (twice its memory)."""
    tail = "route=\"" + "é" * 200 + "\"}"
    before = sys.getsizeof(tail)
    assert _c([tail], TEXT)[0] == ((("route", "é" * 200),), ())
    assert sys.getsizeof(tail) == before
