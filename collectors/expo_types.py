"""The exposition parser's data types: what a parse returns, and its errors.

See :mod:`trimtab.collectors.exposition` (the public import path) for the
conventions; this module has no parsing logic beyond number and format checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

Labels = tuple[tuple[str, str], ...]
TEXT = "text"
OPENMETRICS = "openmetrics"

_NUM = r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_VALUE = re.compile(_NUM + r"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]")
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
    end = len(text)
    while end and text[end - 1] in "\r\n":  # rstrip without copying the whole body
        end -= 1
    eof = text.endswith("# EOF", 0, end) and (end == 5 or text[end - 6] == "\n")
    return OPENMETRICS if eof else TEXT

