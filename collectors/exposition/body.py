"""A first scrape read as a whole body: every line classified, every comment and every
sample line read in C-level passes over the body, Python run per distinct label set.

The per-line loop of :class:`.full._Full` costs a few microseconds of Python per line and
per family (a HELP and a TYPE line, a family opened, a sample run cut). Real bodies have
many small families: the Prometheus server's own ``/metrics`` is 156 families of one or two
samples. Here the whole body is read at once:

- lines are classified by their first character (``#``, a sample, blank);
- all HELP/TYPE/UNIT lines are cut with one ``str.split`` pass and checked together;
- the family of each sample is the name of the last comment line before it (a bisection of
  the line offsets); its type decides which sample names and bound labels it allows;
- all sample lines are cut at their last space; their series are resolved per distinct
  label set text, their values with one regex pass; OpenMetrics lines with a timestamp or
  an exemplar are cut where their series ends and read with one regex pass over all of them.

It only ever accepts. The body must be in the shape real programs write: each family's
comment lines together and before its samples, no family twice, every sample inside the
family its comments opened, no timestamps in the text format, no duplicate series, no error
anywhere. Anything else (and every error) makes :func:`parse_body` return None with no
effect but validated cache entries; the per-line loop then reads the body and reports any
error exactly as before. Set ``ENABLED = False`` to always take the per-line loop.
"""

from __future__ import annotations

import math
import re
import string
from bisect import bisect_right
from itertools import compress, repeat
from operator import add, and_, contains, eq, is_, is_not, itemgetter, ne, not_, or_, sub

from . import native
from .full import _SHAPES, _bulk_values, _Full
from .grammar import (
    _BOUND_OK,
    _HELP_ESCAPES,
    _LABEL_ESCAPES,
    _LABELS,
    _NONE,
    _SUFFIXES,
    _unescape,
    om_rests,
)
from .types import OPENMETRICS, TEXT, Exemplar, Exposition, Labels, ParseError

ENABLED = True
_NAN = math.nan

_FIRST_CHAR = itemgetter(slice(0, 1))
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
_NAMES = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", re.MULTILINE)  # one valid metric name per line
_NAME_CHARS = str.maketrans("", "", string.ascii_letters + string.digits + "_:\n")  # deleted: what names hold
_DIGIT_FIRST = re.compile(r"\n[0-9]")
_KINDS = {TEXT: frozenset(("HELP", "TYPE")), OPENMETRICS: frozenset(("HELP", "TYPE", "UNIT"))}
_LITERAL = frozenset(("", "#"))  # first characters of lines that are no sample line
_BAD = (None, None)  # a label set text that is no valid label set
_Found = tuple[Labels, tuple[str, ...]]  # labels, and which bound labels hold a number
_DEFAULT_TYPE = {TEXT: "untyped", OPENMETRICS: "unknown"}
_ALL_BUT_LAST = itemgetter(slice(None, -1))
_AFTER_LE = itemgetter(slice(4, None))  # 'le="x' -> x
# Separators between the label sets joined by _label_sets (0.0.4 allows a trailing comma) and after the last
_BREAKS = {TEXT: ("\n", ",\n"), OPENMETRICS: ("\n",)}
_LAST_SEPS = {TEXT: ("", ","), OPENMETRICS: ("",)}




def first_chars(lines: list[str]) -> list[str]:
    """The first character of each line ("" for a blank one); both paths classify lines by it."""
    return list(map(_FIRST_CHAR, lines))


def pays(text: str, om: bool, n_lines: int, n_comments: int) -> bool:
    """Whether this path is likely quicker than the per-line loop's run-at-a-time bulk path,
    which reads long sample runs well: on bodies with a comment line in every ten or more, or
    with OpenMetrics exemplars (lines the bulk path leaves to the grammar).
    Measured on the real corpus (benchmarks/parse.py): the Prometheus server's and HAProxy's
    own metrics, client_python's text and OpenMetrics, the demo's OpenMetrics; the demo's
    histogram-heavy text (a comment line in eleven) is quicker without. With the C label sets
    (``native``) this path reads label sets several times quicker: the demo's text then too
    (1.08 vs 1.38 ms a first scrape), not benchmarks/fanout.py's bodies of a few families of
    hundreds of samples each (a comment line in 250: 5.5 vs 5.0 ms)."""
    lines_per_comment = 40 if native.ENABLED else 10
    return lines_per_comment * n_comments >= n_lines or (om and " # {" in text)


