"""Per-target parsing: :class:`TargetParser` reuses what repeats between scrapes."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from . import body, native
from .full import _Full, _Layout, _Tail, new_tails
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


def _value_only(layout: _Layout, values: list[float | None], timestamps: list[float | None] | None,
                exemplars: dict[int, Exemplar]) -> Exposition:
    """A value-only parse's exposition: the layout's series and metadata (copies of the
    metadata, which the caller may change) with this scrape's values."""
    types, helps, units = layout.meta
    return Exposition.from_columns((layout.names, layout.labels, values, timestamps),  # type: ignore[arg-type]
                                   dict(types), dict(helps), dict(units), exemplars, layout.fmt)


class SharedCaches:
    """What every :class:`TargetParser` of one format in this process reuses: each text
    before a value (a series), each label set's text, and their parsed tuples.

    The instances of one service print the same lines up to their values (the same
    routes, methods, statuses; the instance label is the scraper's), so a target's first
    scrape finds the label sets another target's first scrape parsed: no second parse, and
    no second copy. The copies mattered beyond memory: a label set is a nest of tuples that
    the cyclic collector walks until it has untracked it, one nesting level per collection;
    200 targets' first scrapes left ~600,000 of them tracked, and each collection that
    walked them stalled the window ~200 ms (issue 16).

    Entries are keyed by exact text and hold immutable tuples, so what one target's parse
    found holds for another's. Safe across threads under the GIL: the dicts are never
    cleared in place (a parse may be reading them), only replaced (:meth:`trim`), and the
    series entries a parse leaves pending are popped by one parse each.
    """

    def __init__(self) -> None:
        self.series: dict[str, _Series] = {}
        self.bases: dict[str, _Base] = {}
        self.tails: dict[str, _Tail] = new_tails()  # body.py's label sets
        self.pending: list[tuple[list[str], Iterable[_Series]]] = []  # series entries to add
        # each parser's samples in its last full parse: the caches' bound is their sum
        self.samples: weakref.WeakKeyDictionary[TargetParser, int] = weakref.WeakKeyDictionary()

    def flush(self) -> None:
        """Enter the series a parse found and left pending (built only when wanted)."""
        pending, series = self.pending, self.series
        while pending:
            try:
                heads, found = pending.pop()
            except IndexError:  # another thread took the last one
                break
            series.update(zip(heads, found))

    def trim(self, parser: TargetParser, n_samples: int) -> None:
        """After a full parse of ``parser`` that read ``n_samples``: start over when series or
        label sets churn, beyond twice the samples of all the parsers sharing these caches
        (the sum of the bounds each target's own caches had)."""
        self.samples[parser] = n_samples
        biggest = max(len(self.series), len(self.tails), len(self.bases))
        if biggest <= 2 * n_samples + 1024:  # within this one target's bound: no sum needed
            return
        if biggest > 2 * sum(self.samples.values()) + 1024:
            self.series, self.bases, self.tails, self.pending = {}, {}, new_tails(), []


_SHARED: dict[str, SharedCaches] = {}
_NOT_YET = SharedCaches()  # a parser's before its first parse (never parsed into)


def shared_caches(fmt: str) -> SharedCaches:
    """The caches the parsers of format ``fmt`` share in this process."""
    caches = _SHARED.get(fmt)
    if caches is None:
        caches = _SHARED.setdefault(fmt, SharedCaches())
    return caches


def forget_shared_caches() -> None:
    """Drop what every parser learnt: the next parser of each format starts cold (the
    benchmark's cold parse; parsers already made keep what they hold)."""
    _SHARED.clear()


