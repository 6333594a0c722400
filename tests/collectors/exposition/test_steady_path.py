"""The value-only path on a target scraped again: new values checked together, exemplar tails
cut by ``str.split`` (``grammar.om_exemplar_rows``), anything else left to the grammar.

A warm parser (it has read the previous scrape) must return what a fresh parse returns, and
raise the same error on the same line, and keep nothing of a failed scrape: exemplars that
change, appear and disappear, timestamps that come and go, series added or removed in the
middle, escapes in label values, NaN and infinities, and tokens ``float()`` takes but the
formats do not (``1_0``, ``+nan``, non-ASCII digits).
"""

from __future__ import annotations

import math

import pytest
from trimtab.collectors.exposition import (
    Exposition,
    ParseError,
    TargetParser,
    grammar,
    native,
    parse,
)
from trimtab.collectors.exposition import body as expo_body
from trimtab.collectors.exposition.grammar import _Floats, _numbers
from trimtab.collectors.exposition.types import _NUM, _VALUE

from tests.collectors.exposition.test_exposition import (
    OM_TYPE,
    assert_same_as_reference,
    assert_same_parse,
)

# every test twice: with the parser's C helpers, then with its Python paths alone (conftest)
pytestmark = pytest.mark.usefixtures("reader")

TEXT_TYPE = "text/plain; version=0.0.4"
_PATH_B = r'/b \"q\" \\ x\ny'  # escaped quote, backslash and newline in a label value


def _om(a: str = "7", b: str = "3", tails: tuple[str, ...] | None = None, temp: str = "21.5",
        extra: str = "") -> str:
    """An OpenMetrics body: counter and histogram lines carrying exemplars, gauges with NaN/Inf."""
    tails = tails or (' # {trace_id="aa01"} 1.0 1796584979.3592796',
                      ' # {trace_id="aa02"} 0.5 1796584979.36',
                      ' # {trace_id="aa03"} 0.05 1796584979.4',
                      ' # {trace_id="aa04"} 3.0 1796584979.5')
    return "\n".join([
        "# TYPE req counter",
        "# HELP req Requests.",
        f'req_total{{path="/a"}} {a}{tails[0]}',
        'req_created{path="/a"} 1.7965849754506183e+09',
        f'req_total{{path="{_PATH_B}"}} {b}{tails[1]}',
        f'req_created{{path="{_PATH_B}"}} 1.79658497545e+09',
        "# TYPE lat histogram",
        f'lat_bucket{{le="0.1"}} {a}{tails[2]}',
        f'lat_bucket{{le="+Inf"}} {int(a) + int(b)}{tails[3]}',
        f"lat_count {int(a) + int(b)}",
        "lat_sum 1.25",
        *([extra] if extra else []),
        "# TYPE temp gauge",
        f'temp{{room="x"}} {temp}',
        'temp{room="y"} NaN',
        'temp{room="z"} +Inf',
        'temp{room="w"} -Inf',
        "# EOF",
        "",
    ])


def _text(temp: str = "21.5", stamp: str = "", extra: str = "") -> str:
    return "\n".join([
        "# HELP req Requests.",
        "# TYPE req counter",
        f'req{{path="{_PATH_B}"}} 12',
        'req{path="/a"} 7',
        *([extra] if extra else []),
        "# TYPE temp gauge",
        f'temp{{room="x"}} {temp}{stamp}',
        'temp{room="y"} NaN',
        'temp{room="z"} +Inf',
        'temp{room="w"} -Inf',
        "",
    ])


def _exemplars(expo: Exposition) -> dict[int, tuple[object, ...]]:
    """Exemplars with NaN made comparable."""
    return {k: (e.labels, repr(e.value), repr(e.timestamp)) for k, e in expo.exemplars.items()}


def _line_by_line(text: str, content_type: str) -> Exposition:
    """A fresh parse by the per-line loop, every line by the full grammar: it shares no code
    with the bulk readers of values and exemplars (the whole-body path does)."""
    enabled, expo_body.ENABLED = expo_body.ENABLED, False
    try:
        return parse(text, content_type)
    finally:
        expo_body.ENABLED = enabled


def _same(warm: TargetParser, text: str, content_type: str) -> Exposition:
    """The warm parse of ``text`` equals fresh ones (columns, metadata, exemplars)."""
    got = warm.parse(text, content_type)
    for expected in (_line_by_line(text, content_type), parse(text, content_type)):
        assert_same_parse(got, expected)
        assert _exemplars(got) == _exemplars(expected)
    return got