def parse_body(full: _Full, lines: list[str], text: str, firsts: list[str] | None = None) -> Exposition | None:
    """The exposition ``full.run(lines)`` would return, with ``full`` left as ``layout()``
    needs it; None (nothing returned, ``full`` to be discarded) if the body is not plainly
    in the shape this path reads, or holds any error. ``text`` is the body ``lines`` came from."""
    om, fmt, n = full.om, full.fmt, len(lines)
    if not n or (om and lines[-1] != "# EOF"):
        return None
    if firsts is None:
        firsts = first_chars(lines)
    if om:
        firsts = firsts[:-1]  # not the final "# EOF"
    starts = set(firsts)
    if " " in starts or "\t" in starts or ("" in starts and om):
        return None  # indented lines, blanks in OpenMetrics: the per-line loop reads them
    scan = len(firsts)
    is_comment = list(map(eq, firsts, repeat("#")))  # operator.eq: "#".__eq__ is thrice as slow
    comment_idx = list(compress(range(scan), is_comment))
    blanks = "" in starts
    if blanks:
        literal_idx = list(compress(range(scan), map(_LITERAL.__contains__, firsts)))
        sample_idx = list(compress(range(scan), map(not_, map(_LITERAL.__contains__, firsts))))
        sample_lines = list(map(lines.__getitem__, sample_idx))
    else:
        literal_idx = comment_idx if not om else [*comment_idx]
        is_sample = list(map(ne, firsts, repeat("#")))
        sample_idx = list(compress(range(scan), is_sample))
        sample_lines = list(compress(lines, is_sample))
    if om:
        literal_idx.append(n - 1)
    if not comment_idx or (sample_idx and sample_idx[0] < comment_idx[0]):
        return None  # samples before any comment open families of their own
    meta = _comments(full, list(compress(lines, is_comment)), text)
    if meta is None:
        return None
    cnames, types, helps, units = meta
    # Families: a comment line naming another family than the one before opens it; each
    # family's comment lines are adjacent (so all before its samples) and no family opens twice.
    same = list(map(eq, cnames[1:], cnames[:-1]))
    if any(compress(map(ne, map(sub, comment_idx[1:], comment_idx[:-1]), repeat(1)), same)):
        return None
    openings = [cnames[0], *compress(cnames[1:], map(not_, same))]
    if len(set(openings)) != len(openings):
        return None
    typemap = dict.fromkeys(openings, _DEFAULT_TYPE[fmt])
    typemap.update(types)
    if om and not _claims_distinct(openings, typemap):
        return None
    samples = _samples(full, sample_lines, sample_idx, comment_idx, cnames, openings, typemap, blanks)
    if samples is None:
        return None
    names, found, values, stamps, exemplars, prefix_of, exemplar_ok = samples
    full.lines, full.literal, full.sample_lines, full.prefix_of = lines, literal_idx, sample_idx, prefix_of
    full.values, full.exemplar_ok = values, exemplar_ok
    full.names, full.labels = tuple(names), tuple(map(_FIRST, found))
    full.stamp_list, full.timestamped = stamps, stamps is not None
    expo = full.expo
    expo.types, expo.helps, expo.units, expo.exemplars = types, helps, units, exemplars
    keys = zip(full.names, full.labels) if stamps is None else zip(full.names, full.labels, stamps)
    if len(set(keys)) != len(values):
        return None  # a duplicate series: the per-line loop names the line
    return Exposition.from_columns((full.names, full.labels, values, stamps), types, helps, units,
                                   exemplars, fmt)


