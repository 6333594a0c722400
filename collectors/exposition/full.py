"""The full exposition parser: every line by the grammar, with caches that a
target's next scrape reuses (see :class:`.target.TargetParser`).

A first scrape's long runs of sample lines take the bulk path (:meth:`_Full.bulk_run`):
the per-line loop costs a few microseconds of Python per line, so a run of sample lines
(between two comments) is cut, looked up and converted with C-level passes (``map``, one
``re.findall`` over the new series texts); Python runs once per *new series text*, in one
flat loop, and the label set beside ``le``/``quantile`` is still parsed once per histogram
group. The bulk path only ever accepts: anything unusual (a timestamp, an exemplar, blanks,
an error, a run spanning families) makes it return False with no effect but validated cache
entries, and the per-line loop then reads the run and reports any error exactly as before.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, contains, eq, is_, is_not, itemgetter, not_, or_
from typing import NoReturn

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

_HEAD_OF, _TOKEN_OF = itemgetter(0), itemgetter(2)
_NAME_OF, _LABELS_OF = itemgetter(0), itemgetter(1)
_NUMERIC_OF = itemgetter(2)
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
MIN_RUN = 16  # shorter runs: the per-line loop is as quick


def _shapes(fmt: str) -> dict[str, tuple[tuple[str, ...], str | None, str | None, str]]:
    """Per type: its sample name suffixes, the one that may carry an exemplar, the one that
    needs a numeric bound label, and that label (buckets ``le``, summary quantiles
    ``quantile``); found once here, not each time a family opens."""
    om = fmt == OPENMETRICS
    out = {}
    for typ, suffixes in _SUFFIXES[fmt].items():
        exemplar = {"histogram": "_bucket", "gaugehistogram": "_bucket", "counter": "_total"}.get(typ) if om else None
        bounded, label = {"histogram": ("_bucket", "le"), "gaugehistogram": ("_bucket", "le"),
                          "summary": ("", "quantile")}.get(typ, (None, ""))
        out[typ] = (suffixes, exemplar, bounded, label)
    return out


_SHAPES = {fmt: _shapes(fmt) for fmt in (TEXT, OPENMETRICS)}

def _bulk_values(floats: _Floats, tokens: list[str]) -> list[float] | None:
    """The tokens as floats; None if one is no number. New tokens are checked with one
    regex pass over all of them, as ``_Floats`` would check each."""
    floats.learn(tokens)
    values = list(map(floats.get, tokens))
    return None if None in values else values  # type: ignore[return-value]


_NO_PAIR: tuple[tuple[tuple[str, str], ...], tuple[str, ...]] = ((), _NONE)
# body.py's cache: a label set's text (``labels}``, or "" for none) → its labels and its
# numeric bound labels, or (None, None) when the text is no valid label set
_Tail = tuple[Labels, tuple[str, ...]] | tuple[None, None]


def new_tails() -> dict[str, _Tail]:
    """An empty label-set cache for body.py (the text of no label set is known)."""
    return {"": ((), _NONE)}


_NO_SPLIT: tuple[Labels, Labels] = ((), ())

def _le_pair(floats: _Floats, first: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """``le="x`` → ((("le", "x"),), ("le",) if x is a number and not NaN); else _NO_PAIR."""
    value = first[4:]
    if first[:4] != 'le="' or '"' in value or "\\" in value:
        return _NO_PAIR
    try:
        number = floats[value]
        numeric = _BOUND_OK["le"] if not math.isnan(number) else _NONE
    except ValueError:
        numeric = _NONE
    return (("le", value),), numeric


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
    # For the C read_values (native.py): per line, the literal line or the sample's prefix, and its kind
    # (0 literal, 1 sample, 2 sample whose family allows an exemplar)
    plan: tuple[str, ...]
    kinds: bytes