@pytest.fixture
def split_rows(monkeypatch: pytest.MonkeyPatch, reader: str) -> list[bool]:
    """What each ``om_exemplar_rows`` call answered (True: it read the tails). The Python
    path's reader: with the C reader on, the warm parse reads the tails in C and never calls it."""
    monkeypatch.setattr(native, "ENABLED", False)
    answers: list[bool] = []
    real = grammar.om_exemplar_rows

    def spy(*args: object) -> bool:
        answers.append(real(*args))  # type: ignore[arg-type]
        return answers[-1]

    monkeypatch.setattr(grammar, "om_exemplar_rows", spy)
    return answers


def test_changed_exemplars_take_the_split_path_and_equal_fresh_and_reference(split_rows: list[bool]) -> None:
    warm = TargetParser()
    warm.parse(_om(), OM_TYPE)
    split_rows.clear()
    second = _om("8", "4", (' # {trace_id="bb01"} 2.0 1796584980.1',
                            ' # {trace_id="bb02"} NaN 1796584980.25',
                            ' # {span_id="bb03"} -0.5 1.8e9',
                            ' # {trace_id=""} +Inf 1796584980'))
    got = _same(warm, second, OM_TYPE)
    assert split_rows[0] is True  # the warm parse (a fresh parse of this body may call it too)
    assert got.exemplars[0].labels == (("trace_id", "bb01"),)  # samples 1 and 3 are _created
    assert math.isnan(got.exemplars[2].value) and got.exemplars[5].value == math.inf
    assert got.exemplars[4].labels == (("span_id", "bb03"),) and got.exemplars[4].timestamp == 1.8e9
    assert_same_as_reference(second, OM_TYPE)


def test_exemplars_without_timestamps_take_the_split_path(split_rows: list[bool]) -> None:
    warm = TargetParser()
    warm.parse(_om(), OM_TYPE)
    split_rows.clear()
    _same(warm, _om("9", "1", (' # {trace_id="c1"} 1.0', ' # {trace_id="c2"} 2', ' # {trace_id="c3"} 3',
                               ' # {trace_id="c4"} 4e-3')), OM_TYPE)
    assert split_rows[0] is True  # the warm parse (a fresh parse of this body may call it too)


@pytest.mark.parametrize("tails", [
    (' # {trace_id="d1"} 1.0', ' # {trace_id="d2"} 2 1796584980', "", ' # {a="1",b="2"} 1'),  # mixed shapes
    ("", "", "", ""),  # every exemplar gone
    (' # {trace_id="e\\"1"} 1.0 2', ' # {trace_id="e 2"} 1 2', ' # {trace_id="e=\\"3"} 1 2',
     ' # {trace_id="e}4"} 1 2'),  # escapes, blanks, quotes and braces in the exemplar label value
    (" 1796584980.5", " 1796584980.5", " 1796584981", " 1796584981"),  # timestamps, no exemplars
    (' 1796584980.5 # {trace_id="f1"} 1.0 2', ' # {trace_id="f2"} 1 2', "", ""),  # both
    (' # {} 1.0 2', ' # {} 1 2', ' # {} 1 2', ' # {} 1 2'),  # empty exemplar label sets
], ids=["mixed", "gone", "odd-label-values", "timestamps", "timestamp-and-exemplar", "no-labels"])
def test_other_tails_after_a_warm_scrape_equal_a_fresh_parse(tails: tuple[str, ...]) -> None:
    warm = TargetParser()
    warm.parse(_om(), OM_TYPE)
    _same(warm, _om("8", "4", tails), OM_TYPE)
    _same(warm, _om(), OM_TYPE)  # and back
    # prometheus_client takes no escape in an exemplar label value, nor a timestamp on a
    # counter's _total without one on its _created
    if "\\" not in "".join(tails) and all(tail[:2] in ("", " #") for tail in tails):
        assert_same_as_reference(_om("8", "4", tails), OM_TYPE)


def test_exemplar_appearing_on_a_line_that_had_none() -> None:
    plain = ("", "", "", "")
    warm = TargetParser()
    warm.parse(_om(tails=plain), OM_TYPE)
    got = _same(warm, _om("8", "4"), OM_TYPE)
    assert len(got.exemplars) == 4
    assert not _same(warm, _om("9", "4", plain), OM_TYPE).exemplars


