"""Per-target parsing: :class:`TargetParser` reuses what repeats between scrapes."""

from __future__ import annotations

from collections.abc import Iterable

from . import body
from .full import _Full, _Layout
from .grammar import (
    _REST_RE,
    _Base,
    _exemplar,
    _Floats,
    _Series,
    _split_lines,
    _timestamp,
    om_rests,
)
from .types import OPENMETRICS, Exemplar, Exposition, _gc_paused, detect_format

# Read the new values of a scrape together (``_Floats.learn``) when the last one brought more
# than one per LEARN_SHARE samples; fewer are quicker one by one as the values pass meets them.
LEARN_SHARE = 16


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
        # The last full parse, whose layout is built when the next scrape comes: a parser
        # that reads one scrape only never needs it.
        self._unbuilt: tuple[_Full, int] | None = None
        self._pending: list[tuple[list[str], Iterable[_Series]]] = []  # series cache entries to add
        self._fmt = ""
        # Values new to the cache in the last value-only parse; a target whose values move
        # brings tens a scrape, and reading those together is quicker than one by one.
        self._churn = 1 << 30

    def parse(self, text: str, content_type: str | None = None) -> Exposition:
        """Parse one scrape of this target; raises :class:`ParseError`."""
        fmt = detect_format(text, content_type)
        if fmt != self._fmt:  # the caches hold text checked by one format's rules only
            self._series, self._bases, self._layout, self._pending = {}, {}, None, []
            self._unbuilt = None
            self._fmt = fmt
        lines, n_chars = _split_lines(text)
        if self._unbuilt is not None:
            last, n_last = self._unbuilt
            self._unbuilt = None
            self._layout = last.layout(n_last)
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
            firsts = body.first_chars(lines)
            take = body.ENABLED and body.pays(text, full.om, len(lines), firsts.count("#"))
            got = body.parse_body(full, lines, text, firsts) if take else None
            if got is None:  # not in the plain shape, or an error: line by line, which names it
                full = _Full(fmt, self._floats, self._series, self._bases)
                full.pending = self._pending
                full.firsts = firsts
                got = full.run(lines)
            expo = got
            self._unbuilt = (full, len(lines))
            full.release()
            del firsts
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
        floats = self._floats
        known = len(floats)
        if self._churn * LEARN_SHARE > len(tokens):  # many new values last time: check them all at once
            floats.learn(tokens)
        try:  # one C pass when every token is a plain value (any new one checked and cached)
            values: list[float | None] = list(map(floats.__getitem__, tokens))
        except ValueError:  # a timestamp or exemplar follows some value, or something is wrong
            floats.learn(tokens)  # new plain values after the token that stopped the pass
            values = list(map(floats.get, tokens))  # None: not a number, or more than a value
            try:
                timestamps = self._rests(layout, tokens, values, exemplars)
            except ValueError:
                return None
        self._churn = len(floats) - known
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
        """``_rests`` for OpenMetrics tokens of the usual shape (see :func:`.grammar.om_rests`)."""
        return om_rests(self._floats, layout.exemplar_ok, tokens, values, exemplars)

    def _trim(self, n_samples: int) -> None:
        """Keep the caches bounded when series or values churn."""
        if len(self._floats) > 4 * n_samples + 4096:
            self._floats.clear()
        if len(self._series) > 2 * n_samples + 1024:
            self._series.clear()
            self._pending.clear()
            self._bases.clear()
