"""Parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0.

Output: flat :class:`Sample` tuples in exposition order plus family metadata.
Conventions (chosen to equal ``prometheus_client``'s parsers on valid input):

- timestamps are float **seconds** in both formats (0.0.4 carries integer
  milliseconds and is divided by 1000, as prometheus_client does);
- values are floats (``NaN``, ``+Inf``, ``-Inf`` included); labels are sorted
  by name; sample names are exactly as exposed (``_total`` kept).

Malformed input raises :class:`ParseError` naming the 1-based line; nothing of
that scrape is returned. Value semantics (monotonic buckets, negative counters)
are not checked, like the Prometheus server; structure is (duplicate series,
metadata order, ``# EOF``, family contiguity in OpenMetrics).

:class:`TargetParser` parses successive scrapes of one target: when every line
repeats the previous scrape up to its value, only what follows (value,
timestamp, exemplar) is read. A first scrape parses each label set once per
histogram group (the labels beside ``le`` repeat on every bucket).

Differences from prometheus_client, all on input it would call invalid or
handle loosely: 0.0.4 timestamps must be integers (as in Prometheus); a
``__name__`` label, unknown TYPE values, a second HELP/TYPE for one name, a
TYPE after the family's samples and duplicate series are errors; CRLF line
ends are accepted in both formats.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple, NoReturn

Labels = tuple[tuple[str, str], ...]
TEXT = "text"
OPENMETRICS = "openmetrics"

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled loops: sre runs them far faster than alternations


def _block(group: str) -> str:
    """A label set; its quoted values may hold ``{ } #`` and spaces."""
    return r'\{(?P<' + group + r'>[^"}]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"}]*)*)\}'


_NUM = r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_VALUE = re.compile(_NUM + r"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]")
_TS = {TEXT: re.compile(r"-?[0-9]+"), OPENMETRICS: re.compile(_NUM)}
_METRIC_NAME = re.compile(_NAME)
_REST = {  # what follows the series: value, timestamp, exemplar
    TEXT: r"(?P<value>[^ \t]+)(?:[ \t]+(?P<ts>[^ \t]+))?[ \t]*",
    OPENMETRICS: rf"(?P<value>[^ ]+)(?: (?P<ts>[^ #][^ ]*))?"
                 rf"(?: # {_block('xlabels')} (?P<xv>[^ ]+)(?: (?P<xts>[^ ]+))?)?",
}
_REST_RE = {fmt: re.compile(rest) for fmt, rest in _REST.items()}
_SAMPLE = {
    TEXT: re.compile(rf"[ \t]*(?P<series>(?P<name>{_NAME})(?:[ \t]*{_block('labels')})?)[ \t]+" + _REST[TEXT]),
    OPENMETRICS: re.compile(rf"(?P<series>(?P<name>{_NAME})(?:{_block('labels')})?) " + _REST[OPENMETRICS]),
}
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*' + _QUOTED
_LABEL_OM = r'([a-zA-Z_][a-zA-Z0-9_]*)=' + _QUOTED
_LABELS = {TEXT: re.compile(_LABEL), OPENMETRICS: re.compile(_LABEL_OM)}
_TEXT_LABEL_SET = re.compile(rf"[ \t]*(?:{_LABEL}[ \t]*,[ \t]*)*(?:{_LABEL}[ \t]*,?[ \t]*)?")
# Tuples, not frozensets: a tuple of strings drops out of the cyclic GC's sight, so the
# caches do not slow down every collection the application's allocations trigger.
_NONE: tuple[str, ...] = ()
_tuple_new = tuple.__new__
_NOT_SAMPLE_START = frozenset(" \t#")
_SERIES_KEY = itemgetter(0, 1, 3)  # name, labels, timestamp
_Series = tuple[str, Labels, tuple[str, ...]]  # name, labels, which bound labels hold a number
_Base = tuple[Labels, dict[str, int]]  # labels, and where each absent bound label sorts in
_BOUND_SPLITS = (("le", 'le="', ',le="'), ("quantile", 'quantile="', ',quantile="'))
_BOUND_OK = {"le": ("le",), "quantile": ("quantile",)}
_UNESCAPE = re.compile(r"\\(.)")
_LABEL_ESCAPES = {"\\": "\\", "n": "\n", '"': '"'}
_HELP_ESCAPES = {TEXT: {"\\": "\\", "n": "\n"}, OPENMETRICS: _LABEL_ESCAPES}
_SUFFIXES = {
    TEXT: {"counter": ("",), "gauge": ("",), "untyped": ("",), "summary": ("", "_count", "_sum"),
           "histogram": ("_bucket", "_count", "_sum")},
    OPENMETRICS: {"counter": ("_total", "_created"), "gauge": ("",), "unknown": ("",),
                  "summary": ("", "_count", "_sum", "_created"), "stateset": ("",), "info": ("_info",),
                  "histogram": ("_bucket", "_count", "_sum", "_created"),
                  "gaugehistogram": ("_bucket", "_gcount", "_gsum")},
}
_TYPE_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_gcount", "_gsum", "_info")
_MAX_EXEMPLAR_LABEL_CHARS = 128  # OpenMetrics 1.0 limit on an exemplar's label names + values