@pytest.mark.parametrize("label", ["x" * 120, "x" * 119, "x" * 121], ids=["128", "127", "129"])
def test_exemplar_label_length_limit_is_the_grammars(label: str) -> None:
    """128 characters of label names and values are allowed, 129 are not (trace_id is 8)."""
    warm = TargetParser()
    warm.parse(_om(), OM_TYPE)
    second = _om("8", "4", (f' # {{trace_id="{label}"}} 1.0 2', ' # {trace_id="a"} 1 2', "", ""))
    try:
        expected = _line_by_line(second, OM_TYPE)
    except ParseError as exc:
        assert len(label) == 121
        with pytest.raises(ParseError) as raised:
            warm.parse(second, OM_TYPE)
        assert (raised.value.line_no, str(raised.value)) == (exc.line_no, str(exc))
        return
    got = warm.parse(second, OM_TYPE)
    assert_same_parse(got, expected)
    assert _exemplars(got) == _exemplars(expected)


@pytest.mark.parametrize("series", ['temp{room="v"} 1', 'lat_bucket{le="0.5"} 8'], ids=["gauge", "bucket"])
def test_series_added_or_removed_in_the_middle(series: str) -> None:
    warm = TargetParser()
    if series.startswith("temp"):
        with_series = _om().replace("# EOF", f"{series}\n# EOF")
    else:
        with_series = _om().replace('lat_bucket{le="+Inf"}', f'{series}\nlat_bucket{{le="+Inf"}}')
    warm.parse(_om(), OM_TYPE)
    _same(warm, with_series.replace(" 7", " 9", 1), OM_TYPE)
    _same(warm, _om("10", "5"), OM_TYPE)  # removed again
    # as many lines as before, one series swapped for another in the middle
    swapped = _om("11", "6").replace('temp{room="y"} NaN', 'temp{room="q"} NaN')
    _same(warm, swapped, OM_TYPE)
    text_warm = TargetParser()
    text_warm.parse(_text(), TEXT_TYPE)
    _same(text_warm, _text("22", extra='req{path="/c"} 1'), TEXT_TYPE)
    _same(text_warm, _text("23"), TEXT_TYPE)


@pytest.mark.parametrize("content_type", [TEXT_TYPE, OM_TYPE])
def test_timestamp_appearing_and_disappearing(content_type: str) -> None:
    body = _text if content_type == TEXT_TYPE else (lambda temp, stamp="": _om(temp=temp + stamp))
    stamp = " 1796584980500" if content_type == TEXT_TYPE else " 1796584980.5"
    warm = TargetParser()
    warm.parse(body("21.5"), content_type)
    got = _same(warm, body("21.7", stamp), content_type)
    assert got.columns()[3] is not None
    got = _same(warm, body("21.9"), content_type)
    assert got.columns()[3] is None
    assert_same_as_reference(body("21.7", stamp), content_type)


@pytest.mark.parametrize("content_type", [TEXT_TYPE, OM_TYPE])
def test_nan_and_infinities_as_new_values(content_type: str) -> None:
    body = _text if content_type == TEXT_TYPE else (lambda temp: _om(temp=temp))
    warm = TargetParser()
    warm.parse(body("1"), content_type)
    for value in ("NaN", "+Inf", "-Inf", "nan", "Inf", "-inf", "+infinity", "1e309", "-0", ".5", "5."):
        got = _same(warm, body(value), content_type)
        assert repr(got.columns()[2][-4]) == repr(float(value))


_BAD_VALUES = ["1_0", "+nan", "-NaN", "0x1", "1e", "+", "", "١", " 1", "1\t", "1 2 3", "1,5", "∞"]
_BAD_TAILS = [' # {trace_id="a"} 1_0 2', ' # {trace_id="a"} +nan 2', ' # {trace_id="a"} 1 Inf',
              ' # {trace_id="a"} 1 1_0', ' # {trace_id="a"} 1 NaN', ' # {trace_id="a"} 1 ١', ' # {trace_id="a"}',
              ' # {trace_id="a"} 1 2 3', ' # {__name__="a"} 1 2', ' # {9a="a"} 1 2',
              ' # {trace_id="a"}  1 2', ' # trace_id="a" 1 2', ' #  {trace_id="a"} 1 2', ' # {trace_id=a} 1 2',
              ' ## {trace_id="a"} 1 2', ' 1 {trace_id="a"} 1 2', ' # {trace_id="a"}x 1 2',
              ' # {trace_id="a\\"} 1 2', ' # {trace_id="a""} 1 2', ' # {trace_id="a",} 1 2']


@pytest.mark.parametrize("content_type", [TEXT_TYPE, OM_TYPE])
@pytest.mark.parametrize("bad", _BAD_VALUES)
def test_malformed_value_after_a_cached_layout(content_type: str, bad: str) -> None:
    body = _text if content_type == TEXT_TYPE else (lambda temp: _om(temp=temp))
    _same_error_and_nothing_kept(body("1"), body(bad), body("2"), content_type)


