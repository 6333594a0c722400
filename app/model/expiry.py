"""Forgetting routes and servers that have had no data for a long time.

A route that is renamed by a deploy, or a server taken out of the pool, would
otherwise keep its rings, its heat ring and a NaN computed for it every cycle for
as long as the window is open: memory and collector time that grow all day with
route churn, and dead rows in the Cache table. After ``expire_after`` seconds
without a single finite point its series are dropped (the store keeps its history).
A route still exported comes back at the next cycle, with a fresh ring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from .extract import STATUS_CLASSES
from .ring import Ring

INSTANCE_SEP = "\x00"  # between route and instance in per-instance series keys
# The series whose emptiness decides, and what goes with them.
_ROUTE_METRICS = ("p50", "p95", "p99", "rate", "error_ratio", "size_mean",
                  *(f"rate_{cls}" for cls in STATUS_CLASSES))
_GROUPS: dict[str, tuple[str, ...]] = {
    "p95": _ROUTE_METRICS,  # no finite p95 for that long: no request was served
    "hit_ratio": ("hit_ratio",),
    "share": ("share", "lb_p95"),
    "p95_instance": ("p95_instance",),  # an instance gone from a route still served
}
# A rate limit's series (route and limit in the key): dropped when none of the three saw a
# decision (a finite rate above 0) for that long. The agent keeps exporting a removed
# limit's counters, so their rate reads 0, not NaN: emptiness alone would never come.
_LIMIT_METRICS = ("limit_allowed", "limit_limited", "limit_shadow")


def expired(series: Mapping[tuple[str, str], Ring], now: float,
            expire_after: float) -> tuple[list[tuple[str, str]], list[str]]:
    """(series keys to drop, routes whose heat ring goes) at ``now``.

    Call with the model's lock held. A key is kept while its deciding series has a
    finite point in the last ``expire_after`` seconds, or is younger than that.
    """
    if not math.isfinite(expire_after):
        return [], []
    gone_keys: set[tuple[str, str]] = set()
    gone_routes: list[str] = []
    for (metric, key), ring in series.items():
        if metric == _LIMIT_METRICS[0]:
            rings = [series.get((m, key)) for m in _LIMIT_METRICS]
            if all(r is None or _silent(r, now, expire_after, idle_is_zero=True)
                   for r in rings):
                gone_keys.update((m, key) for m in _LIMIT_METRICS)
            continue
        group = _GROUPS.get(metric)
        if group is None or not _silent(ring, now, expire_after):
            continue
        gone_keys.update((m, key) for m in group)
        if metric == "p95":
            gone_routes.append(key)
    if gone_routes:
        prefixes = tuple(f"{route}{INSTANCE_SEP}" for route in gone_routes)
        gone_keys.update(k for k in series if k[0] == "p95_instance" and k[1].startswith(prefixes))
    return [k for k in gone_keys if k in series], gone_routes


def _silent(ring: Ring, now: float, expire_after: float, idle_is_zero: bool = False) -> bool:
    """No finite point (``idle_is_zero``: none above 0) in the last ``expire_after``
    seconds, and old enough to judge.

    A full ring is judged on what it holds: with the default capacity (3600 points at
    1 s) and an hour's ``expire_after`` its oldest point is never quite an hour old.
    """
    if len(ring) == 0:
        return False
    if len(ring) < ring.capacity and now - ring.oldest() < expire_after:
        return False  # too young to judge (a route that just appeared)
    if idle_is_zero:
        _, recent = ring.arrays(now - expire_after)  # only the part that decides
        return not (np.isfinite(recent) & (recent > 0)).any()
    # The newest point decides in the usual case, without copying an hour of each of
    # thousands of series under the model's lock (200 targets: 5,000 p95 per instance).
    return ring.last_finite(now - expire_after) is None


def drop(series: dict[tuple[str, str], Ring], heat_rings: dict, keys: Iterable[tuple[str, str]],
         routes: Iterable[str]) -> None:
    """Remove what :func:`expired` named (model lock held)."""
    for key in keys:
        series.pop(key, None)
    for route in routes:
        heat_rings.pop(route, None)
