"""The exposition grammar: patterns, label-set parsing and the small helpers
both the full parser (:mod:`.expo_full`) and the per-target fast paths share."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from itertools import compress, filterfalse, repeat
from operator import add, contains, is_, itemgetter, not_

from .types import _NUM, _VALUE, OPENMETRICS, TEXT, Exemplar, Labels, _tuple_new

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled loops: sre runs them far faster than alternations


def _block(group: str) -> str:
    """A label set; its quoted values may hold ``{ } #`` and spaces."""
    return r'\{(?P<' + group + r'>[^"}]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"}]*)*)\}'


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
_NOT_SAMPLE_START = frozenset(" \t#")
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
_MAX_EXEMPLAR_LABEL_CHARS = 128  # OpenMetrics 1.0 limit on an exemplar's label names + values

def _split_lines(text: str) -> tuple[list[str], int]:
    """The lines (CRLF or LF ends) and how many characters they hold in all."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not open a new one
        return lines, len(text) - len(lines)
    return lines, len(text) - len(lines) + 1


def _picker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """Picks ``indexes`` out of a list as a tuple, in C (itemgetter) when there are several."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    return lambda seq: tuple(seq[i] for i in indexes)


# A token made of these characters, without a signed NaN, that float() reads is a value of the
# grammar (_VALUE): float() also takes blanks, underscores, non-ASCII digits and "+nan". Made of
# the second set's, it is an OpenMetrics timestamp (_NUM: no NaN or Inf).
_NUMBER_CHARS = str.maketrans("", "", "0123456789.eE+-iInNfFtTyYaA\n")
_STAMP_CHARS = str.maketrans("", "", "0123456789.eE+-\n")


def _numbers(tokens: list[str], stamps: bool = False) -> list[float] | None:
    """Each token as a float if every one is a value (``stamps``: an OpenMetrics timestamp) of
    the grammar, checked together by their characters and read by ``float`` in one C pass;
    None if one is not. No token may hold a newline."""
    joined = "\n".join(tokens)
    if joined.translate(_STAMP_CHARS if stamps else _NUMBER_CHARS):
        return None
    if not stamps:
        lower = joined.lower()
        if "+n" in lower or "-n" in lower:  # a signed NaN
            return None
    try:
        return list(map(float, tokens))
    except ValueError:  # "1e", "+", "nan3", ""
        return None


class _Floats(dict[str, float]):
    """Value token → float; a token is validated once, when first seen."""

    def __missing__(self, token: str) -> float:
        if _VALUE.fullmatch(token) is None:
            raise ValueError(f"invalid value {token!r}")
        value = self[token] = float(token)
        return value

    def learn(self, tokens: Iterable[str]) -> None:
        """Enter the tokens not known yet that are valid numbers, all at once (``__missing__``
        runs Python per token, a microsecond each, and a target's scrape brings tens of new
        values); those that are no number (a value with an exemplar after it) stay out.
        ``filterfalse``, not ``set.difference``: that walks the whole cache, not the tokens,
        when given a dict subclass. No token may hold a newline."""
        new = list(set(filterfalse(self.__contains__, tokens)) if self else set(tokens))
        if not new:
            return
        if any(map(contains, new, repeat(" "))):  # a timestamp or an exemplar after the value
            new = list(compress(new, map(not_, map(contains, new, repeat(" ")))))
        found = _numbers(new)
        if found is not None:
            self.update(zip(new, found))
            return
        for token in new:  # some are no number: the valid ones one at a time
            if _VALUE.fullmatch(token) is not None:
                self[token] = float(token)


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
            cut = block.find('",', len(head))
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


# What follows an OpenMetrics value, in its usual shape, one token per line: an optional
# timestamp, then an optional exemplar with one label whose value has no escape (a trace id).
# Every match is also a match of the full grammar (_REST_RE); anything else takes that path.
_OM_RESTS = re.compile(r'^([^ \n]+)(?: ([^ #\n][^ \n]*))?'
                       r'(?: # \{([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"\} ([^ \n]+)(?: ([^ \n]+))?)?$',
                       re.MULTILINE)
_OM_STAMPS = re.compile(rf"^{_TS[OPENMETRICS].pattern}$", re.MULTILINE)