class ParseError(ValueError):
    """A malformed exposition; ``line_no`` is 1-based, ``reason`` says what is wrong."""

    def __init__(self, line_no: int, line: str, reason: str) -> None:
        super().__init__(f"line {line_no}: {reason}: {line[:120]!r}")
        self.line_no = line_no
        self.reason = reason


class Sample(NamedTuple):
    """One sample; ``timestamp`` is in seconds or None."""

    name: str
    labels: Labels
    value: float
    timestamp: float | None = None


class Exemplar(NamedTuple):
    """An OpenMetrics exemplar attached to a bucket or counter sample."""

    labels: Labels
    value: float
    timestamp: float | None = None


@dataclass
class Exposition:
    """One parsed scrape. ``exemplars`` maps an index into ``samples`` to its exemplar."""

    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # family name as its TYPE line spells it
    helps: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    exemplars: dict[int, Exemplar] = field(default_factory=dict)
    format: str = TEXT

    def type_of(self, sample_name: str) -> str:
        """The declared type of the family ``sample_name`` belongs to ("untyped" if none)."""
        if sample_name in self.types:
            return self.types[sample_name]
        for suffix in _TYPE_SUFFIXES:
            if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in self.types:
                return self.types[sample_name[: -len(suffix)]]
        return "untyped"

    def created(self) -> dict[tuple[str, Labels], float]:
        """``_created`` samples keyed by (name without ``_created``, labels).

        A counter ``x_total`` or histogram ``x_bucket`` finds its creation time
        under ``x``; a change of it between scrapes is a counter reset.
        """
        return {(s.name[:-8], s.labels): s.value for s in self.samples if s.name.endswith("_created")}


def parse_number(token: str) -> float:
    """A value or bucket bound as the formats spell it ("1", "1.0", "1e0", "+Inf", "NaN")."""
    if _VALUE.fullmatch(token) is None:
        raise ValueError(f"not a number in the exposition formats: {token!r}")
    return float(token)


def detect_format(text: str, content_type: str | None = None) -> str:
    """OpenMetrics if the Content-Type says so; without one, if the body ends in ``# EOF``."""
    if content_type is not None:
        return OPENMETRICS if "application/openmetrics-text" in content_type.lower() else TEXT
    tail = text.rstrip("\r\n")
    return OPENMETRICS if tail == "# EOF" or tail.endswith("\n# EOF") else TEXT


def parse(text: str, content_type: str | None = None) -> Exposition:
    """Parse one exposition (see :func:`detect_format`); raises :class:`ParseError`."""
    return TargetParser().parse(text, content_type)


def _split_lines(text: str) -> list[str]:
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not open a new one
    return lines