def _comments(full: _Full, comment_lines: list[str], text: str
              ) -> tuple[tuple[str, ...], dict[str, str], dict[str, str], dict[str, str]] | None:
    """Names of the comment lines, in order, and the TYPE, HELP and UNIT tables; None if one
    is not a plain HELP/TYPE(/UNIT) line with single spaces, or is wrong."""
    om, fmt = full.om, full.fmt
    parts = list(map(str.split, comment_lines, repeat(" "), repeat(3)))
    if sum(map(len, parts)) != 4 * len(parts):
        return None  # fewer than four parts somewhere: no text after the name, or no name
    hashes, kinds, cnames, rests = zip(*parts)
    if hashes.count("#") != len(hashes) or not _KINDS[fmt].issuperset(kinds):
        return None
    new_names = set(cnames).difference(full.names_ok)
    if not _all_names(new_names):
        return None
    full.names_ok.update(new_names)
    is_help = list(map(eq, kinds, repeat("HELP")))
    help_names, help_rests = list(compress(cnames, is_help)), list(compress(rests, is_help))
    is_type = list(map(eq, kinds, repeat("TYPE")))
    type_names, type_rests = list(compress(cnames, is_type)), list(compress(rests, is_type))
    if len(set(help_names)) != len(help_names) or len(set(type_names)) != len(type_names):
        return None
    if not _SUFFIXES[fmt].keys() >= set(type_rests):
        return None
    units: dict[str, str] = {}
    if om:
        if len(help_names) + len(type_names) != len(cnames):
            is_unit = list(map(not_, map(or_, is_help, is_type)))
            unit_names = list(compress(cnames, is_unit))
            unit_rests = list(compress(rests, is_unit))
            if len(set(unit_names)) != len(unit_names):
                return None
            for name, unit in zip(unit_names, unit_rests):
                if unit and not name.endswith("_" + unit):
                    return None
            units = dict(zip(unit_names, unit_rests))
    elif list(map(str.rstrip, map(str.lstrip, help_rests), repeat(" \t"))) != help_rests:
        return None  # the per-line loop strips blanks around a 0.0.4 HELP text (any whitespace before it)
    if "\\" in text:
        help_rests = list(map(_unescape, help_rests, repeat(_HELP_ESCAPES[fmt])))
    return cnames, dict(zip(type_names, type_rests)), dict(zip(help_names, help_rests)), units


def _owners(fmt: str, openings: list[str], typemap: dict[str, str]) -> tuple[dict[str, str], dict[str, str],
                                                                             set[str]]:
    """Each sample name the families may hold → its family, those that need a numeric bound
    label → that label, and those that may carry an exemplar; built per type and suffix in C
    passes over the families. A name two families may hold maps to one of them: a sample of
    the other is then declined (the per-line loop reads it)."""
    owner: dict[str, str] = {}
    need_of: dict[str, str] = {}
    may_carry: set[str] = set()
    open_types = list(map(typemap.__getitem__, openings))
    for typ in set(open_types):
        of_type = list(compress(openings, map(eq, open_types, repeat(typ))))
        suffixes, exemplar_suffix, bounded_suffix, label = _SHAPES[fmt][typ]
        for suffix in suffixes:
            names = list(map(add, of_type, repeat(suffix))) if suffix else of_type
            owner.update(zip(names, of_type))
            if suffix == bounded_suffix:
                need_of.update(zip(names, repeat(label)))
            if suffix == exemplar_suffix:
                may_carry.update(names)
    return owner, need_of, may_carry


def _claims_distinct(openings: list[str], typemap: dict[str, str]) -> bool:
    """OpenMetrics: no sample name is owned by two families (each owns its name and its
    name with each suffix its type allows)."""
    claims = list(openings)
    open_types = list(map(typemap.__getitem__, openings))
    for typ in set(open_types):
        of_type = list(compress(openings, map(typ.__eq__, open_types)))
        for suffix in _SUFFIXES[OPENMETRICS][typ]:
            if suffix:
                claims.extend(map(add, of_type, repeat(suffix)))
    return len(set(claims)) == len(claims)


