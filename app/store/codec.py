"""Binary encodings for the store's chunks, and the per-step aggregate used by rollups.

A chunk column is one mode byte plus a zlib stream of a *byte-shuffled*
uint64 array (all first bytes, then all second bytes, ...): after delta or XOR
coding the high bytes are nearly all zero, which zlib then removes almost for
free. Modes:

- ``INT``: every value is an integer of magnitude ≤ 2**53 (bucket counts,
  ``_count``, most counters): zig-zag deltas of the integers.
- ``XOR``: Gorilla-style XOR of each float's bits with the previous one.
- ``DELTA``: integer deltas of the float bit patterns, which are smaller than
  XORs for slowly rising floats of one exponent (``_sum`` counters).
- ``DOD``: delta-of-delta of the bit patterns, for timestamps.

Every mode is bit-exact, NaN payloads and ``-0.0`` included. Integer maths on
bit patterns wraps modulo 2**64 both ways, so it is lossless for any input.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields

import numpy as np

INT, XOR, DELTA, DOD = 1, 2, 3, 4
_ZLIB_LEVEL = 1  # level 6 or 9 gave the same sizes here, slower
_MAX_EXACT = float(2**53)


def _zigzag(d: np.ndarray) -> np.ndarray:
    return ((d << 1) ^ (d >> 63)).view(np.uint64)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    z = z.view(np.int64)
    return (z >> 1 & np.int64(0x7FFFFFFFFFFFFFFF)) ^ -(z & 1)


def _pack(mode: int, words: np.ndarray) -> bytes:
    planes = np.ascontiguousarray(words.astype("<u8").view(np.uint8).reshape(-1, 8).T)
    return bytes((mode,)) + zlib.compress(planes.tobytes(), _ZLIB_LEVEL)


def _unpack(blob: bytes) -> tuple[int, np.ndarray]:
    raw = np.frombuffer(zlib.decompress(blob[1:]), dtype=np.uint8)
    n = raw.size // 8
    words = np.ascontiguousarray(raw.reshape(8, n).T).view("<u8").reshape(n)
    return blob[0], words.astype(np.uint64, copy=False)


def _is_exact_int(v: np.ndarray) -> bool:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (v == np.trunc(v)) & (np.abs(v) <= _MAX_EXACT)
    return bool(ok.all()) and not bool((np.signbit(v) & (v == 0)).any())


def encode_values(v: np.ndarray) -> bytes:
    """Encode float64 values losslessly, choosing the smallest applicable mode."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    if _is_exact_int(v):
        return _pack(INT, _zigzag(np.diff(v.astype(np.int64), prepend=np.int64(0))))
    bits = v.view(np.uint64)
    prev = np.concatenate((np.zeros(1, np.uint64), bits[:-1]))
    xor = _pack(XOR, bits ^ prev)
    delta = _pack(DELTA, _zigzag(bits.view(np.int64) - prev.view(np.int64)))
    return xor if len(xor) <= len(delta) else delta


def encode_times(t: np.ndarray) -> bytes:
    """Encode timestamps (float64 seconds) as delta-of-delta of their bit patterns."""
    bits = np.ascontiguousarray(t, dtype=np.float64).view(np.int64)
    d1 = np.diff(bits, prepend=np.int64(0))
    return _pack(DOD, _zigzag(np.diff(d1, prepend=np.int64(0))))


def _pack_rows(mode: int, words: np.ndarray) -> list[bytes]:
    """:func:`_pack` of each row of a 2-D uint64 array."""
    rows, n = words.shape
    planes = np.ascontiguousarray(
        words.astype("<u8").view(np.uint8).reshape(rows, n, 8).transpose(0, 2, 1))
    head = bytes((mode,))
    return [head + zlib.compress(row.tobytes(), _ZLIB_LEVEL) for row in planes]


