"""A first scrape's sample lines, a whole run at a time (:func:`bulk_run`).

The full parser's per-line loop costs a few microseconds of Python per line.
Here a run of sample lines (between two comments) is cut, looked up and
converted with C-level passes (``map``, one ``re.findall`` over the new series
texts); Python runs once per *new series text*, in one flat loop, and the
label set beside ``le``/``quantile`` is still parsed once per histogram group.

It only ever accepts: anything unusual (a timestamp, an exemplar, blanks, an
error, a run spanning families) makes :func:`bulk_run` return False with no
effect but validated cache entries, and the per-line loop then reads the run
and reports any error exactly as before.
"""

from __future__ import annotations

import math
import re
from itertools import compress, repeat
from operator import add, contains, eq, is_, is_not, itemgetter, not_, or_
from typing import TYPE_CHECKING

from .grammar import _BOUND_OK, _METRIC_NAME, _NONE, _Floats, _Series
from .types import _VALUE, Labels, ParseError

if TYPE_CHECKING:
    from .full import _Full

_HEAD_OF, _TOKEN_OF = itemgetter(0), itemgetter(2)
_NAME_OF, _LABELS_OF = itemgetter(0), itemgetter(1)
_NUMERIC_OF = itemgetter(2)
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
_NUMBERS = re.compile(rf"^(?:{_VALUE.pattern})$", re.MULTILINE)  # what _Floats accepts, one per line
MIN_RUN = 16  # shorter runs: the per-line loop is as quick


def bulk_run(full: _Full, lines: list[str], i: int, j: int) -> bool:
    """Read the sample lines ``lines[i:j]`` into ``full``; False (nothing read) if any
    of them needs the per-line loop."""
    run = lines[i:j]
    if full.om and any(map(str.__contains__, run, repeat(" # "))):
        return False  # exemplars: found out now rather than after the work below
    parts = list(map(str.rpartition, run, repeat(" ")))
    heads = list(map(_HEAD_OF, parts))
    tokens = list(map(_TOKEN_OF, parts))
    hits: list[_Series | None] = list(map(full.series.get, heads)) if full.series else [None] * len(run)
    if None in hits and not _resolve(full, heads, hits):
        return False
    values = _values(full.floats, tokens)
    if values is None:
        return False
    series: list[_Series] = hits  # type: ignore[assignment]  # all found now
    if not _enter(full, i, series):
        return False
    if not full.family_sampled:
        full.family_sampled = True
        full.sampled.add(full.family)
    if full.exemplar_names:
        may_carry = frozenset(full.exemplar_names).__contains__
        start = len(full.values)
        full.exemplar_ok.extend(compress(range(start, start + len(run)), map(may_carry, map(_NAME_OF, series))))
    full.sample_lines.extend(range(i, j))
    full.hits.extend(series)
    full.values.extend(values)
    full.prefixes.extend(map(str.removesuffix, run, tokens))  # the line up to its value
    return True


def _values(floats: _Floats, tokens: list[str]) -> list[float] | None:
    """The tokens as floats; None if one is no number. New tokens are checked with one
    regex pass over all of them, as ``_Floats`` would check each."""
    new = set(tokens).difference(floats)
    if new:
        if len(_NUMBERS.findall("\n".join(new))) != len(new):  # a token per line, or no match
            return None
        floats.update(zip(new, map(float, new)))
    return list(map(floats.__getitem__, tokens))


def _enter(full: _Full, i: int, series: list[_Series]) -> bool:
    """Every series belongs to the current family (opened by the first, as the per-line
    loop would) and carries the bound label its family needs."""
    name, _, numeric = series[0]
    if name not in full.allowed:
        full.i = i  # what the per-line loop does first on this line; it may raise the same error
        full.enter(name, numeric)
    bounded = full.bounded
    names = set(map(_NAME_OF, series))  # a few distinct names, compared by identity mostly
    if not names.issubset(full.allowed):
        return False
    if bounded in names:  # each bucket's ``le`` (a summary quantile's ``quantile``) is a number
        of_bounded = compress(map(_NUMERIC_OF, series), map(eq, map(_NAME_OF, series), repeat(bounded)))
        return all(map(contains, of_bounded, repeat(full.bound_label)))
    return True