def _samples(full: _Full, sample_lines: list[str], sample_idx: list[int], comment_idx: list[int],
             cnames: tuple[str, ...], openings: list[str], typemap: dict[str, str], blanks: bool
             ) -> tuple[list[str], list[_Found], list[float], list[float | None] | None, dict[int, Exemplar],
                        tuple[list[str], list[str]], list[int]] | None:
    """Names, (labels, numeric bound labels), values, timestamps, exemplars, what the prefixes
    are cut from (the sample lines and the text after each prefix: only a next scrape's fast
    path needs them) and exemplar-carrying indexes of the sample lines; None if one is not
    plain, or breaks its family's rules. ``blanks``: whether blank lines are among the lines."""
    parts = list(map(str.rpartition, sample_lines, repeat(" ")))
    heads, tokens = list(map(_FIRST, parts)), list(map(_THIRD, parts))
    # 0.0.4: the names are not checked here: each must be its family's name with a suffix its
    # type allows (below), and the family names were checked
    names, found, odd = _resolve(full, heads, full.om)
    if odd and not full.om:
        return None  # timestamps, odd blanks, errors
    if odd and not _odd_lines(full, sample_lines, odd, names, found, tokens):
        return None
    ns = len(names)
    # the family of each sample: the name of the last comment line before it; without blank
    # lines, the comment lines before the k-th sample line (line i) are i - k
    at = map(sub, sample_idx, range(ns)) if not blanks else map(bisect_right, repeat(comment_idx), sample_idx)
    families = list(map((None, *cnames).__getitem__, at))
    owner, need_of, may_carry = _owners(full.fmt, openings, typemap)
    if list(map(owner.get, names)) != families:
        return None  # a sample outside its family (the per-line loop opens a family for it)
    need = list(map(need_of.get, names)) if need_of else ()
    if any(need) and not all(map(contains, compress(map(_SECOND, found), need), filter(None, need))):
        return None  # a bucket without a numeric le, a quantile without a numeric quantile
    exemplar_ok = list(compress(range(ns), map(may_carry.__contains__, names))) if full.om else []
    exemplars: dict[int, Exemplar] = {}
    stamps = None
    if not odd:
        values = _bulk_values(full.floats, tokens)
        if values is None:
            return None
        # the series cache entries, built only if a next scrape needs them
        full.pending.append((heads, zip(names, map(_FIRST, found), map(_SECOND, found))))
    else:
        is_odd = [False] * ns
        list(map(is_odd.__setitem__, odd, repeat(True)))
        plain_idx = list(compress(range(ns), map(not_, is_odd)))
        plain_values = _bulk_values(full.floats, list(map(tokens.__getitem__, plain_idx)))
        if plain_values is None:
            return None
        some: list[float | None] = [None] * ns
        list(map(some.__setitem__, plain_idx, plain_values))
        try:  # the values, timestamps and exemplars of the odd lines, in one regex pass
            done = om_rests(full.floats, frozenset(exemplar_ok), tokens, some, exemplars)
        except ValueError:
            return None
        if done is None:
            return None
        stamps, values = done[0], some
    # each line up to its value: without the value token, or (odd lines) what follows the series
    return names, found, values, stamps, exemplars, (sample_lines, tokens), exemplar_ok  # type: ignore[return-value]


def _odd_lines(full: _Full, sample_lines: list[str], odd: list[int], names: list[str], found: list[_Found],
               tokens: list[str]) -> bool:
    """OpenMetrics lines whose text before the last space is no series (a timestamp or an
    exemplar follows the value): cut where the series ends, ``tokens[k]`` becomes what follows
    it. False if one still is no series."""
    heads = []
    for k in odd:
        line = sample_lines[k]
        space, brace = line.find(" "), line.find("{")
        cut = line.find("} ") + 1 if 0 <= brace < space else space
        if cut <= 0:
            return False
        heads.append(line[:cut])
        tokens[k] = line[cut + 1:]
    odd_names, odd_found, still = _resolve(full, heads)
    if still:
        return False
    list(map(names.__setitem__, odd, odd_names))
    list(map(found.__setitem__, odd, odd_found))
    return True


def _resolve(full: _Full, heads: list[str], check_names: bool = True) -> tuple[list[str], list[_Found], list[int]]:
    """The name and the (labels, numeric bound labels) of each ``name`` or ``name{labels}``,
    and the indexes of the heads that are anything else (``check_names``: an invalid name
    too). Each distinct label set text is parsed once."""
    by_brace = list(map(str.partition, heads, repeat("{")))
    names = list(map(_FIRST, by_brace))
    new_names = set(names).difference(full.names_ok) if check_names else ()
    bad_names: set[str] = set()
    if new_names:
        if _all_names(new_names):
            full.names_ok.update(new_names)
        else:
            good = _NAMES.findall("\n".join(new_names))
            full.names_ok.update(good)
            bad_names = new_names.difference(good)
    tails = list(map(_THIRD, by_brace))  # "" or "labels}"
    cache = full.tail_sets
    new = list(set(tails).difference(cache))
    if new:
        _new_tails(full, new)
    found = list(map(cache.__getitem__, tails))
    odd: list[int] = []
    if bad_names or any(map(is_, found, repeat(_BAD))):
        odd = [k for k, (name, hit) in enumerate(zip(names, found)) if hit is _BAD or name in bad_names]
    return names, found, odd  # type: ignore[return-value]


