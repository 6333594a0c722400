"""Parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0.

Output: flat :class:`Sample` tuples in exposition order plus family metadata.
Conventions (chosen to equal ``prometheus_client``'s parsers on valid input):

- timestamps are float **seconds** in both formats (0.0.4 carries integer
  milliseconds and is divided by 1000, as prometheus_client does);
- values are floats (``NaN``, ``+Inf``, ``-Inf`` included); labels are sorted
  by name; sample names are exactly as exposed (``_total`` kept).

Malformed input raises :class:`ParseError` naming the 1-based line; nothing of
that scrape is returned. Value semantics (monotonic buckets, negative counters)
are not checked, like the Prometheus server; structure is (duplicate series,
metadata order, ``# EOF``, family contiguity in OpenMetrics).

:class:`TargetParser` parses successive scrapes of one target: when every line
repeats the previous scrape up to its value, only what follows (value,
timestamp, exemplar) is read. A first scrape reads long runs of plain sample
lines a run at a time and parses each label set once per histogram group (the
labels beside ``le`` repeat on every bucket). The parsers of one format share
what they learnt (text → series and label sets), so a fleet's targets that print
the same lines parse and hold them once; :func:`forget_shared_caches` starts over.

Samples come back as columns (:meth:`Exposition.columns`); ``.samples`` builds
the :class:`Sample` tuples on first read. Reading the columns is the cheap way.

Modules: ``types`` (results, errors), ``grammar`` (patterns, label sets), ``full``
(the full parser, with its run-at-a-time bulk path), ``target``
(:class:`TargetParser`). Import from here.

Differences from prometheus_client, all on input it would call invalid or
handle loosely: 0.0.4 timestamps must be integers (as in Prometheus); a
``__name__`` label, unknown TYPE values, a second HELP/TYPE for one name, a
TYPE after the family's samples and duplicate series are errors; CRLF line
ends are accepted in both formats.
"""

from .target import TargetParser, forget_shared_caches
from .types import (
    OPENMETRICS,
    TEXT,
    Exemplar,
    Exposition,
    Labels,
    ParseError,
    Sample,
    detect_format,
    parse_number,
)

__all__ = ["OPENMETRICS", "TEXT", "Exemplar", "Exposition", "Labels", "ParseError", "Sample", "TargetParser",
           "detect_format", "forget_shared_caches", "parse", "parse_number"]


def parse(text: str, content_type: str | None = None) -> Exposition:
    """Parse one exposition (see :func:`detect_format`); raises :class:`ParseError`."""
    return TargetParser().parse(text, content_type)