def _picker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """Picks ``indexes`` out of a list as a tuple, in C (itemgetter) when there are several."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    return lambda seq: tuple(seq[i] for i in indexes)


class _Floats(dict[str, float]):
    """Value token → float; a token is validated once, when first seen."""

    def __missing__(self, token: str) -> float:
        if _VALUE.fullmatch(token) is None:
            raise ValueError(f"invalid value {token!r}")
        value = self[token] = float(token)
        return value


@dataclass
class _Layout:
    """What a scrape looked like apart from its values; see ``TargetParser._fast``."""

    fmt: str
    n_lines: int
    literal: Callable[[list[str]], tuple[str, ...]]  # comment and blank lines: must repeat exactly
    literal_lines: tuple[str, ...]
    sample: Callable[[list[str]], tuple[str, ...]]
    prefixes: list[str]  # each sample line up to and including the space before its value
    prefix_chars: int
    names: list[str]
    labels: list[Labels]
    exemplar_ok: frozenset[int]  # samples whose family allows an exemplar
    meta: tuple[dict[str, str], dict[str, str], dict[str, str]]  # types, helps, units


class TargetParser:
    """Parses successive scrapes of one target, reusing what repeats.

    If every comment line and every sample line up to its value equals the
    previous successful scrape, everything before the values is known to be
    unchanged and valid, so only the values (and any timestamp or exemplar
    after them) are read. Otherwise the full parser runs, with the text before
    each value and each label set cached by their exact text, so a changed
    line is always parsed anew. Not thread-safe: one per target.
    """

    def __init__(self) -> None:
        self._floats = _Floats()
        self._series: dict[str, _Series] = {}
        self._bases: dict[str, _Base] = {}
        self._layout: _Layout | None = None

    def parse(self, text: str, content_type: str | None = None) -> Exposition:
        """Parse one scrape of this target; raises :class:`ParseError`."""
        fmt = detect_format(text, content_type)
        lines = _split_lines(text)
        layout = self._layout
        if layout is not None and layout.fmt == fmt and layout.n_lines == len(lines):
            expo = self._fast(layout, lines)
            if expo is not None:
                return expo
        self._layout = None
        full = _Full(fmt, self._floats, self._series, self._bases)
        expo = full.run(lines)
        self._layout = full.layout(len(lines))
        self._trim(len(expo.samples))
        return expo

    def _fast(self, layout: _Layout, lines: list[str]) -> Exposition | None:
        """Values, timestamps, exemplars only; None when anything else differs (the full
        parser then decides, and reports any error)."""
        if layout.literal(lines) != layout.literal_lines:
            return None
        sample_lines = layout.sample(lines)
        # removeprefix leaves a line whole when its prefix differs; then the lengths
        # cannot add up, since every prefix is at least two characters long.
        tokens = list(map(str.removeprefix, sample_lines, layout.prefixes))
        if sum(map(len, tokens)) + layout.prefix_chars != sum(map(len, sample_lines)):
            return None
        values: list[float | None] = list(map(self._floats.get, tokens))  # None: not seen, or more
        exemplars: dict[int, Exemplar] = {}
        try:
            timestamps = self._rests(layout, tokens, values, exemplars) if None in values else None
        except ValueError:
            return None
        stamps = repeat(None) if timestamps is None else timestamps
        samples = list(map(tuple.__new__, repeat(Sample), zip(layout.names, layout.labels, values, stamps)))
        self._trim(len(samples))
        types, helps, units = layout.meta
        return Exposition(samples, dict(types), dict(helps), dict(units), exemplars, layout.fmt)

    def _rests(self, layout: _Layout, tokens: list[str], values: list[float | None],
               exemplars: dict[int, Exemplar]) -> list[float | None] | None:
        """Fill in the values the cache did not know, reading any timestamp and exemplar
        after them; return the timestamps, if any. ValueError on anything invalid."""
        timestamps: list[float | None] | None = None
        k = -1
        for _ in range(values.count(None)):
            k = values.index(None, k + 1)
            token = tokens[k]
            if " " not in token and "\t" not in token:
                values[k] = self._floats[token]
                continue
            match = _REST_RE[layout.fmt].fullmatch(token)
            if match is None:
                raise ValueError(token)
            values[k] = self._floats[match["value"]]
            if match["ts"] is not None:
                timestamps = timestamps or [None] * len(values)
                timestamps[k] = _timestamp(layout.fmt, match["ts"])
            if layout.fmt == OPENMETRICS and match["xv"] is not None:
                if k not in layout.exemplar_ok:
                    raise ValueError(token)
                exemplars[k] = _exemplar(match, self._floats)
        return timestamps

    def _trim(self, n_samples: int) -> None:
        """Keep the caches bounded when series or values churn."""
        if len(self._floats) > 4 * n_samples + 4096:
            self._floats.clear()
        if len(self._series) > 2 * n_samples + 1024:
            self._series.clear()
            self._bases.clear()


class _Full:
    """One run of the full parser over the lines of one scrape."""

    def __init__(self, fmt: str, floats: _Floats, series: dict[str, _Series],
                 bases: dict[str, _Base]) -> None:
        self.fmt, self.om, self.floats = fmt, fmt == OPENMETRICS, floats
        self.series, self.bases = series, bases  # kept by the TargetParser between scrapes
        self.names_ok: set[str] = set()  # metric names already validated
        self.pattern = _SAMPLE[fmt]
        self.expo = Exposition(format=fmt)
        self.family = ""  # no family yet
        self.ftype = "untyped"
        self.allowed: tuple[str, ...] = ()
        self.bounded: str | None = None  # the sample name that needs a numeric bound label
        self.bound_label = ""
        self.family_sampled = False
        self.sampled: set[str] = set()  # families with samples: a later TYPE for them is an error
        self.claimed: set[str] = set()  # OpenMetrics: sample names owned by families so far
        self.sample_lines: list[int] = []  # line index of each sample
        self.lines: list[str] = []
        self.i, self.eof, self.timestamped = 0, False, False
        self.exemplar_names: tuple[str, ...] = ()  # the current family's samples that may carry one
        self.exemplar_ok: list[int] = []  # indexes of samples that may carry an exemplar
        self.literal: list[int] = []
        self.prefixes: list[str] = []

    def fail(self, reason: str) -> NoReturn:
        line = self.lines[self.i] if self.i < len(self.lines) else ""
        raise ParseError(self.i + 1, line, reason)

    def run(self, lines: list[str]) -> Exposition:
        self.lines = lines
        i = 0
        while i < len(lines):
            line = self.lines[i]
            self.i = i
            if self.eof:
                self.fail("content after # EOF")
            if line and line[0] not in _NOT_SAMPLE_START:
                i = self.sample_run(lines, i)
                continue
            stripped = line if self.om else line.lstrip(" \t")
            if not stripped:
                if self.om:
                    self.fail("blank line (not allowed in OpenMetrics)")
                self.literal.append(i)
            elif stripped[0] == "#":
                self.literal.append(i)
                self.om_comment(line) if self.om else self.text_comment(stripped.rstrip(" \t"))
            else:
                self.sample(i, line)
            i += 1
        if self.om and not self.eof:
            self.i = len(lines)
            self.fail("missing # EOF at the end of an OpenMetrics exposition")
        self.check_duplicates()
        return self.expo

    def check_duplicates(self) -> None:
        """One series (same name, labels and timestamp) twice is an error.

        Labels are sorted, so every spelling of a series compares equal. The
        check runs in C over the whole scrape; only a failure walks the lines.
        """
        samples = self.expo.samples
        if len(set(map(_SERIES_KEY, samples))) == len(samples):
            return
        first: dict[tuple[object, ...], int] = {}
        for sample, i in zip(samples, self.sample_lines):
            seen = first.setdefault(_SERIES_KEY(sample), i)
            if seen != i:
                self.i = i
                self.fail(f"duplicate series (first at line {seen + 1})")

    def layout(self, n_lines: int) -> _Layout | None:
        """What the fast path needs; None if one series appears twice (with timestamps)."""
        pick, samples = _picker(self.literal), self.expo.samples
        names, labels = [s.name for s in samples], [s.labels for s in samples]
        if self.timestamped and len(set(zip(names, labels))) != len(samples):
            return None  # new timestamps could make them duplicates: the full parser must check
        return _Layout(self.fmt, n_lines, pick, pick(self.lines), _picker(self.sample_lines),
                       self.prefixes, sum(map(len, self.prefixes)), names, labels,
                       frozenset(self.exemplar_ok),
                       (dict(self.expo.types), dict(self.expo.helps), dict(self.expo.units)))

    def start_family(self, name: str, typ: str | None) -> None:
        """A HELP/TYPE/UNIT line or a sample outside the current family opens a family."""
        self.family, self.family_sampled = name, False
        self.set_type(typ or ("unknown" if self.om else "untyped"), fresh=True)

    def set_type(self, typ: str, fresh: bool = False) -> None:
        self.ftype = typ
        self.allowed = tuple(self.family + s for s in _SUFFIXES[self.fmt][typ])
        self.exemplar_names = {"histogram": (f"{self.family}_bucket",), "gaugehistogram": (f"{self.family}_bucket",),
                               "counter": (f"{self.family}_total",)}.get(typ, ()) if self.om else ()
        # Buckets need a numeric ``le``, summary quantiles a numeric ``quantile``.
        self.bounded, self.bound_label = {"histogram": (f"{self.family}_bucket", "le"),
                                          "gaugehistogram": (f"{self.family}_bucket", "le"),
                                          "summary": (self.family, "quantile")}.get(typ, (None, ""))
        if self.om:  # OpenMetrics: a family's lines are contiguous and its sample names its own
            owned = {self.family, *self.allowed} if fresh else set(self.allowed) - {self.family}
            for name in owned:
                if name in self.claimed:
                    self.fail(f"metric family {name!r} appears twice (families must be contiguous)")
                self.claimed.add(name)

    def metric_name(self, name: str) -> str:
        if _METRIC_NAME.fullmatch(name) is None:
            self.fail(f"invalid metric name {name!r}")
        return name

    def text_comment(self, stripped: str) -> None:
        """0.0.4: HELP and TYPE lines; any other comment is ignored."""
        parts = stripped.split(None, 3)
        if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
            return
        name, rest, expo = self.metric_name(parts[2]), parts[3] if len(parts) == 4 else "", self.expo
        table = expo.helps if parts[1] == "HELP" else expo.types
        if name in table:
            self.fail(f"second {parts[1]} line for {name!r}")
        if parts[1] == "HELP":
            table[name] = _unescape(rest, _HELP_ESCAPES[TEXT])
            if name != self.family:
                self.start_family(name, expo.types.get(name))
            return
        if rest not in _SUFFIXES[TEXT]:
            self.fail(f"unknown metric type {rest!r}")
        if name in self.sampled:
            self.fail(f"TYPE line for {name!r} after its samples")
        table[name] = rest
        if name != self.family:
            self.start_family(name, rest)
        else:
            self.set_type(rest)

    def om_comment(self, line: str) -> None:
        """OpenMetrics: only HELP, TYPE, UNIT and EOF, before the family's samples."""
        if line == "# EOF":
            self.eof = True
            return
        parts = line.split(" ", 3)
        if len(parts) != 4 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE", "UNIT"):
            self.fail("invalid comment line (expected # HELP, # TYPE, # UNIT or # EOF)")
        kind, name, rest, expo = parts[1], self.metric_name(parts[2]), parts[3], self.expo
        if name != self.family:
            self.start_family(name, None)
        elif self.family_sampled:
            self.fail(f"{kind} line for {name!r} after its samples")
        table = {"HELP": expo.helps, "TYPE": expo.types, "UNIT": expo.units}[kind]
        if name in table:
            self.fail(f"second {kind} line for {name!r}")
        if kind == "TYPE":
            if rest not in _SUFFIXES[OPENMETRICS]:
                self.fail(f"unknown metric type {rest!r}")
            self.set_type(rest)
        elif kind == "UNIT" and rest and not name.endswith("_" + rest):
            self.fail(f"unit {rest!r} is not the suffix of {name!r}")
        table[name] = _unescape(rest, _HELP_ESCAPES[OPENMETRICS]) if kind == "HELP" else rest

    def sample_run(self, lines: list[str], i: int) -> int:
        """Sample lines from ``i`` up to the next comment; returns the index it stopped at.

        The hot loop of a first scrape, written flat. A line ``name{labels} value``
        is cut at its last space; the part before it is looked up (or, new, parsed
        as name and label set) and only the value token is read. Anything else
        (timestamps, exemplars, odd blanks, errors) goes through :meth:`sample`.
        """
        series, floats, samples, sample_lines = self.series, self.floats, self.expo.samples, self.sample_lines
        prefixes = self.prefixes
        while i < len(lines):
            line = lines[i]
            if not line or line[0] in _NOT_SAMPLE_START:
                break
            head, _, token = line.rpartition(" ")
            hit = series.get(head) or self.decompose(head)
            try:
                value = floats[token]
            except ValueError:
                hit = None
            if hit is None:
                self.i = i
                self.sample(i, line)
                i += 1
                continue
            name, labels, numeric = hit
            if name not in self.allowed or (name == self.bounded and self.bound_label not in numeric):
                self.i = i  # for the error message, if there is one
                self.enter(name, numeric)
            if not self.family_sampled:
                self.family_sampled = True
                self.sampled.add(self.family)
            if name in self.exemplar_names:
                self.exemplar_ok.append(len(samples))
            sample_lines.append(i)
            samples.append(_tuple_new(Sample, (name, labels, value, None)))  # skips a Python frame
            prefixes.append(line[: len(head) + 1])
            i += 1
        return i

    def enter(self, name: str, numeric: tuple[str, ...]) -> None:
        """A sample that opens a family, or lacks the bound label its family needs."""
        if name not in self.allowed:
            self.start_family(name, None)
        if name == self.bounded and self.bound_label not in numeric:
            self.fail(f"{name} needs a numeric {self.bound_label!r} label")

    def decompose(self, head: str) -> _Series | None:
        """``name{labels}`` or ``name`` of a line not seen before; None if it is anything else.

        If the name and the label set are valid, the line is exactly a series,
        one space and a value: the grammar has no other reading of it.
        """
        brace = head.find("{")
        name = head if brace < 0 else head[:brace]
        if name not in self.names_ok:
            if _METRIC_NAME.fullmatch(name) is None or (brace >= 0 and head[-1] != "}"):
                return None
            self.names_ok.add(name)
        elif brace >= 0 and head[-1] != "}":
            return None
        try:
            labels, numeric = self.label_set(head[brace + 1:-1]) if brace >= 0 else ((), _NONE)
        except ParseError:
            return None  # the regex path reports it, with its own reason
        hit = self.series[head] = (name, labels, numeric)
        return hit

    def sample(self, i: int, line: str) -> None:
        """One sample line, by the full grammar: timestamps, exemplars, blanks, errors."""
        match = self.pattern.fullmatch(line)
        if match is None:
            self.fail("malformed sample line")
        series, token, ts_token = match.group("series", "value", "ts")
        hit = self.series.get(series)
        if hit is None:
            hit = self.series[series] = (match["name"], *self.label_set(match["labels"] or ""))
        name, labels, numeric = hit
        try:
            value = self.floats[token]
        except ValueError:
            self.fail(f"invalid value {token!r}")
        self.enter(name, numeric)
        if not self.family_sampled:
            self.family_sampled = True
            self.sampled.add(self.family)
        ts = None if ts_token is None else self.timestamp(ts_token)
        self.timestamped = self.timestamped or ts is not None
        self.sample_lines.append(i)
        if name in self.exemplar_names:
            self.exemplar_ok.append(len(self.expo.samples))
        exemplar = self.exemplar(match, name) if self.om and match["xv"] is not None else None
        if exemplar is not None:
            self.expo.exemplars[len(self.expo.samples)] = exemplar
        self.expo.samples.append(_tuple_new(Sample, (name, labels, value, ts)))  # skips a Python frame
        self.prefixes.append(line[: match.start("value")])
        if ts is None and exemplar is None and line.endswith(token) and line[-len(token) - 1] == " ":
            self.series[line[: -len(token) - 1]] = hit  # this text before a value means this series

    def label_set(self, block: str) -> tuple[Labels, tuple[str, ...]]:
        """A histogram's buckets share every label but ``le`` (a summary's but ``quantile``):
        the rest of the label set, like the text of ``_count`` and ``_sum``, is parsed once."""
        if not block:
            return (), _NONE
        bounded = 'le="' in block or 'quantile="' in block
        split = _split_bound(block) if bounded else None
        if split is None:
            labels = (self.bases.get(block) or self.new_base(block))[0]
            return labels, _numeric(labels) if bounded else _NONE
        pair, rest = split
        rest_labels, slots = self.bases.get(rest) or self.new_base(rest)
        i = slots.get(pair[0])
        if i is None:
            self.fail(f"label {pair[0]!r} appears twice in one label set")
        labels = (*rest_labels[:i], pair, *rest_labels[i:])
        if len(slots) < 2:  # the rest holds the other bound label: check both
            return labels, _numeric(labels)
        try:
            numeric = self.floats[pair[1]] == self.floats[pair[1]]  # a valid number, and not NaN
        except ValueError:
            numeric = False
        return labels, _BOUND_OK[pair[0]] if numeric else _NONE

    def new_base(self, block: str) -> _Base:
        """Labels of a label set's text, and where ``le``/``quantile`` would sort into them."""
        labels = self.labels_of(block)
        names = [n for n, _ in labels]
        slots = {b: bisect_left(names, b) for b in _BOUND_OK if b not in names}
        hit = self.bases[block] = (labels, slots)
        return hit

    def labels_of(self, block: str) -> Labels:
        try:
            return _label_block(block, self.om)
        except ValueError as exc:
            self.fail(str(exc))

    def timestamp(self, token: str) -> float:
        try:
            return _timestamp(self.fmt, token)
        except ValueError as exc:
            self.fail(str(exc))

    def exemplar(self, match: re.Match[str], name: str) -> Exemplar:
        if name not in self.exemplar_names:
            self.fail("only histogram buckets and counter totals may carry an exemplar")
        try:
            return _exemplar(match, self.floats)
        except ValueError as exc:
            self.fail(str(exc))


