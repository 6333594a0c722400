"""The exposition parser's data types: what a parse returns, and its errors.

See :mod:`trimtab.collectors.exposition` (the public import path) for the
conventions; this module has no parsing logic beyond number and format checks.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, NamedTuple

Labels = tuple[tuple[str, str], ...]
TEXT = "text"
OPENMETRICS = "openmetrics"

_NUM = r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_VALUE = re.compile(_NUM + r"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]")
_tuple_new = tuple.__new__
_TYPE_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_gcount", "_gsum", "_info")


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


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a parse builds its thousands of small tuples,
    then one young-generation pass over them.

    Left on, the collector would run every 700 of them and promote the survivors
    through the older generations, often into a full collection of the whole
    heap: a third of a first scrape's time, and of building ``samples``. Almost
    all of them (tuples of strings and floats) drop out of the collector's sight
    on that single pass. The collector stays off if the application turned it off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)


Columns = tuple[Sequence[str], Sequence[Labels], Sequence[float], Sequence["float | None"] | None]
_NAME_OF, _LABELS_OF, _VALUE_OF, _TIMESTAMP = (itemgetter(i) for i in range(4))


@dataclass
class Exposition:
    """One parsed scrape. ``exemplars`` maps an index into ``samples`` to its exemplar.

    A value-only parse (:class:`TargetParser` on a scrape shaped like the last)
    returns its samples as columns and builds the :class:`Sample` tuples on the
    first read of ``samples``; :meth:`columns` reads them without building any.
    """

    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # family name as its TYPE line spells it
    helps: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    exemplars: dict[int, Exemplar] = field(default_factory=dict)
    format: str = TEXT

    @classmethod
    def from_columns(cls, columns: Columns, types: dict[str, str], helps: dict[str, str],
                     units: dict[str, str], exemplars: dict[int, Exemplar], fmt: str) -> Exposition:
        """An exposition whose ``samples`` are built from ``columns`` when first read."""
        expo = cls.__new__(cls)
        expo.__dict__.update(types=types, helps=helps, units=units, exemplars=exemplars, format=fmt,
                             _columns=columns)
        return expo

    if not TYPE_CHECKING:  # mypy must keep checking every other attribute name
        def __getattr__(self, name: str) -> list[Sample]:
            """Builds ``samples`` from the columns of a value-only parse, once."""
            columns = self.__dict__.get("_columns")
            if name != "samples" or columns is None:
                raise AttributeError(name)
            names, labels, values, stamps = columns
            with _gc_paused():
                samples = self.samples = list(map(_tuple_new, repeat(Sample), zip(
                    names, labels, values, repeat(None) if stamps is None else stamps)))
            return samples

    def columns(self) -> Columns:
        """Names, labels, values and timestamps (None if no sample has one), in sample order.

        Iterating these is the cheap way to read a scrape: after a value-only
        parse no :class:`Sample` tuple is built. Treat them as read-only.
        """
        columns: Columns | None = self.__dict__.get("_columns")
        if columns is not None and "samples" not in self.__dict__:
            return columns
        samples = self.samples
        stamps = list(map(_TIMESTAMP, samples))
        return (list(map(_NAME_OF, samples)), list(map(_LABELS_OF, samples)), list(map(_VALUE_OF, samples)),
                stamps if stamps.count(None) != len(stamps) else None)

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
    end = len(text)
    while end and text[end - 1] in "\r\n":  # rstrip without copying the whole body
        end -= 1
    eof = text.endswith("# EOF", 0, end) and (end == 5 or text[end - 6] == "\n")
    return OPENMETRICS if eof else TEXT

