"""The whole-body first-scrape path (``collectors/exposition/body.py``) against the per-line loop.

Differential: random valid and broken bodies (``random`` with fixed seeds) and one-character
mutations of the corpus bodies, in 0.0.4 and OpenMetrics. Whenever the body path accepts a
body, the per-line loop must give the same columns, metadata, exemplars and steady-state
layout; whenever the per-line loop raises, the body path must decline. Through
``TargetParser`` (body path forced on for every body) errors keep their line and message.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from trimtab.collectors.exposition import ParseError, TargetParser
from trimtab.collectors.exposition import body as expo_body
from trimtab.collectors.exposition.full import _Full
from trimtab.collectors.exposition.grammar import _Floats, _split_lines
from trimtab.collectors.exposition.types import detect_format

# every test twice: with the parser's C helpers, then with its Python paths alone (conftest)
pytestmark = pytest.mark.usefixtures("reader")

CORPUS = Path(__file__).parent / "corpus"
OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_VALUES = ["0", "1", "2.5", "-3e-2", "NaN", "+Inf", "-Inf", "1e+06", "17.0", "x", "", "0x1", "1 2", "1 # {a=\"b\"} 2"]
_LABEL_VALUES = ["a", "/x/{id}", "b c", 'q\\"u', "l\\\\n", "e\\n", "brace}{,=", "", "0.5", ",le=\"1\""]
_HELPS = ["help me", "a \\\\ b", "esc \\n x", 'quote " x']
_TYPES_TEXT = ["counter", "gauge", "untyped", "summary", "histogram"]
_TYPES_OM = ["counter", "gauge", "unknown", "summary", "histogram", "info", "stateset", "gaugehistogram"]


def _same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN, through tuples and lists."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _labels(rng: random.Random, bound: str | None, front: bool) -> str:
    pairs = [f'{rng.choice("abxyz_")}{rng.choice(["", "2", "route"])}="{rng.choice(_LABEL_VALUES)}"'
             for _ in range(rng.randrange(0, 3))]
    if bound is not None:
        pair = f'{bound}="{rng.choice(["0.1", "1", "+Inf", "NaN", "x", "0.25"])}"'
        pairs.insert(0 if front else len(pairs), pair)
    if not pairs:
        return rng.choice(["", "{}"])
    return "{" + ",".join(pairs) + rng.choice(["}", "}", "}", ",}"])


def _random_body(rng: random.Random, om: bool) -> str:
    lines = []
    for f in range(rng.randrange(1, 7)):
        name = rng.choice(["fam", "req", "lat", "x", "a_b"]) + str(f)
        typ = rng.choice(_TYPES_OM if om else _TYPES_TEXT)
        comments = [f"# HELP {name} {rng.choice(_HELPS)}",
                    f"# TYPE {name} {typ}"]
        if om and rng.random() < 0.2:
            comments.append(f"# UNIT {name} {rng.choice(['seconds', 'bytes', ''])}")
        rng.shuffle(comments)
        lines += comments[: rng.randrange(0, len(comments) + 1)] if rng.random() < 0.2 else comments
        front = rng.random() < 0.5
        suffixes = {"histogram": ["_bucket", "_bucket", "_count", "_sum"], "summary": ["", "_count", "_sum"],
                    "counter": ["_total"] if om else [""], "gaugehistogram": ["_bucket", "_gcount"],
                    "info": ["_info"]}.get(typ, [""])
        for _ in range(rng.randrange(0, 6)):
            suffix = rng.choice(suffixes)
            bound = "le" if suffix == "_bucket" else "quantile" if typ == "summary" and suffix == "" else None
            value = rng.choice(_VALUES[:9]) if rng.random() < 0.95 else rng.choice(_VALUES)
            line = f"{name}{suffix}{_labels(rng, bound, front)} {value}"
            if om and rng.random() < 0.15:
                trace, xv = f"{rng.getrandbits(32):x}", rng.choice(["0.5", "1", "NaN"])
                line += ' # {trace_id="' + trace + '"} ' + xv + rng.choice(["", " 1700000000.5"])
            if rng.random() < 0.05:
                line += " 1700000000" + ("" if om else "000")
            lines.append(line)
    if om:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _mutate(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text))
    char = rng.choice(list('0123456789.e+-" {},=#\\\tazN_') + ["\n"])
    how = rng.choice(["replace", "insert", "delete"])
    if how == "replace":
        return text[:at] + char + text[at + 1:]
    return text[:at] + char + text[at:] if how == "insert" else text[:at] + text[at + 1:]


def _compare(text: str, content_type: str | None) -> bool:
    """Body path vs per-line loop on one body; True if the body path accepted it."""
    fmt = detect_format(text, content_type)
    lines, _ = _split_lines(text)
    fast = _Full(fmt, _Floats(), {}, {})
    got = expo_body.parse_body(fast, lines, text)
    slow = _Full(fmt, _Floats(), {}, {})
    try:
        expected = slow.run(lines)
    except ParseError:
        assert got is None, text
        return False
    if got is None:
        return False
    assert _same(got.columns(), expected.columns()), text
    assert (got.types, got.helps, got.units) == (expected.types, expected.helps, expected.units), text
    assert list(got.types) == list(expected.types) and list(got.helps) == list(expected.helps)
    assert _same(list(got.exemplars.items()), list(expected.exemplars.items())), text
    assert got.format == expected.format
    ours, theirs = fast.layout(len(lines)), slow.layout(len(lines))
    assert (ours is None) == (theirs is None), text
    if ours is not None and theirs is not None:
        assert (ours.literal_lines, ours.prefixes, ours.fixed_chars, ours.names, ours.labels, ours.exemplar_ok,
                ours.meta) == (theirs.literal_lines, theirs.prefixes, theirs.fixed_chars, theirs.names,
                               theirs.labels, theirs.exemplar_ok, theirs.meta), text
        assert ours.sample(lines) == theirs.sample(lines) and ours.literal(lines) == theirs.literal(lines)
    return True


@pytest.mark.parametrize("om", [False, True])
def test_random_bodies_read_alike_by_the_body_path_and_line_by_line(om: bool) -> None:
    rng = random.Random(16 + om)
    accepted = 0
    for _ in range(3000):
        text = _random_body(rng, om)
        if rng.random() < 0.3:
            text = _mutate(rng, text)
        accepted += _compare(text, OM_TYPE if om else None)
    assert accepted > 100  # the body path really ran, not only declined


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.prom")))
def test_mutated_corpus_bodies_read_alike_by_the_body_path_and_line_by_line(name: str) -> None:
    text = (CORPUS / name).read_text()
    # the real body takes the body path; node_exporter.prom holds a 0.0.4 timestamp, which it leaves alone
    assert _compare(text, None) == (name != "node_exporter.prom")
    rng = random.Random(name)
    for _ in range(1500):
        _compare(_mutate(rng, text), None)


@pytest.mark.parametrize("om", [False, True])
def test_errors_keep_their_line_and_message_with_the_body_path_forced(om: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(160 + om)
    bodies = [_mutate(rng, _random_body(rng, om)) for _ in range(800)]
    content_type = OM_TYPE if om else None
    monkeypatch.setattr(expo_body, "pays", lambda *_: True)
    outcomes = []
    for enabled in (True, False):
        monkeypatch.setattr(expo_body, "ENABLED", enabled)
        seen = []
        for text in bodies:
            try:
                seen.append(TargetParser().parse(text, content_type).columns())
            except ParseError as exc:
                seen.append((exc.line_no, str(exc)))
        outcomes.append(seen)
    assert all(map(_same, *outcomes))
    assert sum(isinstance(o, tuple) and isinstance(o[0], int) for o in outcomes[0]) > 50  # errors were met


@pytest.mark.parametrize(("text", "content_type"), [
    ("# TYPE a gauge\na 1\n# TYPE a gauge\n", None),  # a second TYPE after samples
    ("# HELP a x\na 1\n# TYPE a gauge\n", None),  # TYPE after its samples
    ("# TYPE a histogram\na_bucket{x=\"1\"} 1\n", None),  # a bucket without le
    ("# TYPE a summary\na{quantile=\"NaN\"} 1\n", None),
    ('# TYPE a gauge\na{x="1",y="2"} 1\na{y="2",x="1"} 2\n', None),  # duplicate series
    ('# TYPE a gauge\na{x="1",x="2"} 1\n', None),
    ("# TYPE a counter\na_total 1 # {t=\"x\"} 1\n# TYPE b gauge\nb 1 # {t=\"x\"} 1\n# EOF\n", OM_TYPE),
    ("# TYPE a counter\na_total 1\n# TYPE a_total gauge\na_total 2\n# EOF\n", OM_TYPE),  # claimed twice
    ("# TYPE a gauge\na 1\n# HELP a late\n# EOF\n", OM_TYPE),  # metadata after samples
    ("# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n", OM_TYPE),  # unit not a suffix
    ("# HELP a  two spaces\n# TYPE a gauge\na 1\n", None),  # a valid body the body path declines
])
def test_bad_or_odd_bodies_are_declined_and_reported_as_before(text: str, content_type: str | None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lines, _ = _split_lines(text)
    fmt = detect_format(text, content_type)
    assert expo_body.parse_body(_Full(fmt, _Floats(), {}, {}), lines, text) is None
    monkeypatch.setattr(expo_body, "pays", lambda *_: True)
    try:
        expected: object = TargetParser().parse(text, content_type).columns()
    except ParseError as exc:
        expected = (exc.line_no, str(exc))
    monkeypatch.setattr(expo_body, "ENABLED", False)
    try:
        got: object = TargetParser().parse(text, content_type).columns()
    except ParseError as exc:
        got = (exc.line_no, str(exc))
    assert _same(got, expected)
