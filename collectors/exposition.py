"""Parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0 (sample lines).

Returns flat samples; family metadata (TYPE) is kept alongside. Malformed input
raises :class:`ParseError` naming the line, and nothing of that scrape is used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

Labels = tuple[tuple[str, str], ...]

_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,?)\s*')
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE_RE = re.compile(r'\\[\\"n]')


class ParseError(ValueError):
    """A malformed exposition; ``line_no`` is 1-based."""

    def __init__(self, line_no: int, line: str, reason: str) -> None:
        super().__init__(f"line {line_no}: {reason}: {line[:120]!r}")
        self.line_no = line_no


class Sample(NamedTuple):
    name: str
    labels: Labels
    value: float
    timestamp: float | None = None


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value)


def _parse_value(token: str) -> float:
    try:
        return float(token)
    except ValueError:
        lowered = token.lower()
        if lowered in ("nan", "+inf", "-inf", "inf"):
            return float(lowered)
        raise


def _parse_labels(line: str, start: int, line_no: int) -> tuple[Labels, int]:
    """Parse from just after ``{``; return labels and the index after ``}``."""
    labels: list[tuple[str, str]] = []
    pos = start
    while True:
        if pos < len(line) and line[pos] == "}":
            return tuple(labels), pos + 1
        match = _LABEL.match(line, pos)
        if match is None:
            raise ParseError(line_no, line, "malformed label set")
        labels.append((match.group(1), _unescape(match.group(2))))
        pos = match.end()
        if not match.group(3):
            if pos < len(line) and line[pos] == "}":
                return tuple(labels), pos + 1
            raise ParseError(line_no, line, "expected ',' or '}' in label set")


def parse(text: str) -> Exposition:
    """Parse a whole exposition; raises :class:`ParseError` on the first bad line."""
    out = Exposition()
    samples = out.samples
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line or line.isspace():
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip()
            continue
        samples.append(_parse_line(line, line_no))
    return out


def _parse_line(line: str, line_no: int) -> Sample:
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        labels, end = _parse_labels(line, brace + 1, line_no)
        rest = line[end:]
    else:
        if space == -1:
            raise ParseError(line_no, line, "missing value")
        name, labels, rest = line[:space], (), line[space:]
    if not _NAME.match(name):
        raise ParseError(line_no, line, f"invalid metric name {name!r}")
    exemplar_at = rest.find(" # ")
    if exemplar_at != -1:
        rest = rest[:exemplar_at]
    tokens = rest.split()
    if not tokens or len(tokens) > 2:
        raise ParseError(line_no, line, "expected a value and an optional timestamp")
    try:
        value = _parse_value(tokens[0])
        timestamp = float(tokens[1]) if len(tokens) == 2 else None
    except ValueError:
        raise ParseError(line_no, line, "value is not a number") from None
    if timestamp is not None and not math.isfinite(timestamp):
        raise ParseError(line_no, line, "timestamp is not finite")
    return Sample(name, labels, value, timestamp)