def _label_block(block: str, om: bool) -> Labels:
    """Sorted labels of a label set's text; ValueError saying what is wrong."""
    # split() on the label pattern yields [sep, name, value, sep, ...]: one C pass that both
    # extracts the pairs and, through the separators, shows whether anything else is there.
    parts = _LABELS[OPENMETRICS if om else TEXT].split(block)
    seps = parts[0::3]
    inner = seps[1:-1]
    plain = seps[0] == "" and seps[-1] in ("", ",") and inner.count(",") == len(inner)
    if not plain and (om or _TEXT_LABEL_SET.fullmatch(block) is None):  # 0.0.4: blanks too
        raise ValueError("malformed label set")
    names, values = parts[1::3], parts[2::3]
    if om and seps[-1] and names:
        raise ValueError("trailing comma in a label set (not allowed in OpenMetrics)")
    if "\\" in block:
        values = [_unescape(v, _LABEL_ESCAPES) for v in values]
    if len(set(names)) != len(names):
        raise ValueError("a label name appears twice in one label set")
    if "__name__" in names:
        raise ValueError("__name__ as a label is not supported")
    return tuple(sorted(zip(names, values)))


def _timestamp(fmt: str, token: str) -> float:
    """Seconds; the text format carries integer milliseconds, OpenMetrics seconds."""
    if _TS[fmt].fullmatch(token) is None:
        raise ValueError(f"invalid timestamp {token!r}")
    return float(token) if fmt == OPENMETRICS else int(token) / 1000


