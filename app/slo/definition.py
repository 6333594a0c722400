"""What an SLO promises, checked when it is made: a route, an objective, a window.

One :class:`SLO` is one objective on one route (or a route pattern): either a
*latency* objective ("99 % of /search at or under 300 ms") or an *availability*
objective ("99.9 % of /orders answer without a 5xx"). A route with both has two
SLOs. Every field is checked in :meth:`SLO.__post_init__`, so a bad definition
never exists: a file, a dialog and a test all get the same :class:`SLOError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from ..model.keys import split_route_key

Kind = Literal["latency", "availability"]
KINDS: tuple[Kind, ...] = ("latency", "availability")

DAY = 86400.0
# Longest SLO window accepted: a quarter. Longer windows hide every incident.
MAX_WINDOW = 92 * DAY
# Objectives are shares strictly between 0 and 1; 1 (100 %) leaves no budget to burn,
# and below 50 % is a typo (``0.099`` meant ``0.99``) far more often than a promise.
MIN_OBJECTIVE = 0.5
# RFC 1123 label, as OpenSLO requires of ``metadata.name``.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_STATUS = re.compile(r"^[1-5](xx|[0-9]{2})$")
_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d|w)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


class SLOError(ValueError):
    """A definition that cannot be a promise; the message names the field and the rule."""


@dataclass(frozen=True)
class SLO:
    """One objective on one route.

    ``route`` is a route template as the cockpit shows it (``/items/{id}``) or a
    pattern with ``*`` (``/api/*``), matched against the whole template.
    ``threshold_s`` is the latency bound (latency SLOs only). ``bad_statuses`` are
    the answers that break an availability SLO: classes (``5xx``) or codes (``429``).
    """

    name: str
    route: str
    kind: Kind
    objective: float
    window_s: float = 28 * DAY
    threshold_s: float | None = None
    bad_statuses: tuple[str, ...] = ("5xx",)
    service: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SLOError(f"name {self.name!r}: lowercase letters, digits and '-', "
                           "1 to 63 characters, starting and ending with a letter or digit")
        if not isinstance(self.route, str) or not self.route.startswith("/"):
            raise SLOError(f"{self.name}: route {self.route!r} must start with '/'")
        if any(c in self.route for c in "\n\r\"\\"):
            raise SLOError(f"{self.name}: route {self.route!r} holds a quote, backslash or newline")
        if self.kind not in KINDS:
            raise SLOError(f"{self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if (not isinstance(self.objective, int | float) or isinstance(self.objective, bool)
                or not math.isfinite(self.objective)
                or not MIN_OBJECTIVE <= self.objective < 1.0):
            raise SLOError(f"{self.name}: objective {self.objective!r} must be a share from "
                           f"{MIN_OBJECTIVE} to below 1 (0.99 = 99 %)")
        if (not isinstance(self.window_s, int | float) or not math.isfinite(self.window_s)
                or not 3600.0 <= self.window_s <= MAX_WINDOW):
            raise SLOError(f"{self.name}: window {self.window_s!r} s must be from 1 h to 92 d "
                           "(28d or 30d are usual)")
        if self.kind == "latency":
            t = self.threshold_s
            if (not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t)
                    or not 0.0 < t <= 3600.0):
                raise SLOError(f"{self.name}: a latency SLO needs a threshold from above 0 "
                               f"to 3600 s, not {t!r}")
        elif self.threshold_s is not None:
            raise SLOError(f"{self.name}: an availability SLO has no latency threshold")
        if self.kind == "availability":
            if not self.bad_statuses:
                raise SLOError(f"{self.name}: an availability SLO needs at least one bad status")
            for status in self.bad_statuses:
                if not isinstance(status, str) or not _STATUS.match(status):
                    raise SLOError(f"{self.name}: bad status {status!r} must be a class "
                                   "like 5xx or a code like 429")

    # --- what it means -----------------------------------------------------------

    @property
    def budget(self) -> float:
        """The share of requests allowed to miss: ``1 - objective``."""
        return 1.0 - self.objective

    def matches(self, route: str) -> bool:
        """Whether ``route`` (a route key, :mod:`trimtab.app.model.keys`) is covered.

        An SLO with a ``service`` covers only that service's keys (``shop · /search``);
        one without covers the route of every service. The route part is matched against
        this SLO's route or pattern.
        """
        service, plain = split_route_key(route)
        if self.service and service != self.service:
            return False
        return fnmatchcase(plain, self.route) if "*" in self.route else plain == self.route

    def is_bad_status(self, status: str | int) -> bool:
        """Whether an answer with ``status`` breaks this (availability) SLO."""
        code = str(status)
        return any(code == s or (s.endswith("xx") and code[:1] == s[0] and len(code) == 3)
                   for s in self.bad_statuses)

    def status_regex(self) -> str:
        """The bad statuses as a PromQL regex (``5..|429``)."""
        return "|".join(s.replace("xx", "..") for s in self.bad_statuses)

    def route_regex(self) -> str:
        """The route (or pattern) as an anchored PromQL regex (RE2 syntax)."""
        return ".*".join(re.escape(part) for part in self.route.split("*"))

    def summary(self) -> str:
        """``99 % of /search within 300 ms over 28 d`` — for tables and notifications."""
        share = f"{self.objective * 100:.10g} %"
        days = f"{self.window_s / DAY:.10g} d"
        if self.kind == "latency":
            assert self.threshold_s is not None
            return f"{share} of {self.route} within {format_seconds(self.threshold_s)} over {days}"
        return (f"{share} of {self.route} without {', '.join(self.bad_statuses)} "
                f"over {days}")


def format_seconds(seconds: float) -> str:
    """``0.3`` → ``300 ms``, ``2.5`` → ``2.5 s`` (thresholds as people write them)."""
    if seconds < 1.0:
        return f"{seconds * 1000:.10g} ms"
    return f"{seconds:.10g} s"


def parse_duration(text: str) -> float:
    """``"28d"`` → seconds. One number and one unit (ms, s, m, h, d, w), as OpenSLO writes them."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise SLOError(f"duration {text!r}: write a whole number and a unit, e.g. 28d, 30d, 6h")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def format_duration(seconds: float) -> str:
    """Seconds → the largest unit that divides it: ``2419200`` → ``28d``; ``300`` → ``5m``."""
    ms = round(seconds * 1000)
    for unit in ("d", "h", "m", "s"):
        size = round(_UNIT_S[unit] * 1000)
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
