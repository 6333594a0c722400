"""Per-target scrape limits, the streaming body reader, and the backoff schedule.

Limits follow Prometheus' scrape config (``body_size_limit``, ``sample_limit``,
``label_limit``, ``label_name_length_limit``, ``label_value_length_limit``):
exceeding any of them fails the WHOLE scrape — ``up`` is false and none of its
samples are kept. As in Prometheus, 0 means "no limit"; the engine's own
``max_body_bytes`` still caps every body so that memory stays bounded.

The body limit counts DECODED bytes while streaming: an endless chunked body and
a gzip bomb are both cut off as soon as the limit is passed, never read whole.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import AsyncIterator, Mapping
from itertools import chain
from operator import is_, itemgetter
from typing import NamedTuple

from .exposition import Exposition, Labels

MIB = 1024 * 1024
# Defaults sized for API fleets: the demo's histogram-heavy exposition is ~7,600 samples.
LIMIT_DEFAULTS: dict[str, int] = {
    "body_size_limit": 16 * MIB,
    "sample_limit": 100_000,
    "label_limit": 64,
    "label_name_length_limit": 256,
    "label_value_length_limit": 4096,
}
BACKOFF_CAP_SECONDS = 60.0
BACKOFF_CAP_INTERVALS = 30
_GZIP_MAGIC = b"\x1f\x8b"


class Limits(NamedTuple):
    """One target's limits; 0 disables a limit (Prometheus' convention)."""

    body_size_limit: int = LIMIT_DEFAULTS["body_size_limit"]
    sample_limit: int = LIMIT_DEFAULTS["sample_limit"]
    label_limit: int = LIMIT_DEFAULTS["label_limit"]
    label_name_length_limit: int = LIMIT_DEFAULTS["label_name_length_limit"]
    label_value_length_limit: int = LIMIT_DEFAULTS["label_value_length_limit"]


class LimitExceeded(ValueError):
    """A limit failed the whole scrape; ``limit`` names it, the message gives the figures."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


def limit_problem(values: Mapping[str, object]) -> str | None:
    """Why these limit values are invalid (naming the field), or None when they are fine."""
    for key, default in LIMIT_DEFAULTS.items():
        value = values.get(key, default)
        # bool is an int subclass; "true" as a byte count is a mistake, not a number.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{key}: must be a whole number ≥ 0 (0 = no limit), got {value!r}"
    return None


def effective_body_limit(body_size_limit: int, engine_cap: int) -> tuple[int, str]:
    """The byte limit that applies and the name to report when it is exceeded."""
    if body_size_limit and body_size_limit <= engine_cap:
        return body_size_limit, "body_size_limit"
    return engine_cap, "max_body_bytes"


class BodyReader:
    """Accumulates a response body, decoding gzip/deflate incrementally.

    Each decompression step is asked for at most the room left under the limit
    (plus one byte to detect the overflow), so a 1 GB gzip bomb costs no more
    memory than ``limit`` bytes before it is refused.
    """

    def __init__(self, content_encoding: str, limit: int, limit_name: str = "body_size_limit") -> None:
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self._wbits: int | None = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._wbits = 32 + zlib.MAX_WBITS  # auto-detects the gzip or zlib wrapper
        else:
            raise ValueError(f"unsupported Content-Encoding {content_encoding!r} (trimtab asks for gzip)")
        self._z = zlib.decompressobj(self._wbits) if self._wbits is not None else None
        self._limit, self._limit_name = limit, limit_name
        self._out = bytearray()
        self._compressed_seen = False

    @property
    def encoded(self) -> bool:
        """Whether the body is compressed (its decoded size is unknown until read)."""
        return self._wbits is not None

    def feed(self, raw: bytes) -> None:
        """Add raw (still encoded) bytes; LimitExceeded once the decoded size passes the limit."""
        if self._z is None:
            self._take(raw)
            return
        self._compressed_seen = self._compressed_seen or bool(raw)
        data = raw
        while data:
            try:
                piece = self._z.decompress(data, self._limit - len(self._out) + 1)
            except zlib.error as exc:
                raise ValueError(f"body is not valid gzip/deflate: {exc}") from None
            self._take(piece)
            data = self._z.unconsumed_tail
            if self._z.eof:
                data = self._z.unused_data + data
                if not data.startswith(_GZIP_MAGIC):
                    return  # trailing padding after the stream: ignored, as most clients do
                self._z = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a further gzip member (multistream)

    def _take(self, piece: bytes) -> None:
        self._out += piece
        if len(self._out) > self._limit:
            raise LimitExceeded(self._limit_name,
                                f"{self._limit_name} exceeded: more than {self._limit:,} bytes "
                                f"after decoding; the read was stopped")

    def finish(self) -> bytes:
        """The whole decoded body; ValueError when a compressed stream ended early."""
        if self._z is not None and self._compressed_seen:
            self._take(self._z.flush())
            if not self._z.eof:
                raise ValueError("gzip body ends early (truncated stream)")
        return bytes(self._out)