def _exemplar(match: re.Match[str], floats: _Floats) -> Exemplar:
    labels = _label_block(match["xlabels"], True)
    if sum(len(n) + len(v) for n, v in labels) > _MAX_EXEMPLAR_LABEL_CHARS:
        raise ValueError(f"exemplar labels longer than {_MAX_EXEMPLAR_LABEL_CHARS} characters")
    try:
        value = floats[match["xv"]]
    except ValueError:
        raise ValueError(f"invalid exemplar value {match['xv']!r}") from None
    return Exemplar(labels, value, None if match["xts"] is None else _timestamp(OPENMETRICS, match["xts"]))


def _is_number(text: str) -> bool:
    return _VALUE.fullmatch(text) is not None and text[-1] not in "nN"  # NaN is no bucket bound


def _numeric(labels: Labels) -> tuple[str, ...]:
    return tuple(n for n, v in labels if n in _BOUND_OK and _is_number(v))


def _split_bound(block: str) -> tuple[tuple[str, str], str] | None:
    """``le="x",rest`` or ``rest,le="x"`` (likewise ``quantile``) → (pair, rest), if x is plain."""
    for name, head, tail in _BOUND_SPLITS:
        if block.startswith(head):
            cut = block.find('",')
            value, rest = block[len(head):cut], block[cut + 2:]
            if cut > 0 and rest and "\\" not in value and '"' not in value:
                return (name, value), rest
        elif block.endswith('"'):
            cut = block.rfind(tail)
            value, rest = block[cut + len(tail):-1], block[:cut]
            if cut > 0 and rest[-1] == '"' and "\\" not in value and '"' not in value:
                return (name, value), rest
    return None


def _unescape(text: str, escapes: dict[str, str]) -> str:
    """Replace known escapes; an unknown one (backslash-t) stays as written, as Prometheus keeps it."""
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(lambda m: escapes.get(m[1], m[0]), text)