@pytest.mark.parametrize("tail", _BAD_TAILS)
def test_malformed_exemplar_after_a_cached_layout(tail: str) -> None:
    tails = (' # {trace_id="z1"} 1.0 1796584980.1', tail, ' # {trace_id="z3"} 1 2', ' # {trace_id="z4"} 1 2')
    _same_error_and_nothing_kept(_om(), _om("8", "4", tails), _om("9", "4"), OM_TYPE)


def _same_error_and_nothing_kept(first: str, bad: str, after: str, content_type: str) -> None:
    """``bad`` fails warm as it fails fresh (same line, same message), or, if the grammar
    allows it after all (blanks in 0.0.4), parses the same; the warm parser then reads
    ``after`` and ``first`` as a fresh parse would."""
    warm = TargetParser()
    warm.parse(first, content_type)
    try:
        _line_by_line(bad, content_type)
    except ParseError as fresh:
        for parser in (warm.parse, parse):  # warm, and cold through the whole-body path
            with pytest.raises(ParseError) as raised:
                parser(bad, content_type)
            assert (raised.value.line_no, str(raised.value)) == (fresh.line_no, str(fresh))
    else:
        assert content_type == TEXT_TYPE, "every one of these is wrong in OpenMetrics"
        _same(warm, bad, content_type)
    _same(warm, after, content_type)
    _same(warm, first, content_type)


_TOKENS = ["0", "1", "-1", "+1", "1.", ".5", "1.5e3", "1E-3", "1e+05", "NaN", "nan", "nAn", "+Inf", "-inf",
           "Infinity", "-INFINITY", "inf", "1_0", "+nan", "-NaN", "0x1", "1e", "e1", "+", "-", ".", "", "١",
           " 1", "1 ", "1\t", "\t1", "infinit", "nan1", "1..2", "1e5.5", "--1", "1e309", "0001", "1\r", "٣.5",
           "1\u00a0", "ⅷ", "2²", "1.7965849754506183e+09", "1796584979.3592796"]


def test_learn_takes_exactly_the_grammars_values() -> None:
    floats = _Floats()
    floats.learn(_TOKENS)
    for token in _TOKENS:
        valid = _VALUE.fullmatch(token) is not None
        assert (token in floats) == valid, token
        if valid:
            assert repr(floats[token]) == repr(float(token))
    floats = _Floats()
    floats.learn([t for t in _TOKENS if _VALUE.fullmatch(t) is not None])
    assert len(floats) == sum(_VALUE.fullmatch(t) is not None for t in _TOKENS)


@pytest.mark.parametrize("token", _TOKENS)
def test_numbers_answer_as_the_grammar_does(token: str) -> None:
    """One bad token makes the whole batch None; timestamps take no NaN or infinity."""
    good = ["1", "2.5"]
    for stamps, pattern in ((False, _VALUE.pattern), (True, _NUM)):
        valid = __import__("re").fullmatch(pattern, token) is not None
        got = _numbers([*good, token], stamps)
        assert (got is not None) == valid, (token, stamps)
        if got is not None:
            assert repr(got[-1]) == repr(float(token))


def test_exemplar_on_a_gauge_among_valid_ones_after_a_cached_layout() -> None:
    _same_error_and_nothing_kept(_om(), _om("8", "4", temp='21.5 # {trace_id="g"} 1 2'), _om("9", "4"), OM_TYPE)


@pytest.mark.parametrize("tail", [' # {trace_id="a"}', ' # {trace_id="a"} 1 2 3', ' {trace_id="a"} 1 2', " # 1 2"])
def test_malformed_exemplar_on_every_line_after_a_cached_layout(tail: str) -> None:
    """Every tail of one wrong shape: the same number of cells in each row proves nothing."""
    _same_error_and_nothing_kept(_om(), _om("8", "4", (tail,) * 4), _om("9", "4"), OM_TYPE)


def test_new_plain_values_after_an_exemplar_still_take_the_split_path(split_rows: list[bool]) -> None:
    """A target whose values barely move (values read one by one): the pass stops at the first
    exemplar; the new plain values after it are learnt too, so the tails alone are left."""
    warm = TargetParser()
    warm.parse(_om(), OM_TYPE)
    warm.parse(_om(), OM_TYPE)  # nothing new: the next values are read one by one
    split_rows.clear()
    _same(warm, _om("8", "4", temp="22.5"), OM_TYPE)
    assert split_rows[0] is True