def _all_names(names: set[str]) -> bool:
    """Whether every one is a valid metric name: by their characters, then no digit first."""
    joined = "\n".join(names)
    return not joined.translate(_NAME_CHARS) and "" not in names and _DIGIT_FIRST.search("\n" + joined) is None


def _new_tails(full: _Full, tails: list[str]) -> None:
    """Enter the label sets of new ``labels}`` texts into ``full.tail_sets``.

    In C-level passes over all of them: a label set without a bound label with one regex
    split over them all; a bucket or quantile (``le``/``quantile`` first or last, as
    client_python and client_golang write them) as the bound pair spliced into the rest of
    its label set, parsed once per distinct rest. Any other text by ``_Full.label_set``.
    With the C helpers (``native``), every label set of the plain shape is read in C first
    (``label_sets``), and only the others here.
    """
    cache = full.tail_sets
    if native.ENABLED:  # in C, every label set of the plain shape; the others below
        found = native.c.label_sets(tails, full.om, _NONE, _BOUND_OK["le"], _BOUND_OK["quantile"])  # type: ignore[union-attr]
        if None not in found:
            cache.update(zip(tails, found))
            return
        done = list(map(is_not, found, repeat(None)))
        cache.update(zip(compress(tails, done), compress(found, done)))
        tails = list(compress(tails, map(not_, done)))
    if not all(map(str.endswith, tails, repeat("}"))):
        closed = list(map(str.endswith, tails, repeat("}")))
        cache.update(zip(compress(tails, map(not_, closed)), repeat(_BAD)))
        tails = list(compress(tails, closed))
    blocks = list(map(_ALL_BUT_LAST, tails))
    bound = list(map(contains, blocks, repeat('le="')))  # also finds 'quantile="'
    plain = list(map(not_, bound))
    left: list[str] = []  # tails for label_set
    plain_tails, plain_blocks = list(compress(tails, plain)), list(compress(blocks, plain))
    if plain_blocks:
        found = _label_sets(full, plain_blocks)
        if found is None:
            left += plain_tails
        else:
            cache.update(zip(plain_tails, zip(found, repeat(_NONE))))
    bound_tails, bound_blocks = list(compress(tails, bound)), list(compress(blocks, bound))
    if bound_blocks:  # le="x",rest (client_python's buckets) by their own cut first
        le_front = list(map(and_, map(str.startswith, bound_blocks, repeat('le="')),
                            map(contains, bound_blocks, repeat('",'))))
        every = all(le_front)
        if every or any(le_front):
            found_front = _le_front(full, bound_blocks if every else list(compress(bound_blocks, le_front)))
            front_tails = bound_tails if every else list(compress(bound_tails, le_front))
            if every and None not in found_front:
                cache.update(zip(front_tails, found_front))
                bound_tails, bound_blocks = [], []
            else:
                done = list(map(is_not, found_front, repeat(None)))
                cache.update(zip(compress(front_tails, done), compress(found_front, done)))
                rest = list(map(not_, map(cache.__contains__, bound_tails)))
                bound_tails, bound_blocks = list(compress(bound_tails, rest)), list(compress(bound_blocks, rest))
    # quantile="x",rest first; a lone pair (no '",') is read the other way
    fronts = list(map(and_, map(str.startswith, bound_blocks, repeat(('le="', 'quantile="'))),
                      map(contains, bound_blocks, repeat('",'))))
    if any(fronts):
        these_tails, these_blocks = list(compress(bound_tails, fronts)), list(compress(bound_blocks, fronts))
        found_bound = _bound_split(full, these_blocks, True)
        done = list(map(is_not, found_bound, repeat(None)))
        cache.update(zip(compress(these_tails, done), compress(found_bound, done)))
        rest = list(map(not_, map(cache.__contains__, bound_tails)))
        bound_tails, bound_blocks = list(compress(bound_tails, rest)), list(compress(bound_blocks, rest))
    if bound_blocks:  # rest,le="x" or le="x" (client_golang)
        found_bound = _bound_split(full, bound_blocks, False)
        if None in found_bound:
            done = list(map(is_not, found_bound, repeat(None)))
            cache.update(zip(compress(bound_tails, done), compress(found_bound, done)))
            left += compress(bound_tails, map(not_, done))
        else:
            cache.update(zip(bound_tails, found_bound))
    for tail in left:
        cache[tail] = _tail(full, tail)


