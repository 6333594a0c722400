"""Per-target parsing: :class:`TargetParser` reuses what repeats between scrapes."""

from __future__ import annotations

import re
from itertools import compress, repeat
from operator import add, is_

from .full import _Full, _Layout
from .grammar import (
    _MAX_EXEMPLAR_LABEL_CHARS,
    _REST_RE,
    _TS,
    _Base,
    _exemplar,
    _Floats,
    _Series,
    _split_lines,
    _timestamp,
)
from .types import OPENMETRICS, Exemplar, Exposition, _gc_paused, _tuple_new, detect_format

# What follows an OpenMetrics value, in its usual shape, one token per line: an optional
# timestamp, then an optional exemplar with one label whose value has no escape (a trace id).
# Every match is also a match of the full grammar (_REST_RE); anything else takes that path.
_OM_RESTS = re.compile(r'^([^ \n]+)(?: ([^ #\n][^ \n]*))?'
                       r'(?: # \{([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"\} ([^ \n]+)(?: ([^ \n]+))?)?$',
                       re.MULTILINE)
_OM_STAMPS = re.compile(rf"^{_TS[OPENMETRICS].pattern}$", re.MULTILINE)


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
        self._pending: list[tuple[list[str], list[_Series]]] = []  # series cache entries to add
        self._fmt = ""

    def parse(self, text: str, content_type: str | None = None) -> Exposition:
        """Parse one scrape of this target; raises :class:`ParseError`."""
        fmt = detect_format(text, content_type)
        if fmt != self._fmt:  # the caches hold text checked by one format's rules only
            self._series, self._bases, self._layout, self._pending = {}, {}, None, []
            self._fmt = fmt
        lines, n_chars = _split_lines(text)
        layout = self._layout
        if layout is not None and layout.fmt == fmt and layout.n_lines == len(lines):
            expo = self._fast(layout, lines, n_chars)
            if expo is not None:
                return expo
        self._layout = None
        for heads, found in self._pending:  # what the last full parse found, now wanted
            self._series.update(zip(heads, found))
        self._pending.clear()
        full = _Full(fmt, self._floats, self._series, self._bases)
        full.pending = self._pending
        with _gc_paused():
            expo = full.run(lines)
            self._layout = full.layout(len(lines))
        self._trim(len(full.values))
        return expo

    def _fast(self, layout: _Layout, lines: list[str], n_chars: int) -> Exposition | None:
        """Values, timestamps, exemplars only; None when anything else differs (the full
        parser then decides, and reports any error)."""
        if layout.literal(lines) != layout.literal_lines:
            return None
        sample_lines = layout.sample(lines)
        # removeprefix leaves a line whole when its prefix differs; then the lengths
        # cannot add up, since every prefix is at least two characters long. The literal
        # lines are equal, so n_chars minus theirs is what the sample lines hold.
        tokens = list(map(str.removeprefix, sample_lines, layout.prefixes))
        if sum(map(len, tokens)) + layout.fixed_chars != n_chars:
            return None
        exemplars: dict[int, Exemplar] = {}
        timestamps = None
        try:  # one C pass when every token is a plain value (new ones are checked and cached)
            values: list[float | None] = list(map(self._floats.__getitem__, tokens))
        except ValueError:  # a timestamp or exemplar follows some value, or something is wrong
            values = list(map(self._floats.get, tokens))  # None: not seen, or more than a value
            try:
                timestamps = self._rests(layout, tokens, values, exemplars)
            except ValueError:
                return None
        self._trim(len(values))
        types, helps, units = layout.meta
        return Exposition.from_columns((layout.names, layout.labels, values, timestamps),  # type: ignore[arg-type]
                                       dict(types), dict(helps), dict(units), exemplars, layout.fmt)

    def _rests(self, layout: _Layout, tokens: list[str], values: list[float | None],
               exemplars: dict[int, Exemplar]) -> list[float | None] | None:
        """Fill in the values the cache did not know, reading any timestamp and exemplar
        after them; return the timestamps, if any. ValueError on anything invalid."""
        if layout.fmt == OPENMETRICS:
            done = self._om_rests(layout, tokens, values, exemplars)
            if done is not None:
                return done[0]
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

    def _om_rests(self, layout: _Layout, tokens: list[str], values: list[float | None],
                  exemplars: dict[int, Exemplar]) -> tuple[list[float | None] | None] | None:
        """``_rests`` for OpenMetrics tokens of the usual shape, read with one regex pass over
        all of them (a scrape of exemplar-carrying buckets has one per bucket that saw an
        observation, and their trace ids change every scrape); None, with nothing changed,
        when one is of another shape. ValueError on anything invalid, as ``_rests``."""
        missing = list(compress(range(len(values)), map(is_, values, repeat(None))))
        rows = _OM_RESTS.findall("\n".join(map(tokens.__getitem__, missing)))
        if len(rows) != len(missing):
            return None
        floats = self._floats
        value_tokens, ts_tokens, names, label_values, xv_tokens, xts_tokens = zip(*rows) if rows else ((),) * 6
        list(map(values.__setitem__, missing, map(floats.__getitem__, value_tokens)))  # in C
        timestamps: list[float | None] | None = None
        if any(ts_tokens):
            timestamps = [None] * len(values)
            stamped = list(map(bool, ts_tokens))
            stamps = list(compress(ts_tokens, stamped))
            if len(_OM_STAMPS.findall("\n".join(stamps))) != len(stamps):
                raise ValueError("invalid timestamp")
            list(map(timestamps.__setitem__, compress(missing, stamped), map(float, stamps)))
        if any(names):
            carrying = list(map(bool, names))
            at = list(compress(missing, carrying))
            names, label_values = list(compress(names, carrying)), list(compress(label_values, carrying))
            if (not layout.exemplar_ok.issuperset(at) or "__name__" in names
                    or max(map(add, map(len, names), map(len, label_values))) > _MAX_EXEMPLAR_LABEL_CHARS):
                raise ValueError("exemplar not allowed here, or invalid")
            xts_tokens = list(compress(xts_tokens, carrying))
            xts_given = list(filter(None, xts_tokens))
            if len(_OM_STAMPS.findall("\n".join(xts_given))) != len(xts_given):
                raise ValueError("invalid exemplar timestamp")
            xvalues = map(floats.__getitem__, compress(xv_tokens, carrying))
            xstamps = (map(float, xts_tokens) if len(xts_given) == len(xts_tokens)
                       else (float(t) if t else None for t in xts_tokens))
            exemplars.update(zip(at, map(_tuple_new, repeat(Exemplar),
                                          zip(zip(zip(names, label_values)), xvalues, xstamps))))
        return (timestamps,)

    def _trim(self, n_samples: int) -> None:
        """Keep the caches bounded when series or values churn."""
        if len(self._floats) > 4 * n_samples + 4096:
            self._floats.clear()
        if len(self._series) > 2 * n_samples + 1024:
            self._series.clear()
            self._pending.clear()
            self._bases.clear()
