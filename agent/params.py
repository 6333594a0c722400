"""Strict parsing of numbers that arrive in requests (query strings, paths, headers, bodies).

Python's own parsers are too lenient for untrusted input: ``str.isdigit()`` is true
for ``'²'`` which ``int()`` then rejects; ``int()`` takes ``'١٢'``, ``' 7 '`` and
``'1_000'``; ``float()`` takes ``'nan'`` and ``'inf'``; and a valid 400-digit integer
overflows as soon as it meets a float (``OverflowError``, not ``ValueError``). These
helpers accept ASCII digits only, bound the length, and return finite values, so a
caller maps one exception (:class:`BadNumber`, a ``ValueError``) to its 400.
"""

from __future__ import annotations

import math
import re

MAX_DIGITS = 18  # below 2**63: every id, cursor and limit we serve fits
_UINT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_MAX_FLOAT_CHARS = 64


class BadNumber(ValueError):
    """A parameter that is not the number it must be; the message names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def is_uint(raw: str | bytes, max_digits: int = MAX_DIGITS) -> bool:
    """True when ``raw`` is 1..``max_digits`` ASCII digits (nothing else, no sign, no space)."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return 0 < len(text) <= max_digits and _UINT.fullmatch(text) is not None


def parse_uint(raw: str | bytes, name: str, max_digits: int = MAX_DIGITS) -> int:
    """``raw`` as an int; :class:`BadNumber` unless 1..``max_digits`` ASCII digits."""
    if not is_uint(raw, max_digits):
        raise BadNumber(name, f"must be a non-negative integer of at most {max_digits} digits")
    return int(raw)


def parse_finite(raw: str, name: str) -> float:
    """``raw`` as a finite float written in plain ASCII decimal; :class:`BadNumber` otherwise."""
    if len(raw) > _MAX_FLOAT_CHARS or _FLOAT.fullmatch(raw) is None:
        raise BadNumber(name, "must be a decimal number")
    value = float(raw)
    if not math.isfinite(value):
        raise BadNumber(name, "must be a finite number")
    return value


def shown(value: object, limit: int = 60) -> str:
    """A short printable form of any (possibly huge or deeply nested) value, for messages."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a >4300-digit int, or nesting beyond the stack
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."