def _le_front(full: _Full, blocks: list[str]) -> list[_Found | None]:
    """``_bound_split`` for blocks ``le="x",rest``: cut once at the first ``",``; the pair is
    found once per distinct ``le="x`` and the labels around it once per distinct rest."""
    cut = list(map(str.partition, blocks, repeat('",')))
    firsts, rests = list(map(_FIRST, cut)), list(map(_THIRD, cut))
    pairs_of, arounds_of = full.front_pairs, full.front_arounds
    new = list(set(firsts).difference(pairs_of))
    if new:
        keys = list(zip(repeat("le"), map(add, map(_AFTER_LE, new), repeat('"'))))
        pair_cache = full.bound_pairs
        new_keys = list(set(keys).difference(pair_cache))
        if new_keys:
            _new_pairs(full, new_keys)
        pairs_of.update(zip(new, map(pair_cache.__getitem__, keys)))
    for rest in set(rests).difference(arounds_of):
        arounds_of[rest] = _around(full, "le", rest, '",')
    return _splice(list(map(pairs_of.__getitem__, firsts)), list(map(arounds_of.__getitem__, rests)))


def _label_sets(full: _Full, blocks: list[str]) -> list[Labels] | None:
    """Sorted labels of label set texts, as ``_label_block`` finds them, with one regex split
    over all of them (values with an escape then unescaped); None if one of them is not plainly
    a label set (each then goes through ``_Full.label_set``, which reports what is wrong)."""
    joined = "\n".join(blocks)
    if "" in blocks:
        return None
    parts = _LABELS[full.fmt].split(joined)
    seps = parts[0::3]
    inner = seps[1:-1]
    breaks = _BREAKS[full.fmt]
    n_breaks = sum(map(inner.count, breaks))
    if (seps[0] or seps[-1] not in _LAST_SEPS[full.fmt] or n_breaks != len(blocks) - 1
            or inner.count(",") + n_breaks != len(inner)):
        return None  # a value across blocks (so a broken quote), blanks, anything else
    names, values = parts[1::3], parts[2::3]
    if "__name__" in names:
        return None
    if "\\" in joined:  # a backslash can only be in a value: the regex took any other as a separator
        values = list(map(_unescape, values, repeat(_LABEL_ESCAPES)))
    bounds = [0, *compress(range(1, len(inner) + 1), map(breaks.__contains__, inner)), len(names)]
    slices = list(map(slice, bounds[:-1], bounds[1:]))
    name_lists = list(map(names.__getitem__, slices))
    if list(map(len, map(set, name_lists))) != list(map(sub, bounds[1:], bounds[:-1])):
        return None  # a label twice in one set
    return list(map(tuple, map(sorted, map(zip, name_lists, map(values.__getitem__, slices)))))


def _bound_split(full: _Full, blocks: list[str], front: bool
                 ) -> list[tuple[Labels, tuple[str, ...]] | None]:
    """Label sets holding ``le``/``quantile`` last (``front``: first) with a plain value: the
    bound pair spliced into the labels of the rest (which must hold neither bound label);
    None for a block of any other shape."""
    if front:  # le="x",rest
        cut = list(map(str.partition, blocks, repeat('",')))
        rests, commas = list(map(_THIRD, cut)), list(map(_SECOND, cut))
        first = list(map(str.partition, map(_FIRST, cut), repeat('="')))
        labels, values = list(map(_FIRST, first)), list(map(add, map(_THIRD, first), repeat('"')))
    else:  # rest,le="x" or le="x"
        cut = list(map(str.rpartition, blocks, repeat('="')))
        before = list(map(str.rpartition, map(_FIRST, cut), repeat(",")))
        rests, commas, labels = list(map(_FIRST, before)), list(map(_SECOND, before)), list(map(_THIRD, before))
        values = list(map(_THIRD, cut))  # x"
    pair_keys = list(zip(labels, values))
    pair_cache, around_cache = full.bound_pairs, full.bound_arounds
    new_keys = list(set(pair_keys).difference(pair_cache))
    if new_keys:
        _new_pairs(full, new_keys)
    around_keys = list(zip(labels, rests, commas))
    for key in set(around_keys).difference(around_cache):
        around_cache[key] = _around(full, *key)
    return _splice(list(map(pair_cache.__getitem__, pair_keys)),
                   list(map(around_cache.__getitem__, around_keys)))