class _Full:
    """One run of the full parser over the lines of one scrape."""

    def __init__(self, fmt: str, floats: _Floats, series: dict[str, _Series],
                 bases: dict[str, _Base], tails: dict[str, _Tail] | None = None) -> None:
        self.fmt, self.om, self.floats = fmt, fmt == OPENMETRICS, floats
        # kept between scrapes (the TargetParser's, or shared by all targets of this format)
        self.series, self.bases = series, bases
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
        self.prefix_of: tuple[list[str], list[str]] | None = None  # body.py: prefixes = lines minus these tails
        self.hits: list[_Series] = []  # each sample's series and value, in order
        self.values: list[float] = []
        self.stamps: dict[int, float] = {}  # sample index → timestamp, for the few that have one
        self.stamp_list: list[float | None] | None = None
        self.names: tuple[str, ...] = ()  # set at the end of run()
        self.labels: tuple[Labels, ...] = ()
        self.breaks: list[int] | None = None  # indexes of lines that are no sample line
        self.firsts: list[str] | None = None  # the first character of each line, if known
        self.pending: list[tuple[list[str], Iterable[_Series]]] = []  # new series cache entries
        self.le_pairs: dict[str, tuple[Labels, tuple[str, ...]]] = {}  # see _bulk_series
        self.le_rests: dict[str, tuple[Labels, Labels]] = {}
        self.plain_sets: dict[str, Labels | None] = {}
        self.tail_sets: dict[str, _Tail] = new_tails() if tails is None else tails  # body.py
        self.bound_pairs: dict[tuple[str, str], tuple[Labels, tuple[str, ...]] | None] = {}  # body.py
        self.bound_arounds: dict[tuple[str, str, str], tuple[Labels, Labels] | None] = {}  # body.py
        self.front_pairs: dict[str, tuple[Labels, tuple[str, ...]] | None] = {}  # body.py: 'le="x' -> pair
        self.front_arounds: dict[str, tuple[Labels, Labels] | None] = {}  # body.py: rest -> labels around le

    def release(self) -> None:
        """Drop what only this parse needed, keeping what ``layout`` reads: freed now, the
        young-generation collection after the parse does not walk it, nor a later one."""
        self.names_ok = self.sampled = self.claimed = set()
        self.hits, self.stamps, self.breaks, self.firsts = [], {}, None, None
        self.le_pairs, self.le_rests, self.plain_sets, self.tail_sets = {}, {}, {}, {}
        self.bound_pairs, self.bound_arounds, self.front_pairs, self.front_arounds = {}, {}, {}, {}

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
        if self.prefix_of is not None:
            self.prefixes = list(map(str.removesuffix, *self.prefix_of))
        fixed_chars = sum(map(len, self.prefixes)) + sum(map(len, literal_lines))
        plan, kinds = list(self.lines), bytearray(n_lines)  # the literal lines stay as they are
        list(map(plan.__setitem__, self.sample_lines, self.prefixes))
        list(map(kinds.__setitem__, self.sample_lines, repeat(1)))
        for k in self.exemplar_ok:
            kinds[self.sample_lines[k]] = 2
        return _Layout(self.fmt, n_lines, pick, literal_lines, _picker(self.sample_lines),
                       self.prefixes, fixed_chars, names, labels,
                       frozenset(self.exemplar_ok),
                       (dict(self.expo.types), dict(self.expo.helps), dict(self.expo.units)),
                       tuple(plan), bytes(kinds))

    def start_family(self, name: str, typ: str | None) -> None:
        """A HELP/TYPE/UNIT line or a sample outside the current family opens a family."""
        self.family, self.family_sampled = name, False
        self.set_type(typ or ("unknown" if self.om else "untyped"), fresh=True)

    def set_type(self, typ: str, fresh: bool = False) -> None:
        self.ftype = typ
        family = self.family
        suffixes, exemplar_suffix, bounded_suffix, self.bound_label = _SHAPES[self.fmt][typ]
        self.allowed = (family,) if suffixes == ("",) else tuple(family + s for s in suffixes)
        self.exemplar_names = () if exemplar_suffix is None else (family + exemplar_suffix,)
        self.bounded = None if bounded_suffix is None else family + bounded_suffix
        if self.om:  # OpenMetrics: a family's lines are contiguous and its sample names its own
            owned = {family, *self.allowed} if fresh else set(self.allowed) - {family}
            for name in owned:
                if name in self.claimed:
                    self.fail(f"metric family {name!r} appears twice (families must be contiguous)")
                self.claimed.add(name)

    def metric_name(self, name: str) -> str:
        if name not in self.names_ok:  # a HELP and a TYPE line name each family twice
            if _METRIC_NAME.fullmatch(name) is None:
                self.fail(f"invalid metric name {name!r}")
            self.names_ok.add(name)
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

        A long run is first offered to :meth:`bulk_run`. Otherwise, line
        by line, written flat: ``name{labels} value`` is cut at its last space; the
        part before it is looked up (or, new, parsed as name and label set) and only
        the value token is read. Anything else (timestamps, exemplars, odd blanks,
        errors) goes through :meth:`sample`.
        """
        end = self.run_end(start)
        if end - start >= MIN_RUN and self.bulk_run(lines, start, end):
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
            firsts = map(_FIRST_CHAR, self.lines) if self.firsts is None else self.firsts
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
        if brace < 0:
            hit = self.series[head] = (name, (), _NONE)
            return hit
        found = self.bound_last(head, brace) if 'le="' in head else None  # also finds 'quantile="'
        if found is not None:
            hit = self.series[head] = (name, *found)
            return hit
        try:
            labels, numeric = self.label_set(head[brace + 1:-1])
        except ParseError:
            return None  # the regex path reports it, with its own reason
        hit = self.series[head] = (name, labels, numeric)
        return hit

    def bound_last(self, head: str, brace: int) -> tuple[Labels, tuple[str, ...]] | None:
        """``name{rest,le="x"}`` or ``name{le="x"}`` (likewise ``quantile``), as client_golang
        writes buckets and quantiles: the labels and numeric bound labels ``label_set`` would
        find, with C string methods and ``rest`` parsed once; None for any other text."""
        before, sep, value = head.rpartition('="')
        if not sep or brace > len(before) or value[-2:] != '"}':
            return None
        value = value[:-2]
        rest, comma, label = before[brace + 1:].rpartition(",")
        if label not in _BOUND_OK or '"' in value or "\\" in value or (comma and rest[-1:] != '"'):
            return None
        try:
            numeric = _BOUND_OK[label] if self.floats[value] == self.floats[value] else _NONE  # not NaN
        except ValueError:
            numeric = _NONE
        if not comma:
            return ((label, value),), numeric
        found = self.bases.get(rest)
        if found is None:
            try:
                found = self.new_base(rest)
            except ParseError:
                return None
        labels, slots = found
        at = slots.get(label)
        if at is None or len(slots) < 2:  # the label twice, or the other bound label in rest
            return None
        return (*labels[:at], (label, value), *labels[at:]), numeric

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
            # "le" also finds 0.0.4's le = "1" (blanks around =) and any quantile
            return labels, _numeric(labels) if "le" in block else _NONE
        pair, rest = split
        try:
            rest_labels, slots = self.bases.get(rest) or self.new_base(rest)
        except ParseError:  # the cut fell inside a quoted value (a="x,le="): the whole block decides
            labels = (self.bases.get(block) or self.new_base(block))[0]
            return labels, _numeric(labels)
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

    # -- the bulk path: a first scrape's sample lines, a whole run at a time ---------------

    def bulk_run(self, lines: list[str], i: int, j: int) -> bool:
        """Read the sample lines ``lines[i:j]`` into this parser; False (nothing read) if any
        of them needs the per-line loop."""
        run = lines[i:j]
        if self.om and any(map(str.__contains__, run, repeat(" # "))):
            return False  # exemplars: found out now rather than after the work below
        parts = list(map(str.rpartition, run, repeat(" ")))
        heads = list(map(_HEAD_OF, parts))
        tokens = list(map(_TOKEN_OF, parts))
        hits: list[_Series | None] = list(map(self.series.get, heads)) if self.series else [None] * len(run)
        if None in hits and not self._bulk_resolve(heads, hits):
            return False
        values = _bulk_values(self.floats, tokens)
        if values is None:
            return False
        series: list[_Series] = hits  # type: ignore[assignment]  # all found now
        if not self._bulk_enter(i, series):
            return False
        if not self.family_sampled:
            self.family_sampled = True
            self.sampled.add(self.family)
        if self.exemplar_names:
            may_carry = frozenset(self.exemplar_names).__contains__
            start = len(self.values)
            self.exemplar_ok.extend(compress(range(start, start + len(run)), map(may_carry, map(_NAME_OF, series))))
        self.sample_lines.extend(range(i, j))
        self.hits.extend(series)
        self.values.extend(values)
        self.prefixes.extend(map(str.removesuffix, run, tokens))  # the line up to its value
        return True

    def _bulk_enter(self, i: int, series: list[_Series]) -> bool:
        """Every series belongs to the current family (opened by the first, as the per-line
        loop would) and carries the bound label its family needs."""
        name, _, numeric = series[0]
        if name not in self.allowed:
            self.i = i  # what the per-line loop does first on this line; it may raise the same error
            self.enter(name, numeric)
        bounded = self.bounded
        names = set(map(_NAME_OF, series))  # a few distinct names, compared by identity mostly
        if not names.issubset(self.allowed):
            return False
        if bounded in names:  # each bucket's ``le`` (a summary quantile's ``quantile``) is a number
            of_bounded = compress(map(_NUMERIC_OF, series), map(eq, map(_NAME_OF, series), repeat(bounded)))
            return all(map(contains, of_bounded, repeat(self.bound_label)))
        return True

    def _bulk_resolve(self, heads: list[str], hits: list[_Series | None]) -> bool:
        """Fill in the series of the heads not seen before; False if one is not plainly
        ``name`` or ``name{labels}``. They join the series cache at the next full parse
        (``self.pending``): a scrape shaped like this one never needs them."""
        if len(heads) == hits.count(None):
            found = self._bulk_series(heads)
            if found is None:
                return False
            hits[:] = found
            self.pending.append((heads, found))
            return True
        missing = list(compress(range(len(hits)), map(not_, hits)))
        new_heads = list(map(heads.__getitem__, missing))
        found = self._bulk_series(new_heads)
        if found is None:
            return False
        for k, hit in zip(missing, found):
            hits[k] = hit
        self.pending.append((new_heads, found))
        return True

    def _bulk_series(self, heads: list[str]) -> list[_Series] | None:
        """Name, labels and numeric bound labels of each head, as ``_Full.decompose`` finds
        them; None where that would fail.

        A bucket written ``name{le="x",rest}`` (prometheus_client's spelling) is cut in C
        passes; its labels are ``rest``'s, parsed once per distinct ``rest``, with the
        ``le`` pair spliced in where it sorts. Every other head (a bucket's ``_count`` and
        ``_sum``, a bound label written last, anything odd) goes through ``decompose``.
        """
        by_brace = list(map(str.partition, heads, repeat("{")))
        names = list(map(_FIRST, by_brace))
        for name in set(names).difference(self.names_ok):
            if _METRIC_NAME.fullmatch(name) is None:
                return None
            self.names_ok.add(name)
        by_comma = list(map(str.partition, map(_THIRD, by_brace), repeat('",')))  # le="x  ",  rest}
        firsts, rests = list(map(_FIRST, by_comma)), list(map(_THIRD, by_comma))
        pairs, splits = self.le_pairs, self.le_rests
        for first in set(firsts).difference(pairs):
            pairs[first] = _le_pair(self.floats, first)
        pair_hits = list(map(pairs.__getitem__, firsts))
        for rest in set(compress(rests, map(is_not, pair_hits, repeat(_NO_PAIR)))).difference(splits):
            splits[rest] = self._bulk_le_rest(rest)  # only buckets' rests: others are no label set
        split_hits = list(map(splits.get, rests, repeat(_NO_SPLIT)))
        labels = map(add, map(add, map(_FIRST, split_hits), map(_FIRST, pair_hits)), map(_SECOND, split_hits))
        out: list[_Series] = list(zip(names, labels, map(_SECOND, pair_hits)))
        odd = map(or_, map(is_, pair_hits, repeat(_NO_PAIR)), map(is_, split_hits, repeat(_NO_SPLIT)))
        return out if self._bulk_fill_odd(heads, by_brace, list(compress(range(len(heads)), odd)), out) else None

    def _bulk_fill_odd(self, heads: list[str], by_brace: list[tuple[str, str, str]], odd: list[int],
                  out: list[_Series]) -> bool:
        """The heads that are no bucket with ``le`` first: ``name`` and ``name{labels}``
        without a bound label by a lookup per distinct label set; the rest (and any
        error) through ``decompose``. False if one is invalid."""
        picked = list(map(by_brace.__getitem__, odd))
        keys = list(map(add, map(_SECOND, picked), map(_THIRD, picked)))  # "" or "{labels}"
        plain = self.plain_sets
        for key in set(keys).difference(plain):
            plain[key] = self._bulk_plain_set(key)
        found = map(plain.__getitem__, keys)
        for k, name, labels in zip(odd, map(_FIRST, picked), found):
            if labels is None:
                hit = self.decompose(heads[k])
                if hit is None:
                    return False
                out[k] = hit
            else:
                out[k] = (name, labels, _NONE)
        return True

    def _bulk_plain_set(self, key: str) -> Labels | None:
        """``{labels}`` (or nothing) without ``le``/``quantile`` → its labels; None for any
        other text, left to ``decompose``."""
        if not key:
            return ()
        if key[-1] != "}" or 'le="' in key:  # also finds 'quantile="'
            return None
        try:
            return (self.bases.get(key[1:-1]) or self.new_base(key[1:-1]))[0]
        except ParseError:
            return None

    def _bulk_le_rest(self, rest: str) -> tuple[Labels, Labels]:
        """``rest}`` → its labels before and after where ``le`` sorts in, if ``rest`` is a
        valid label set with neither bound label; else _NO_SPLIT."""
        if rest[-1:] != "}" or len(rest) < 2:
            return _NO_SPLIT
        try:
            labels, slots = self.bases.get(rest[:-1]) or self.new_base(rest[:-1])
        except ParseError:
            return _NO_SPLIT  # the per-line loop reports it with its line
        if len(slots) < 2:
            return _NO_SPLIT
        at = slots["le"]
        return labels[:at], labels[at:]
