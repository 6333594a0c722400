"""Turns one parsed scrape into the cumulative counters the model derives series from."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field

from trimtab.collectors.canonical import (
    CACHE,
    CREATED,
    HIST_BUCKET,
    LB_BUCKET,
    LB_ERRORS,
    LB_EXPECTED,
    LB_IN_FLIGHT,
    LB_REQUESTS,
    LB_STATE,
    LB_UP,
    LB_WEIGHT,
    PROCESS_START,
    REQUESTS,
)
from trimtab.collectors.exposition import Exposition, Labels
from trimtab.collectors.promql import restarted


@dataclass
class Counters:
    """Cumulative values of one target at one scrape."""

    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # route → le → count
    requests: dict[str, float] = field(default_factory=dict)  # route → all requests
    errors: dict[str, float] = field(default_factory=dict)  # route → 5xx requests
    cache: dict[tuple[str, str], float] = field(default_factory=dict)  # (route, result) → n
    lb_requests: dict[str, float] = field(default_factory=dict)  # server → n
    lb_expected: dict[str, float] = field(default_factory=dict)  # server → share
    lb_weight: dict[str, float] = field(default_factory=dict)  # server → weight
    lb_in_flight: dict[str, float] = field(default_factory=dict)
    lb_up: dict[str, float] = field(default_factory=dict)
    lb_state: dict[str, str] = field(default_factory=dict)  # server → ready | drain | maint
    lb_errors: dict[str, float] = field(default_factory=dict)
    lb_buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # server → le → n
    start: float | None = None  # process_start_time_seconds
    # (field, key of that field) → series labels → ``_created`` value
    created: dict[tuple[str, Hashable], dict[Labels, float]] = field(default_factory=dict)

    def reset_since(self, old: Counters, counter: str, key: Hashable) -> bool:
        """Whether ``counter[key]`` restarted between ``old`` and this scrape.

        True when ``process_start_time_seconds`` changed, or a ``_created`` of a
        series present in both scrapes changed (a series that merely appeared
        is not a reset). Catches a restart that climbed back above the old value,
        which the value alone cannot show. Keys sum several series (a route over
        methods and statuses), so one recreated series resets the whole key.
        """
        if restarted(old.start, self.start):
            return True
        before, after = old.created.get((counter, key)), self.created.get((counter, key))
        if not before or not after:
            return False
        return any(restarted(before.get(series), value) for series, value in after.items())


def extract(expo: Exposition) -> Counters:
    """Pick out what the cockpit charts; everything else is ignored here."""
    out = Counters()
    names, label_sets, values, _stamps = expo.columns()  # no Sample tuples built
    bucket_keys, request_keys = _BUCKET_KEYS, _REQUEST_KEYS
    if len(bucket_keys) + len(request_keys) > _KEY_CACHE_MAX:  # bounded: label sets churn
        bucket_keys.clear()
        request_keys.clear()
    buckets, requests, errors = out.buckets, out.requests, out.errors
    for name, labels, value in zip(names, label_sets, values):
        if name == HIST_BUCKET:
            key = bucket_keys.get(labels)
            if key is None:
                key = bucket_keys[labels] = _bucket_key(labels)
            if key[1] != key[1]:  # no usable "le": not a bucket this cockpit can place
                continue
            per_route = buckets.get(key[0])
            if per_route is None:
                per_route = buckets[key[0]] = {}
            per_route[key[1]] = per_route.get(key[1], 0.0) + value
        elif name == REQUESTS:
            rkey = request_keys.get(labels)
            if rkey is None:
                rkey = request_keys[labels] = _request_key(labels)
            route = rkey[0]
            requests[route] = requests.get(route, 0.0) + value
            if rkey[1]:
                errors[route] = errors.get(route, 0.0) + value
        elif name == CACHE:
            lab = dict(labels)
            ckey = (lab.get("route", "?"), lab.get("result", "?"))
            out.cache[ckey] = out.cache.get(ckey, 0.0) + value  # bypass: one series per reason
        elif name in (LB_REQUESTS, LB_EXPECTED, LB_WEIGHT):
            server = dict(labels).get("server")
            if server is not None:  # a balancer series without its server is not placeable
                {LB_REQUESTS: out.lb_requests, LB_EXPECTED: out.lb_expected,
                 LB_WEIGHT: out.lb_weight}[name][server] = value
        elif name in CREATED or name == PROCESS_START:
            _extract_restart_marker(out, name, labels, value)
        elif name.startswith("trimtab_balancer_"):
            _extract_balancer(out, name, dict(labels), value)
    return out


# Label set → what extract() needs of it. The parser hands out the same label tuples scrape
# after scrape, so decoding each (dict(labels), float(le)) once instead of per scrape takes
# most of extract's time off the collector thread, which shares the GIL with the GUI.
_BUCKET_KEYS: dict[Labels, tuple[str, float]] = {}
_REQUEST_KEYS: dict[Labels, tuple[str, bool]] = {}
_KEY_CACHE_MAX = 200_000


def _bucket_key(labels: Labels) -> tuple[str, float]:
    """(route, le) of a latency bucket sample; le is NaN when missing or not a number.

    The parser accepts an untyped ``…_bucket`` without a numeric ``le``; raising here
    would lose the whole scrape (and, from a Prometheus source, stop its polling).
    """
    lab = dict(labels)
    try:
        le = float(lab["le"])
    except (KeyError, ValueError):
        le = math.nan
    return lab.get("route", "?"), le


def _request_key(labels: Labels) -> tuple[str, bool]:
    """(route, is a 5xx) of a request counter sample."""
    lab = dict(labels)
    return lab.get("route", "?"), lab.get("status", "").startswith("5")


def _extract_restart_marker(out: Counters, name: str, labels: Labels, value: float) -> None:
    if not math.isfinite(value):  # NaN != NaN would look like a restart at every scrape
        return
    if name == PROCESS_START:
        out.start = value
        return
    counter, lab = CREATED[name], dict(labels)
    key: Hashable
    if counter == "cache":
        key = (lab.get("route", "?"), lab.get("result", "?"))
    elif counter.startswith("lb_"):
        key = lab.get("server", "?")
    else:
        key = lab.get("route", "?")
    out.created.setdefault((counter, key), {})[labels] = value


def _extract_balancer(out: Counters, name: str, lab: dict[str, str], value: float) -> None:
    server = lab.get("server", "?")
    if name == LB_IN_FLIGHT:
        out.lb_in_flight[server] = value
    elif name == LB_UP:
        out.lb_up[server] = value
    elif name == LB_STATE and value == 1:
        out.lb_state[server] = lab.get("state", "?")
    elif name == LB_ERRORS:
        out.lb_errors[server] = value
    elif name == LB_BUCKET:
        try:
            le = float(lab["le"])
        except (KeyError, ValueError):  # as in extract(): skip, never lose the scrape
            return
        per = out.lb_buckets.setdefault(server, {})
        per[le] = per.get(le, 0.0) + value