def _splice(pairs: list, arounds: list) -> list[_Found | None]:
    """Each bound pair (its label, its bound) spliced between the labels around it (the
    rest's labels before and after it); None where either is None (not a plain block)."""
    if None in pairs or None in arounds:
        return [None if pair is None or around is None else (around[0] + pair[0] + around[1], pair[1])
                for pair, around in zip(pairs, arounds)]
    labels = map(add, map(add, map(_FIRST, arounds), map(_FIRST, pairs)), map(_SECOND, arounds))
    return list(zip(labels, map(_SECOND, pairs)))


def _new_pairs(full: _Full, keys: list[tuple[str, str]]) -> None:
    """Enter ``_pair`` of each new (label, ``x"``) into ``full.bound_pairs``, in C passes when
    every one is a bound label with a value without quote or backslash (the values checked and
    read together by ``_Floats.learn``); any other through ``_pair``, one by one."""
    labels, quoted = zip(*keys)
    values = list(map(_ALL_BUT_LAST, quoted))
    joined = "\n".join(values)
    if ('"' in joined or "\\" in joined or not _BOUND_OK.keys() >= set(labels)
            or not all(map(str.endswith, quoted, repeat('"')))):
        odd = list(map(_odd_pair, labels, quoted))
        full.bound_pairs.update(zip(compress(keys, odd), map(_pair, repeat(full), compress(labels, odd),
                                                              compress(quoted, odd))))
        if all(odd):
            return
        keep = list(map(not_, odd))
        keys, labels, values = list(compress(keys, keep)), list(compress(labels, keep)), list(compress(values, keep))
    floats = full.floats
    floats.learn(values)
    numbers = list(map(floats.get, values, repeat(_NAN)))  # NaN too for what is no number
    numeric = list(map(_BOUND_OK.__getitem__, labels))
    for k in compress(range(len(values)), map(ne, numbers, numbers)):  # no number, or NaN
        numeric[k] = _NONE
    full.bound_pairs.update(zip(keys, zip(zip(zip(labels, values)), numeric)))


def _odd_pair(label: str, quoted: str) -> bool:
    """Whether (label, ``x"``) is not a bound label with a value free of quotes and backslashes."""
    return label not in _BOUND_OK or quoted[-1:] != '"' or '"' in quoted[:-1] or "\\" in quoted


def _pair(full: _Full, label: str, quoted: str) -> tuple[Labels, tuple[str, ...]] | None:
    """(label, ``x"``) → (((label, x),), the numeric bound labels), if x is a plain value."""
    value = quoted[:-1]
    if label not in _BOUND_OK or quoted[-1:] != '"' or '"' in value or "\\" in value:
        return None
    try:
        number = full.floats[value]
    except ValueError:
        return ((label, value),), _NONE
    return ((label, value),), _BOUND_OK[label] if number == number else _NONE  # NaN bounds nothing


def _around(full: _Full, label: str, rest: str, comma: str) -> tuple[Labels, Labels] | None:
    """The labels of ``rest`` before and after where ``label`` sorts in, if ``rest`` is a label
    set holding neither bound label (or nothing, when no comma joins it)."""
    if not comma:
        return ((), ()) if not rest else None
    if rest[-1:] != '"':
        return None
    try:
        labels, slots = full.bases.get(rest) or full.new_base(rest)
    except ParseError:
        return None
    at = slots.get(label)
    if at is None or len(slots) < 2:  # no bound label, or the other bound label in rest
        return None
    return labels[:at], labels[at:]


def _tail(full: _Full, tail: str) -> tuple[Labels, tuple[str, ...]] | tuple[None, None]:
    """``labels}`` → what ``label_set`` finds in ``labels``; _BAD if it is no label set."""
    if tail[-1:] != "}":
        return _BAD
    try:
        return full.label_set(tail[:-1])
    except ParseError:
        return _BAD
