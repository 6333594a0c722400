"""The full exposition parser: every line by the grammar, with caches that a
target's next scrape reuses (see :class:`.expo_fast.TargetParser`)."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter
from typing import NoReturn

from .bulk import MIN_RUN, bulk_run
from .grammar import (
    _BOUND_OK,
    _HELP_ESCAPES,
    _METRIC_NAME,
    _NONE,
    _NOT_SAMPLE_START,
    _SAMPLE,
    _SUFFIXES,
    _Base,
    _exemplar,
    _Floats,
    _label_block,
    _numeric,
    _picker,
    _Series,
    _split_bound,
    _timestamp,
    _unescape,
)
from .types import OPENMETRICS, TEXT, Exemplar, Exposition, Labels, ParseError

_FIRST_CHAR = itemgetter(slice(0, 1))
_NAME_OF, _LABELS_OF = itemgetter(0), itemgetter(1)
_BREAKS = frozenset(("", "#", " ", "\t"))  # what a line that is no sample line starts with


@dataclass
class _Layout:
    """What a scrape looked like apart from its values; see ``TargetParser._fast``."""

    fmt: str
    n_lines: int
    literal: Callable[[list[str]], tuple[str, ...]]  # comment and blank lines: must repeat exactly
    literal_lines: tuple[str, ...]
    sample: Callable[[list[str]], tuple[str, ...]]
    prefixes: list[str]  # each sample line up to and including the space before its value
    fixed_chars: int  # characters in all prefixes and literal lines
    names: tuple[str, ...]
    labels: tuple[Labels, ...]
    exemplar_ok: frozenset[int]  # samples whose family allows an exemplar
    meta: tuple[dict[str, str], dict[str, str], dict[str, str]]  # types, helps, units




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
        self.hits: list[_Series] = []  # each sample's series and value, in order
        self.values: list[float] = []
        self.stamps: dict[int, float] = {}  # sample index → timestamp, for the few that have one
        self.stamp_list: list[float | None] | None = None
        self.names: tuple[str, ...] = ()  # set at the end of run()
        self.labels: tuple[Labels, ...] = ()
        self.breaks: list[int] | None = None  # indexes of lines that are no sample line
        self.pending: list[tuple[list[str], list[_Series]]] = []  # new series cache entries
        self.le_pairs: dict[str, tuple[Labels, tuple[str, ...]]] = {}  # see expo_bulk._series_of
        self.le_rests: dict[str, tuple[Labels, Labels]] = {}
        self.plain_sets: dict[str, Labels | None] = {}

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
        self.names = tuple(map(_NAME_OF, self.hits))
        self.labels = tuple(map(_LABELS_OF, self.hits))
        if self.stamps:
            self.stamp_list = list(map(self.stamps.get, range(len(self.values))))
        self.check_duplicates()
        expo = self.expo
        return Exposition.from_columns((self.names, self.labels, self.values, self.stamp_list), expo.types,
                                       expo.helps, expo.units, expo.exemplars, self.fmt)

    def check_duplicates(self) -> None:
        """One series (same name, labels and timestamp) twice is an error.

        Labels are sorted, so every spelling of a series compares equal. The
        check runs in C over the whole scrape; only a failure walks the lines.
        """
        keys = zip(self.names, self.labels, repeat(None) if self.stamp_list is None else self.stamp_list)
        if len(set(keys)) == len(self.values):
            return
        first: dict[tuple[object, ...], int] = {}
        keys = zip(self.names, self.labels, repeat(None) if self.stamp_list is None else self.stamp_list)
        for key, i in zip(keys, self.sample_lines):
            seen = first.setdefault(key, i)
            if seen != i:
                self.i = i
                self.fail(f"duplicate series (first at line {seen + 1})")

    def layout(self, n_lines: int) -> _Layout | None:
        """What the fast path needs; None if one series appears twice (with timestamps)."""
        pick, names, labels = _picker(self.literal), self.names, self.labels
        if self.timestamped and len(set(zip(names, labels))) != len(names):
            return None  # new timestamps could make them duplicates: the full parser must check
        literal_lines = pick(self.lines)
        fixed_chars = sum(map(len, self.prefixes)) + sum(map(len, literal_lines))
        return _Layout(self.fmt, n_lines, pick, literal_lines, _picker(self.sample_lines),
                       self.prefixes, fixed_chars, names, labels,
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

    def sample_run(self, lines: list[str], start: int) -> int:
        """Sample lines from ``start`` up to the next comment; returns where they end.

        A long run is first offered to :func:`.expo_bulk.bulk_run`. Otherwise, line
        by line, written flat: ``name{labels} value`` is cut at its last space; the
        part before it is looked up (or, new, parsed as name and label set) and only
        the value token is read. Anything else (timestamps, exemplars, odd blanks,
        errors) goes through :meth:`sample`.
        """
        end = self.run_end(start)
        if end - start >= MIN_RUN and bulk_run(self, lines, start, end):
            return end
        series, floats, hits, values = self.series, self.floats, self.hits, self.values
        for i in range(start, end):
            line = lines[i]
            head, _, token = line.rpartition(" ")
            hit = series.get(head) or self.decompose(head)
            try:
                value = floats[token]
            except ValueError:
                hit = None
            if hit is None:
                self.i = i
                self.sample(i, line)
                continue
            name, _, numeric = hit
            if name not in self.allowed or (name == self.bounded and self.bound_label not in numeric):
                self.i = i  # for the error message, if there is one
                self.enter(name, numeric)
            if not self.family_sampled:
                self.family_sampled = True
                self.sampled.add(self.family)
            if name in self.exemplar_names:
                self.exemplar_ok.append(len(values))
            self.sample_lines.append(i)
            hits.append(hit)
            values.append(value)
            self.prefixes.append(line[: len(head) + 1])
        return end

    def run_end(self, i: int) -> int:
        """Where the run of sample lines starting at ``i`` ends (the next comment or blank)."""
        if self.breaks is None:  # found once per scrape, in C
            firsts = map(_FIRST_CHAR, self.lines)
            self.breaks = list(compress(range(len(self.lines)), map(_BREAKS.__contains__, firsts)))
        k = bisect_right(self.breaks, i)
        return self.breaks[k] if k < len(self.breaks) else len(self.lines)

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
        name, _, numeric = hit
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
            self.exemplar_ok.append(len(self.values))
        exemplar = self.exemplar(match, name) if self.om and match["xv"] is not None else None
        if exemplar is not None:
            self.expo.exemplars[len(self.values)] = exemplar
        if ts is not None:
            self.stamps[len(self.values)] = ts
        self.hits.append(hit)
        self.values.append(value)
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

