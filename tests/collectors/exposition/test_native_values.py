"""The C value reader (``native.c.read_values``, _native.c) against the Python value-only path.

A warm parser (it has read the target's last scrape) reads the next scrape's values in C
when nothing but the values changed. It must answer exactly as the Python path does: the
same floats bit for bit (its own decimal reader for short numbers, Clinger's fast path,
included), the same exemplars, and, on anything else, the same error or the same full
parse. Written with the bad input first: numbers the grammar refuses, edited lines, CRLF,
lone surrogates, garbage arguments.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trimtab.collectors.exposition import (
    Exemplar,
    Exposition,
    ParseError,
    TargetParser,
    forget_shared_caches,
    native,
    parse,
)
from trimtab.collectors.exposition.types import _VALUE

from tests.collectors.exposition.conftest import require_native
from tests.collectors.exposition.test_exposition import OM_TYPE

TEXT_TYPE = "text/plain; version=0.0.4"

TEXT_BASE = (
    '# HELP http_requests_total Requests "served" \\\\ per route\\nand method\n'
    "# TYPE http_requests_total counter\n"
    'http_requests_total{method="GET",route="/users/{id}"} 1027\n'
    'http_requests_total{method="POST",route="ünï \\"cödé\\" {x}"} 3\n'
    "\n"
    "# TYPE temperature gauge\n"
    "temperature NaN\n"
    "# TYPE latency_seconds histogram\n"
    'latency_seconds_bucket{le="0.1"} 5\n'
    'latency_seconds_bucket{le="+Inf"} 7\n'
    "latency_seconds_sum 1.7966671580736918e+09\n"
    "latency_seconds_count 7\n"
)
OM_BASE = (
    "# TYPE http_requests counter\n"
    "# HELP http_requests Requests.\n"
    'http_requests_total{route="/a"} 7 # {trace_id="4bf92f3577b34da6"} 1.0 1796584980.1\n'
    'http_requests_created{route="/a"} 1796584000.25\n'
    "# TYPE latency_seconds histogram\n"
    "# UNIT latency_seconds seconds\n"
    'latency_seconds_bucket{le="0.1"} 5 # {trace_id="aa01"} 0.05\n'
    'latency_seconds_bucket{le="+Inf"} 7 # {span_id="ü"} 3.5 1796584980\n'
    "latency_seconds_sum 1.5\n"
    "latency_seconds_count 7\n"
    "# TYPE temperature gauge\n"
    "temperature 21.5\n"
    "# EOF\n"
)
BASES = {"text": (TEXT_BASE, TEXT_TYPE), "openmetrics": (OM_BASE, OM_TYPE)}


@pytest.fixture(autouse=True)
def _built() -> None:
    require_native()


@contextmanager
def _values_in_c(on: bool) -> Iterator[None]:
    saved = native.ENABLED
    native.ENABLED = on
    try:
        yield
    finally:
        native.ENABLED = saved


def _bits(x: float | None) -> object:
    """A float compared bit for bit (NaN equal to NaN of the same bits, -0.0 unlike 0.0)."""
    return None if x is None else struct.pack("<d", x)


def _normalised(expo: Exposition) -> tuple[object, ...]:
    names, labels, values, stamps = expo.columns()
    exemplars = [(k, e.labels, _bits(e.value), _bits(e.timestamp), type(e) is Exemplar)
                 for k, e in expo.exemplars.items()]  # in their order: consumers iterate them
    return (tuple(names), tuple(labels), tuple(map(_bits, values)),
            None if stamps is None else tuple(map(_bits, stamps)),
            exemplars, expo.types, expo.helps, expo.units, expo.format)


def _warm(base: str, content_type: str) -> TargetParser:
    warm = TargetParser()
    warm.parse(base, content_type)
    warm.parse(base, content_type)  # the layout is built on the second scrape
    return warm


def _outcome(base: str, text: str, content_type: str, in_c: bool) -> tuple[tuple[object, ...], bool]:
    """What a warm parser returns for ``text`` (or the error it raises), and whether the C
    reader answered it."""
    forget_shared_caches()
    with _values_in_c(in_c):
        warm = _warm(base, content_type)
        memo = warm._memo  # the last scrape's values: a repeated token is taken from it
        try:
            got: tuple[object, ...] = ("ok", _normalised(warm.parse(text, content_type)))
        except ParseError as exc:
            got = ("error", str(exc))
        return got, warm._memo is not memo  # read_values made a new one


def _same_both_ways(base: str, text: str, content_type: str) -> tuple[tuple[object, ...], bool]:
    in_c, c_answered = _outcome(base, text, content_type, True)
    in_python, python_answered = _outcome(base, text, content_type, False)
    assert not python_answered  # the Python path never calls the C reader
    assert in_c == in_python, text
    return in_c, c_answered


# --- numbers ---------------------------------------------------------------------------------

EDGE_NUMBERS = [
    "9007199254740992", "9007199254740993", "9007199254740991", "18014398509481985",  # around 2^53
    "1e22", "1e23", "1e-22", "1e-23", "1.5e-23", "123456789012345678e-22", "4e22",
    "1234567890123456789", "12345678901234567890", "0.1234567890123456789",  # 19 and 20 digits
    "18446744073709551617", "18446744073709551617e-3",  # 2^64 + 1: wraps to 1 in 64 bits
    # m > 2^53: (double)m then one operation would round twice, away from float()'s answer
    "522503673857841752e-5", "757882906889920185e12", "845858274200769781e-21",
    "0.1", "0.3", "2.675", "-0", "-0.0", "+0", "0e99999", "0.000000000000000000000000001",
    "00000000000000000000000001", "1e0022", "1e00022", "5.", ".5", "5.e3", "-.5e-3", "+1E+5",
    "4.9e-324", "2.2250738585072014e-308", "1.7976931348623157e308", "1e309", "-1e309",
    "1.7966671580736918e+09", "2.57220608e+08", "0.6699999999999999",
    "Inf", "+Inf", "-inf", "infinity", "-Infinity", "NaN", "nan", "nAn",
    # refused by the grammar, several of them taken by float()
    "1_0", "+nan", "-NaN", "\u0661", "0x10", "1e", ".", "", "+", "e5", ".e5", "1.2.3", "1e5.5",
    "infinit", "nanx", "--1", "1e+-5", "inF\u00e9", "1\u00a0", "١٢",
]


@pytest.mark.parametrize("fmt", sorted(BASES))
@pytest.mark.parametrize("token", EDGE_NUMBERS)
def test_edge_numbers_read_as_the_python_path_reads_them(fmt: str, token: str) -> None:
    base, content_type = BASES[fmt]
    text = base.replace("temperature 21.5", f"temperature {token}").replace(
        "temperature NaN", f"temperature {token}")
    got, c_answered = _same_both_ways(base, text, content_type)
    if _VALUE.fullmatch(token):
        assert got[0] == "ok" and c_answered
        assert got[1][2][2 if fmt == "text" else 6] == _bits(float(token))  # the temperature
    else:
        assert got[0] == "error"


_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.17g}"),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:e}"),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda f: f"{f:.3f}"),
    st.integers(min_value=-(10 ** 25), max_value=10 ** 25).map(str),
    st.from_regex(_VALUE, fullmatch=True),
    st.text(alphabet="0123456789.eE+-_nNaAiIfFtTyY", max_size=24),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token=_numbers, fmt=st.sampled_from(sorted(BASES)))
def test_any_number_reads_as_the_python_path_reads_it(token: str, fmt: str) -> None:
    base, content_type = BASES[fmt]
    text = base.replace('le="0.1"} 5', f'le="0.1"}} {token}')
    got, c_answered = _same_both_ways(base, text, content_type)
    if _VALUE.fullmatch(token) is not None:
        assert got[0] == "ok" and c_answered
        assert got[1][2][3 if fmt == "text" else 2] == _bits(float(token))  # the first bucket


# --- lines that changed ----------------------------------------------------------------------

_EDIT_CHARS = ' #{}"\\=\n\r\t0123456789.eE+-nNaAiIfF_xé,'


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(BASES)), data=st.data())
def test_any_edit_of_a_scrape_reads_as_the_python_path_reads_it(fmt: str, data: st.DataObject) -> None:
    base, content_type = BASES[fmt]
    text = base
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 3))
        text = text[:at] + data.draw(st.text(alphabet=_EDIT_CHARS, max_size=4)) + text[at + cut:]
    _same_both_ways(base, text, content_type)


@pytest.mark.parametrize("fmt", sorted(BASES))
@pytest.mark.parametrize("edit", [
    ("# TYPE temperature gauge", "# TYPE temperature  gauge"),  # a literal line
    ("temperature ", "temperaturе "),  # a Cyrillic e in a prefix
    ('le="+Inf"', 'le="Inf"'),  # a label value
    ("latency_seconds_count 7\n", "latency_seconds_count 7\nlatency_seconds_count 8\n"),  # one more line
    ("latency_seconds_count 7\n", ""),  # one line fewer
    ("\n# TYPE temperature", "\n\n# TYPE temperature"),  # a blank line more
])
def test_a_changed_line_is_not_read_as_values(fmt: str, edit: tuple[str, str]) -> None:
    base, content_type = BASES[fmt]
    text = base.replace(*edit, 1)
    assert text != base
    got, c_answered = _same_both_ways(base, text, content_type)
    assert not c_answered
    if got[0] == "ok":  # the full parse read it: the same as a fresh parser
        assert got[1] == _normalised(parse(text, content_type))


@pytest.mark.parametrize("fmt", sorted(BASES))
def test_crlf_and_a_missing_final_newline_are_left_to_the_python_path(fmt: str) -> None:
    base, content_type = BASES[fmt]
    for text in (base.replace("\n", "\r\n"), base.rstrip("\n")):
        got, _ = _same_both_ways(base, text.replace(" 7", " 8"), content_type)
        assert got[0] == "ok"
    assert _steady_read(base, base.replace("\n", "\r\n"), content_type) is None


def _steady_read(base: str, text: str, content_type: str) -> object:
    warm = _warm(base, content_type)
    layout = warm._layout
    assert layout is not None
    return native.c.read_values(text, layout.plan, layout.kinds, len(layout.names), Exemplar, None)


def test_a_lone_surrogate_is_left_to_the_python_path() -> None:
    text = TEXT_BASE.replace("1027", "1028").replace("ünï", "\ud800")
    assert _steady_read(TEXT_BASE, text, TEXT_TYPE) is None
    _same_both_ways(TEXT_BASE, text, TEXT_TYPE)


# --- exemplars -------------------------------------------------------------------------------

@pytest.mark.parametrize("tail", [
    ' # {trace_id="' + "é" * 100 + '"} 1',  # 100 characters, 200 bytes: within the limit
    ' # {trace_id="' + "é" * 120 + '"} 1',  # 128 characters with the name: still within
    ' # {trace_id="' + "é" * 121 + '"} 1',  # 129: refused
    ' # {trace_id="' + "a" * 120 + '"} 1',
    ' # {trace_id="' + "a" * 121 + '"} 1',
    ' # {x="a\\\\b"} 1', ' # {x="a\\nb"} 1', ' # {x="a\\"} 1',  # escapes: the Python path unescapes
    ' # {__name__="x"} 1', ' # {2x="y"} 1', ' # {x="y",z="w"} 1', ' # {x="a\\"b"} 1',
    ' # {x="y"} 1 2 3', ' # {x="y"} 1 Inf', ' # {x="y"} NaN 1e3', ' # {x="y"}  1', ' # {x="y"} 1 ',
    ' # {x="y"}', ' # {x="y"} ', ' # {x=y} 1', ' #  {x="y"} 1', ' 1796584980 # {x="y"} 1',
    ' # {x="}"} 1', ' # {x="#"} 1.5e3 -17', ' # {} 1',
])
def test_exemplar_shapes_read_as_the_python_path_reads_them(tail: str) -> None:
    text = OM_BASE.replace(' # {trace_id="aa01"} 0.05', tail)
    got, _ = _same_both_ways(OM_BASE, text, OM_TYPE)
    if got[0] == "ok":
        assert got[1] == _normalised(parse(text, OM_TYPE))


def test_an_exemplar_on_a_gauge_is_an_error_both_ways() -> None:
    text = OM_BASE.replace("temperature 21.5", 'temperature 21.5 # {trace_id="x"} 1')
    got, _ = _same_both_ways(OM_BASE, text, OM_TYPE)
    assert got[0] == "error"


def test_exemplars_are_read_in_c_with_their_values() -> None:
    text = OM_BASE.replace('"4bf92f3577b34da6"} 1.0', '"ffff"} 2.5').replace("7 #", "9 #")
    got, c_answered = _same_both_ways(OM_BASE, text, OM_TYPE)
    assert c_answered
    values, exemplars = got[1][2], got[1][4]
    assert values[0] == _bits(9.0)
    assert exemplars[0] == (0, (("trace_id", "ffff"),), _bits(2.5), _bits(1796584980.1), True)
    assert exemplars[2] == (3, (("span_id", "ü"),), _bits(3.5), _bits(1796584980.0), True)


# --- the memo and the arguments --------------------------------------------------------------

def test_a_repeated_token_comes_from_the_memo_whatever_layout_it_came_from() -> None:
    warm = _warm(TEXT_BASE, TEXT_TYPE)
    layout = warm._layout
    assert layout is not None
    read = native.c.read_values
    first = read(TEXT_BASE, layout.plan, layout.kinds, len(layout.names), Exemplar, None)
    values, _, _, memo = first
    again = read(TEXT_BASE, layout.plan, layout.kinds, len(layout.names), Exemplar, memo)
    assert all(a is b for a, b in zip(again[0], values) if isinstance(a, float))  # taken, not read
    # a memo whose tokens sit at other samples (another layout's) never lends a wrong value
    shuffled = (memo[0], memo[1][16:] + memo[1][:16], memo[2][1:] + memo[2][:1])
    got = read(TEXT_BASE, layout.plan, layout.kinds, len(layout.names), Exemplar, shuffled)
    assert list(map(_bits, got[0])) == list(map(_bits, values))
    for token in ("102", "10270", "1027.0", "1027", "01027"):  # the old token's prefix, or it extended
        got = read(TEXT_BASE.replace("} 1027", "} " + token), layout.plan, layout.kinds, len(layout.names),
                   Exemplar, memo)
        assert got[0][0] == float(token)
    edited = TEXT_BASE.replace("} 1027", "} 1028")
    got = read(edited, layout.plan, layout.kinds, len(layout.names), Exemplar, memo)
    assert got[0][0] == 1028.0 and list(map(_bits, got[0][1:])) == list(map(_bits, values[1:]))


@pytest.mark.parametrize("memo", [
    "x", (b"", b""), (b"", b"", []), ("", b"", ()), (b"", b"\xff" * 16, ()),
])
def test_a_memo_that_is_not_one_is_refused_or_ignored(memo: object) -> None:
    warm = _warm(TEXT_BASE, TEXT_TYPE)
    layout = warm._layout
    assert layout is not None
    args = (TEXT_BASE, layout.plan, layout.kinds, len(layout.names), Exemplar)
    if isinstance(memo, tuple) and len(memo) == 3 and isinstance(memo[0], bytes) and isinstance(memo[2], tuple):
        got = native.c.read_values(*args, memo)  # spans past the tuple: nothing taken from it
        assert list(map(_bits, got[0])) == list(map(_bits, native.c.read_values(*args, None)[0]))
    else:
        with pytest.raises(TypeError, match="memo"):
            native.c.read_values(*args, memo)


def test_arguments_that_do_not_fit_are_refused() -> None:
    warm = _warm(TEXT_BASE, TEXT_TYPE)
    layout = warm._layout
    assert layout is not None
    read = native.c.read_values
    n = len(layout.names)
    with pytest.raises(TypeError):
        read(TEXT_BASE.encode(), layout.plan, layout.kinds, n, Exemplar, None)
    with pytest.raises(TypeError):
        read(TEXT_BASE, layout.plan, layout.kinds, n, Exemplar)
    with pytest.raises(ValueError, match="fit"):
        read(TEXT_BASE, layout.plan, layout.kinds[:-1], n, Exemplar, None)
    with pytest.raises(ValueError, match="fit"):
        read(TEXT_BASE, layout.plan, layout.kinds, len(layout.plan) + 1, Exemplar, None)
    with pytest.raises(ValueError, match="fit"):
        read(TEXT_BASE, layout.plan, layout.kinds, n, dict, None)
    assert read(TEXT_BASE, layout.plan, layout.kinds, n - 1, Exemplar, None) is None  # not this layout
    with pytest.raises(TypeError):
        read(TEXT_BASE, tuple(map(str.encode, layout.plan)), layout.kinds, n, Exemplar, None)


# --- what C hands back to Python -------------------------------------------------------------

def test_tokens_handed_back_do_not_grow_the_value_cache_without_bound() -> None:
    """Timestamps after the values (handed back to Python, which caches each token it reads):
    the cache stays within the parser's bound, with the C reader as without it."""
    def scrape(i: int) -> str:
        return "".join(f'req_total{{route="/r{j}"}} {i * 1000 + j} {1700000000000 + i}\n' for j in range(50))
    sizes = {}
    for on in (True, False):
        with _values_in_c(on):
            warm = TargetParser()
            for i in range(300):
                warm.parse(scrape(i), TEXT_TYPE)
            sizes[on] = len(warm._floats)
    assert sizes[True] <= 4 * 50 + 4096 and sizes[False] <= 4 * 50 + 4096, sizes


def test_exemplars_come_in_sample_order_when_some_are_handed_back() -> None:
    base = '# TYPE a counter\na_total{r="1"} 1 # {id="x"} 1\na_total{r="2"} 1 # {id="y"} 1\n# EOF\n'
    text = base.replace('{id="x"}', '{id="x\\\\"}')  # an escape: C hands this exemplar back
    for on in (True, False):
        forget_shared_caches()
        with _values_in_c(on):
            expo = _warm(base, OM_TYPE).parse(text, OM_TYPE)
        assert list(expo.exemplars) == [0, 1], on
        assert list(expo.exemplars) == list(parse(text, OM_TYPE).exemplars)