class TargetParser:
    """Parses successive scrapes of one target, reusing what repeats.

    If every comment line and every sample line up to its value equals the
    previous successful scrape, everything before the values is known to be
    unchanged and valid, so only the values (and any timestamp or exemplar
    after them) are read. Otherwise the full parser runs, with the text before
    each value and each label set cached by their exact text, so a changed
    line is always parsed anew; those caches are shared with the other targets
    (:class:`SharedCaches`). Not thread-safe: one per target.
    """

    def __init__(self) -> None:
        self._floats = _Floats()
        self._shared = _NOT_YET  # the format's shared caches from the first parse on
        self._layout: _Layout | None = None
        # The last full parse, whose layout is built when the next scrape comes: a parser
        # that reads one scrape only never needs it.
        self._unbuilt: tuple[_Full, int] | None = None
        self._fmt = ""
        # Values new to the cache in the last value-only parse; a target whose values move
        # brings tens a scrape, and reading those together is quicker than one by one.
        self._churn = 1 << 30
        # What read_values (C) saw last (value tokens and their floats): a value whose
        # token repeats is not read again. Any layout's memo is right (see _native.c).
        self._memo: object = None

    def parse(self, text: str, content_type: str | None = None) -> Exposition:
        """Parse one scrape of this target; raises :class:`ParseError`."""
        fmt = detect_format(text, content_type)
        if fmt != self._fmt:  # the caches hold text checked by one format's rules only
            self._shared.samples.pop(self, None)  # its samples no longer count for the other format
            self._shared = shared_caches(fmt)
            self._layout, self._unbuilt = None, None
            self._fmt = fmt
        if self._unbuilt is not None:
            last, n_last = self._unbuilt
            self._unbuilt = None
            self._layout = last.layout(n_last)
        layout = self._layout
        if layout is not None and layout.fmt == fmt and native.ENABLED:
            expo = self._fast_c(layout, text)
            if expo is not None:
                return expo
        lines, n_chars = _split_lines(text)
        if layout is not None and layout.fmt == fmt and layout.n_lines == len(lines):
            expo = self._fast(layout, lines, n_chars)
            if expo is not None:
                return expo
        self._layout = None
        shared = self._shared
        shared.flush()  # what earlier full parses found, now wanted
        full = _Full(fmt, self._floats, shared.series, shared.bases, shared.tails)
        full.pending = shared.pending
        with _gc_paused():
            firsts = body.first_chars(lines)
            take = body.ENABLED and body.pays(text, full.om, len(lines), firsts.count("#"))
            got = body.parse_body(full, lines, text, firsts) if take else None
            if got is None:  # not in the plain shape, or an error: line by line, which names it
                full = _Full(fmt, self._floats, shared.series, shared.bases, shared.tails)
                full.pending = shared.pending
                full.firsts = firsts
                got = full.run(lines)
            expo = got
            self._unbuilt = (full, len(lines))
            full.release()
            del firsts
        self._trim(len(full.values))
        self._shared.trim(self, len(full.values))  # what a value-only parse reads adds nothing
        return expo

    def _fast_c(self, layout: _Layout, text: str) -> Exposition | None:
        """:meth:`_fast` in one C pass over the body (``native.c.read_values``): no line or
        token object is made, each plain value is read from the text as float() reads it,
        and OpenMetrics exemplars of the usual shape with it. What C hands back as text (a
        timestamp after a value, an exemplar of another shape, anything it doubts) is read
        here as :meth:`_fast` reads it. None when the scrape differs from the layout in more
        than its values, or when C cannot tell (a carriage return): :meth:`_fast` decides."""
        got = native.c.read_values(  # type: ignore[union-attr]
            text, layout.plan, layout.kinds, len(layout.names), Exemplar, self._memo)
        if got is None:
            return None
        values, odd, exemplars, self._memo = got
        timestamps = None
        if odd:
            tokens = values  # only the tokens at ``odd`` are read, and those are str
            values = list(values)
            for k in odd:
                values[k] = None
            try:
                timestamps = self._rests(layout, tokens, values, exemplars)
            except ValueError:
                return None
            if len(exemplars) > 1:  # C's first, then those read here: in sample order, as _fast gives
                exemplars = dict(sorted(exemplars.items()))
            self._trim(len(values))  # _rests cached what it read: keep the cache bounded
        return _value_only(layout, values, timestamps, exemplars)

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
        learnt = self._churn * LEARN_SHARE > len(tokens)
        if learnt:  # many new values last time: check them all at once
            floats.learn(tokens)
        try:  # one C pass when every token is a plain value (any new one checked and cached)
            values: list[float | None] = list(map(floats.__getitem__, tokens))
        except ValueError:  # a timestamp or exemplar follows some value, or something is wrong
            if not learnt:  # else every new plain value is in already: learning again finds none
                floats.learn(tokens)  # new plain values after the token that stopped the pass
            values = list(map(floats.get, tokens))  # None: not a number, or more than a value
            try:
                timestamps = self._rests(layout, tokens, values, exemplars)
            except ValueError:
                return None
        self._churn = len(floats) - known
        self._trim(len(values))
        return _value_only(layout, values, timestamps, exemplars)

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
        """Keep the value cache bounded when values churn."""
        if len(self._floats) > 4 * n_samples + 4096:
            self._floats.clear()