_EXEMPLAR_HEAD = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)")
_exemplar_names: dict[str, str | None] = {}  # "{name" → name, if a valid label name (not __name__)
_LABEL_END = itemgetter(slice(None, -2))  # 'value"}' → value


def _exemplar_name(head: str) -> str | None:
    if len(_exemplar_names) > 256:
        _exemplar_names.clear()
    match = _EXEMPLAR_HEAD.fullmatch(head)
    name = _exemplar_names[head] = None if match is None or match[1] == "__name__" else match[1]
    return name


def om_exemplar_rows(exemplar_ok: frozenset[int], tokens: list[str], values: list[float | None],
                     exemplars: dict[int, Exemplar], missing: list[int]) -> bool:
    """``om_rests`` for the commonest tails, without a regex pass over their text: every
    ``tokens[k]`` at ``missing`` is ``value # {name="text"} value timestamp`` (all with an
    exemplar timestamp, or none), one exemplar label, no escape, no timestamp on the sample.
    Cut by ``str.split`` and ``str.partition`` passes, numbers checked together (see
    ``_numbers``). False, with nothing changed, for anything else (the regex then reads it,
    and finds any error)."""
    tails = list(map(tokens.__getitem__, missing))
    widths = set(map(str.count, tails, repeat(" ")))  # blanks in each: 3 or 4 (no timestamp, or one)
    if len(widths) != 1 or not widths <= {3, 4} or not exemplar_ok.issuperset(missing):
        return False
    width = widths.pop() + 1
    cells = " ".join(tails).split(" ")  # one pass for all, no list per line: row k is cells[k*width:][:width]
    value_tokens, hashes, label_texts, xv_tokens = (cells[i::width] for i in range(4))
    if hashes.count("#") != len(hashes):
        return False
    heads, seps, ends = zip(*map(str.partition, label_texts, repeat('="')))
    joined_ends = "\n".join(ends)
    if (seps.count('="') != len(seps) or joined_ends.count('"') != len(ends) or "\\" in joined_ends
            or not all(map(str.endswith, ends, repeat('"}')))):
        return False  # no single label, an escape or a quote in its value, text after the brace
    names_of = _exemplar_names
    for head in set(heads).difference(names_of):
        _exemplar_name(head)
    names = list(map(names_of.get, heads))
    if None in names or max(map(len, ends)) - 2 + max(map(len, names)) > _MAX_EXEMPLAR_LABEL_CHARS:
        return False  # not a label name, or perhaps too long: the regex path decides
    # Not through the value cache: what follows these values changes with them every scrape.
    numbers = _numbers(value_tokens + xv_tokens)
    xstamps = _numbers(cells[4::width], stamps=True) if width == 5 else repeat(None)
    if numbers is None or xstamps is None:
        return False
    n = len(missing)
    list(map(values.__setitem__, missing, numbers[:n]))
    label_sets = zip(zip(names, map(_LABEL_END, ends)))
    exemplars.update(zip(missing, map(_tuple_new, repeat(Exemplar), zip(label_sets, numbers[n:], xstamps))))
    return True


def om_rests(floats: _Floats, exemplar_ok: frozenset[int], tokens: list[str], values: list[float | None],
             exemplars: dict[int, Exemplar]) -> tuple[list[float | None] | None] | None:
    """Fill in ``values[k]`` where it is None from ``tokens[k]``, what follows an OpenMetrics
    sample line's series (value, timestamp, exemplar) in the usual shape, read with one regex
    pass over all of them (a scrape of exemplar-carrying buckets has one per bucket that saw
    an observation, and their trace ids change every scrape); exemplars go to ``exemplars``.
    Returns (timestamps or None,); None, with nothing changed, when one is of another shape;
    ValueError on anything invalid (an exemplar outside ``exemplar_ok`` included)."""
    missing = list(compress(range(len(values)), map(is_, values, repeat(None))))
    if om_exemplar_rows(exemplar_ok, tokens, values, exemplars, missing):
        return (None,)
    rows = _OM_RESTS.findall("\n".join(map(tokens.__getitem__, missing)))
    if len(rows) != len(missing):
        return None
    value_tokens, ts_tokens, names, label_values, xv_tokens, xts_tokens = zip(*rows) if rows else ((),) * 6
    floats.learn(value_tokens + xv_tokens)
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
        if (not exemplar_ok.issuperset(at) or "__name__" in names
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