async def read_body(chunks: AsyncIterator[bytes], content_encoding: str, content_length: str | None,
                    limit: int, limit_name: str) -> bytes:
    """Stream ``chunks`` (raw bytes) through a :class:`BodyReader`; refuse early on Content-Length."""
    reader = BodyReader(content_encoding, limit, limit_name)
    if content_length is not None and content_length.isdigit() and not reader.encoded:
        size = int(content_length)
        if size > limit:  # known too big: fail without reading a byte of it
            raise LimitExceeded(limit_name, f"{limit_name} exceeded: {size:,} bytes > {limit:,}")
    async for raw in chunks:
        reader.feed(raw)
    return reader.finish()


class SeriesChecker:
    """Checks ``sample_limit`` and the label limits on one target's successive scrapes.

    The parser hands back the very same label tuples while a target's exposition
    keeps its layout, so a scrape whose label tuples are the previous scrape's
    objects is known good after one C-level identity pass; otherwise label sets
    already checked are remembered by identity (references are held so an id is
    never reused) and only new ones are checked. Not thread-safe: one per target.
    """

    def __init__(self) -> None:
        self._limits: Limits | None = None
        self._ok: dict[int, Labels] = {}
        self._last: list[Labels] = []

    def check(self, expo: Exposition, limits: Limits) -> None:
        """Raise :class:`LimitExceeded` naming the first limit ``expo`` exceeds."""
        names, label_sets, _values, _stamps = expo.columns()  # no Sample tuples built
        n = len(names)
        if limits.sample_limit and n > limits.sample_limit:
            raise LimitExceeded("sample_limit",
                                f"sample_limit exceeded: {n:,} samples > {limits.sample_limit:,}")
        if not (limits.label_limit or limits.label_name_length_limit or limits.label_value_length_limit):
            return
        if limits != self._limits or len(self._ok) > 4 * n + 4096:
            self._limits, self._ok, self._last = limits, {}, []
        elif n == len(self._last) and all(map(is_, label_sets, self._last)):
            return  # the steady state: the same label objects as the last good scrape
        fresh = set(map(id, label_sets)).difference(self._ok)
        if not _within_limits([labels for labels in label_sets if id(labels) in fresh], limits):
            for name, labels in zip(names, label_sets):  # name the first that is over
                if id(labels) in fresh:
                    _check_labels(name, labels, limits)
        # Only after every sample passed: a refused scrape must not mark anything as checked.
        self._last = list(label_sets)
        self._ok.update(zip(map(id, self._last), self._last))


def _within_limits(label_sets: list[Labels], limits: Limits) -> bool:
    """Whether every label set passes, told by C-level passes over all of them (a target's
    first scrape checks thousands; one Python loop per label was 2 ms of a 2,000-sample
    target's first scrape). False only says one may not: :func:`_check_labels` finds it."""
    unlimited = math.inf
    if max(map(len, label_sets), default=0) > (limits.label_limit or unlimited):
        return False
    pairs = list(chain.from_iterable(label_sets))
    longest_name = max(map(len, map(itemgetter(0), pairs)), default=0)
    longest_value = max(map(len, map(itemgetter(1), pairs)), default=0)
    return (longest_name <= (limits.label_name_length_limit or unlimited)
            and longest_value <= (limits.label_value_length_limit or unlimited))


def _check_labels(name: str, labels: Labels, limits: Limits) -> None:
    metric = name[:50]  # as Prometheus does: the name is context, not the point of the message
    if limits.label_limit and len(labels) > limits.label_limit:
        raise LimitExceeded("label_limit", f"label_limit exceeded: {len(labels):,} labels > "
                                           f"{limits.label_limit:,} on {metric}")
    for label, value in labels:
        if limits.label_name_length_limit and len(label) > limits.label_name_length_limit:
            raise LimitExceeded("label_name_length_limit",
                                f"label_name_length_limit exceeded: a label name of {len(label):,} "
                                f"characters > {limits.label_name_length_limit:,} on {metric}")
        if limits.label_value_length_limit and len(value) > limits.label_value_length_limit:
            raise LimitExceeded("label_value_length_limit",
                                f"label_value_length_limit exceeded: {len(value):,} characters > "
                                f"{limits.label_value_length_limit:,} in label {label[:50]!r} of {metric}")


def backoff_delay(interval: float, failures: int) -> float:
    """Seconds from one scheduled attempt to the next after ``failures`` consecutive failures.

    1, 1, 2, 4, 8, ... intervals: a single failure keeps the normal pace (one blip is
    common), then the wait doubles up to min(60 s, 30 intervals), never below one
    interval. Whole intervals keep the target on its own grid, i.e. its stable
    offset: targets that die together keep retrying at different moments.
    """
    if failures <= 1:
        return interval
    cap = max(1, math.floor(min(BACKOFF_CAP_SECONDS, BACKOFF_CAP_INTERVALS * interval) / interval))
    return interval * min(2 ** min(failures - 1, 30), cap)


def next_due(due: float, now: float, interval: float, delay: float) -> float:
    """The next attempt time: ``due + delay``, or when that has passed (a slow scrape, a
    stalled loop) the first later tick of the target's grid — missed ticks are skipped,
    never scraped back to back."""
    due += delay
    if due < now:
        due += math.ceil((now - due) / interval) * interval
    return due