def _resolve(full: _Full, heads: list[str], hits: list[_Series | None]) -> bool:
    """Fill in the series of the heads not seen before; False if one is not plainly
    ``name`` or ``name{labels}``. They join the series cache at the next full parse
    (``full.pending``): a scrape shaped like this one never needs them."""
    if len(heads) == hits.count(None):
        found = _series_of(full, heads)
        if found is None:
            return False
        hits[:] = found
        full.pending.append((heads, found))
        return True
    missing = list(compress(range(len(hits)), map(not_, hits)))
    new_heads = list(map(heads.__getitem__, missing))
    found = _series_of(full, new_heads)
    if found is None:
        return False
    for k, hit in zip(missing, found):
        hits[k] = hit
    full.pending.append((new_heads, found))
    return True


def _series_of(full: _Full, heads: list[str]) -> list[_Series] | None:
    """Name, labels and numeric bound labels of each head, as ``_Full.decompose`` finds
    them; None where that would fail.

    A bucket written ``name{le="x",rest}`` (prometheus_client's spelling) is cut in C
    passes; its labels are ``rest``'s, parsed once per distinct ``rest``, with the
    ``le`` pair spliced in where it sorts. Every other head (a bucket's ``_count`` and
    ``_sum``, a bound label written last, anything odd) goes through ``decompose``.
    """
    by_brace = list(map(str.partition, heads, repeat("{")))
    names = list(map(_FIRST, by_brace))
    for name in set(names).difference(full.names_ok):
        if _METRIC_NAME.fullmatch(name) is None:
            return None
        full.names_ok.add(name)
    by_comma = list(map(str.partition, map(_THIRD, by_brace), repeat('",')))  # le="x  ",  rest}
    firsts, rests = list(map(_FIRST, by_comma)), list(map(_THIRD, by_comma))
    pairs, splits = full.le_pairs, full.le_rests
    for first in set(firsts).difference(pairs):
        pairs[first] = _le_pair(full.floats, first)
    pair_hits = list(map(pairs.__getitem__, firsts))
    for rest in set(compress(rests, map(is_not, pair_hits, repeat(_NO_PAIR)))).difference(splits):
        splits[rest] = _le_rest(full, rest)  # only buckets' rests: others are no label set
    split_hits = list(map(splits.get, rests, repeat(_NO_SPLIT)))
    labels = map(add, map(add, map(_FIRST, split_hits), map(_FIRST, pair_hits)), map(_SECOND, split_hits))
    out: list[_Series] = list(zip(names, labels, map(_SECOND, pair_hits)))
    odd = map(or_, map(is_, pair_hits, repeat(_NO_PAIR)), map(is_, split_hits, repeat(_NO_SPLIT)))
    return out if _fill_odd(full, heads, by_brace, list(compress(range(len(heads)), odd)), out) else None


def _fill_odd(full: _Full, heads: list[str], by_brace: list[tuple[str, str, str]], odd: list[int],
              out: list[_Series]) -> bool:
    """The heads that are no bucket with ``le`` first: ``name`` and ``name{labels}``
    without a bound label by a lookup per distinct label set; the rest (and any
    error) through ``decompose``. False if one is invalid."""
    picked = list(map(by_brace.__getitem__, odd))
    keys = list(map(add, map(_SECOND, picked), map(_THIRD, picked)))  # "" or "{labels}"
    plain = full.plain_sets
    for key in set(keys).difference(plain):
        plain[key] = _plain_set(full, key)
    found = map(plain.__getitem__, keys)
    for k, name, labels in zip(odd, map(_FIRST, picked), found):
        if labels is None:
            hit = full.decompose(heads[k])
            if hit is None:
                return False
            out[k] = hit
        else:
            out[k] = (name, labels, _NONE)
    return True


def _plain_set(full: _Full, key: str) -> Labels | None:
    """``{labels}`` (or nothing) without ``le``/``quantile`` → its labels; None for any
    other text, left to ``decompose``."""
    if not key:
        return ()
    if key[-1] != "}" or 'le="' in key:  # also finds 'quantile="'
        return None
    try:
        return (full.bases.get(key[1:-1]) or full.new_base(key[1:-1]))[0]
    except ParseError:
        return None


_NO_PAIR: tuple[tuple[tuple[str, str], ...], tuple[str, ...]] = ((), _NONE)
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


def _le_rest(full: _Full, rest: str) -> tuple[Labels, Labels]:
    """``rest}`` → its labels before and after where ``le`` sorts in, if ``rest`` is a
    valid label set with neither bound label; else _NO_SPLIT."""
    if rest[-1:] != "}" or len(rest) < 2:
        return _NO_SPLIT
    try:
        labels, slots = full.bases.get(rest[:-1]) or full.new_base(rest[:-1])
    except ParseError:
        return _NO_SPLIT  # the per-line loop reports it with its line
    if len(slots) < 2:
        return _NO_SPLIT
    at = slots["le"]
    return labels[:at], labels[at:]