def encode_value_rows(v: np.ndarray) -> list[bytes]:
    """:func:`encode_values` of each row of a 2-D array, the same bytes, vectorised across
    rows (rollups encode hundreds of short series at once; per-call overhead dominated)."""
    v = np.ascontiguousarray(v, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        exact = np.isfinite(v) & (v == np.trunc(v)) & (np.abs(v) <= _MAX_EXACT)
    ints = exact.all(axis=1) & ~(np.signbit(v) & (v == 0)).any(axis=1)
    out: list[bytes | None] = [None] * len(v)
    if ints.any():
        whole = v[ints].astype(np.int64)
        packed = _pack_rows(INT, _zigzag(np.diff(whole, axis=1, prepend=np.int64(0))))
        for i, blob in zip(np.flatnonzero(ints).tolist(), packed):
            out[i] = blob
    if not ints.all():
        bits = v[~ints].view(np.uint64)
        prev = np.concatenate((np.zeros((len(bits), 1), np.uint64), bits[:, :-1]), axis=1)
        xors = _pack_rows(XOR, bits ^ prev)
        deltas = _pack_rows(DELTA, _zigzag(bits.view(np.int64) - prev.view(np.int64)))
        for i, x, d in zip(np.flatnonzero(~ints).tolist(), xors, deltas):
            out[i] = x if len(x) <= len(d) else d
    return out  # type: ignore[return-value]


def encode_time_rows(t: np.ndarray) -> list[bytes]:
    """:func:`encode_times` of each row of a 2-D array, the same bytes."""
    bits = np.ascontiguousarray(t, dtype=np.float64).view(np.int64)
    d1 = np.diff(bits, axis=1, prepend=np.int64(0))
    return _pack_rows(DOD, _zigzag(np.diff(d1, axis=1, prepend=np.int64(0))))


def decode(blob: bytes) -> np.ndarray:
    """Decode any column written by :func:`encode_values` or :func:`encode_times`."""
    mode, words = _unpack(blob)
    if mode == INT:
        return np.cumsum(_unzigzag(words)).astype(np.float64)
    if mode == XOR:
        return np.bitwise_xor.accumulate(words).view(np.float64)
    if mode == DELTA:
        return np.cumsum(_unzigzag(words)).view(np.float64)
    if mode == DOD:
        return np.cumsum(np.cumsum(_unzigzag(words))).view(np.float64)
    raise ValueError(f"unknown chunk column mode {mode}")


def pack_columns(columns: list[bytes]) -> bytes:
    """Concatenate encoded columns behind a small length header."""
    header = struct.pack(f"<B{len(columns)}I", len(columns), *(len(c) for c in columns))
    return header + b"".join(columns)


def unpack_columns(blob: bytes, expected: int | None = None) -> list[bytes]:
    """Inverse of :func:`pack_columns`; ``expected`` = the number of columns there must be.

    A damaged blob raises ``struct.error`` (the store reports it as a StoreError naming
    the file), not whatever unpacking it happened to trip over.
    """
    if not blob:
        raise struct.error("empty chunk")
    count = blob[0]
    if expected is not None and count != expected:
        raise struct.error(f"chunk has {count} columns, expected {expected}")
    lengths = struct.unpack_from(f"<{count}I", blob, 1)
    pos, out = 1 + 4 * count, []
    for length in lengths:
        out.append(blob[pos:pos + length])
        pos += length
    if pos != len(blob):
        raise struct.error(f"chunk holds {len(blob)} bytes, its columns say {pos}")
    return out


def encode_raw_chunk(positions: np.ndarray, values: np.ndarray, n_cycles: int) -> bytes:
    """One series' values in a raw block; ``positions`` index the block's cycles."""
    mask = b""
    if len(positions) != n_cycles:  # the series missed some cycles: keep which ones
        present = np.zeros(n_cycles, dtype=bool)
        present[positions] = True
        mask = np.packbits(present).tobytes()
    return pack_columns([mask, encode_values(values)])


def decode_raw_chunk(blob: bytes, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and values of one raw chunk, given its block's cycle times."""
    mask, values = unpack_columns(blob, expected=2)
    v = decode(values)
    if not mask:
        return times, v
    present = np.unpackbits(np.frombuffer(mask, np.uint8), count=len(times)).astype(bool)
    return times[present], v


@dataclass
class Points:
    """Samples with per-point aggregates; a raw sample is a one-sample aggregate.

    ``t`` and ``last`` are the time and value of the newest raw sample the point
    covers (exact for counters and histogram buckets); ``mn``/``mx`` ignore
    NaN; ``sm``/``cnt`` are the sum and number of non-NaN samples (mean = sm/cnt).
    """

    t: np.ndarray
    last: np.ndarray
    mn: np.ndarray
    mx: np.ndarray
    sm: np.ndarray
    cnt: np.ndarray

    @classmethod
    def from_raw(cls, t: np.ndarray, v: np.ndarray) -> Points:
        """Points for raw samples."""
        nan = np.isnan(v)
        return cls(t, v, v, v, np.where(nan, 0.0, v), (~nan).astype(np.float64))

    @classmethod
    def concat(cls, parts: list[Points]) -> Points:
        """Join time-ordered pieces."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def __len__(self) -> int:
        return len(self.t)

    def clip(self, lo: float, hi: float) -> Points:
        """Points with ``lo <= t < hi`` (``t`` is ascending, so these are views)."""
        i, j = np.searchsorted(self.t, (lo, hi))
        return Points(*(getattr(self, f)[i:j] for f in _FIELDS))

    def newest_per_bucket(self, bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``aggregate(bucket)``'s ``t`` and ``last`` only: the cheap path for counters."""
        ends = _runs(bucket)[1]
        return self.t[ends], self.last[ends]

    def aggregate(self, bucket: np.ndarray) -> Points:
        """One point per run of equal ``bucket`` values (``bucket`` is non-decreasing)."""
        if len(self) == 0:
            return self
        starts, ends = _runs(bucket)
        with np.errstate(invalid="ignore"):  # inf + -inf in a sum is NaN, as it should be
            return Points(self.t[ends], self.last[ends], np.fmin.reduceat(self.mn, starts),
                          np.fmax.reduceat(self.mx, starts), np.add.reduceat(self.sm, starts),
                          np.add.reduceat(self.cnt, starts))

    def select(self, agg: str) -> np.ndarray:
        """The values a chart shows for ``agg`` in ``last``/``min``/``max``/``mean``."""
        if agg == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(self.cnt > 0, self.sm / np.maximum(self.cnt, 1), np.nan)
        return {"last": self.last, "min": self.mn, "max": self.mx}[agg]

    def encode(self) -> bytes:
        """Serialise a rollup chunk."""
        return pack_columns([encode_times(self.t)] + [encode_values(getattr(self, f))
                                                      for f in _FIELDS[1:]])

    @staticmethod
    def encode_many(many: list[Points]) -> list[bytes]:
        """``[p.encode() for p in many]``, the same bytes, vectorised over points of one length."""
        out: list[bytes] = [b""] * len(many)
        groups: dict[int, list[int]] = {}
        for i, points in enumerate(many):
            groups.setdefault(len(points), []).append(i)
        for members in groups.values():
            columns = [encode_time_rows(np.stack([many[i].t for i in members]))]
            columns += [encode_value_rows(np.stack([getattr(many[i], f) for i in members]))
                        for f in _FIELDS[1:]]
            for k, i in enumerate(members):
                out[i] = pack_columns([column[k] for column in columns])
        return out

    @classmethod
    def decode(cls, blob: bytes) -> Points:
        """Inverse of :meth:`encode`."""
        return cls(*(decode(c) for c in unpack_columns(blob, expected=len(fields(cls)))))


def _runs(bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal values in a non-empty array."""
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    return starts, np.concatenate((starts[1:], [len(bucket)])) - 1


_FIELDS = ("t", "last", "mn", "mx", "sm", "cnt")
EMPTY = Points(*(np.empty(0) for _ in _FIELDS))
