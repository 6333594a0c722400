"""Turns one parsed scrape into the cumulative counters the model derives series from."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
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
    RATELIMIT,
    REQUESTS,
    SIZE_COUNT,
    SIZE_SUM,
)
from trimtab.collectors.exposition import Exposition, Labels
from trimtab.collectors.promql import restarted
from trimtab.collectors.scrape import service_problem

from .keys import route_key

# What one counter series adds to: (Counters field, its key, sub-key), e.g.
# ("buckets", route, le), ("requests", route, status class), ("sizes", route, "sum"|"count"),
# ("cache", (route, result), None), ("ratelimit", (route, limit), result),
# ("lb_requests", server, None), ("lb_errors", server, None), ("lb_buckets", server, le).
# ``group[:2]`` is the (counter, key) a ``_created`` dates (Counters.reset_since).
Group = tuple[str, Hashable, Hashable]

# What an operator reads a route's answers by; 429 (rate limited) apart from the other 4xx.
STATUS_CLASSES = ("2xx", "3xx", "4xx", "429", "5xx", "other")


def status_class(status: str) -> str:
    """The class of a ``status`` label value: ``"503"`` and ``"5xx"`` (instrumentations that
    group codes) are ``"5xx"``, ``"429"`` is its own; 1xx, empty or odd values are ``"other"``.

    By first character, as the PromQL of each class matches (``status=~"5.*"``), so the
    5xx class is exactly what the error ratio counts.
    """
    if status == "429":
        return "429"
    head = status[:1]
    return f"{head}xx" if head in ("2", "3", "4", "5") else "other"


@dataclass(frozen=True, eq=False)
class Layout:
    """Which counter series one scrape's :attr:`Counters.values` hold, column by column.

    Interned: successive scrapes of a target with the same series in the same order
    share one Layout object, so the model stacks their values into one matrix and
    takes Prometheus' per-series ``rate`` of all columns at once (``collectors.rates``).
    """

    series: tuple[tuple[str, Labels], ...]  # (sample name, labels) per column
    groups: tuple[Group, ...]  # per column
    keys: tuple[Group, ...]  # the distinct groups, in first-seen order
    index: np.ndarray  # column → position in ``keys``
    # The targets' service: the same series of two services group under different route keys.
    service: str = ""


def make_layout(series: tuple[tuple[str, Labels], ...], groups: list[Group],
                service: str = "") -> Layout:
    """The interned :class:`Layout` of these columns (``groups[i]`` belongs to ``series[i]``)
    for targets of ``service``."""
    layout = _LAYOUTS.get((service, series))
    if layout is None:
        if len(_LAYOUTS) > _LAYOUTS_MAX:  # bounded: series churn must not grow it forever
            _LAYOUTS.clear()
        keys = list(dict.fromkeys(groups))
        position = {g: i for i, g in enumerate(keys)}
        layout = _LAYOUTS[(service, series)] = Layout(
            series, tuple(groups), tuple(keys),
            np.array([position[g] for g in groups], dtype=np.intp), service)
    return layout


def kind_plan(layout: Layout) -> dict[str, tuple[tuple[Group, ...], list[int]]]:
    """``layout.keys`` split by kind (a group's first item: "buckets", "requests", ...):
    kind → (its groups, their positions in ``keys``), in key order. Worked out once per
    layout (interned, so once per target layout), so a consumer of one kind of rates walks
    that kind only, not every group of every target each tick."""
    plan = layout.__dict__.get("_kinds")
    if plan is None:
        found: dict[str, tuple[list[Group], list[int]]] = {}
        for i, group in enumerate(layout.keys):
            keys, positions = found.setdefault(group[0], ([], []))
            keys.append(group)
            positions.append(i)
        plan = {kind: (tuple(keys), positions) for kind, (keys, positions) in found.items()}
        layout.__dict__["_kinds"] = plan  # frozen, but a cache of its own keys is no change
    return plan


def bucket_plan(layout: Layout, kind: str
                ) -> list[tuple[Hashable, tuple[Any, ...], Callable[[list[float]], tuple[float, ...]]]]:
    """The ``kind`` bucket groups (``(kind, key, le)``) by key: [(key, its bounds, a getter
    of their values from values aligned with ``layout.keys``)], keys in first-seen order,
    bounds in key order."""
    cache = layout.__dict__.setdefault("_buckets", {})
    plan = cache.get(kind)
    if plan is None:
        keys, positions = kind_plan(layout).get(kind, ((), []))
        by_key: dict[Hashable, tuple[list[Any], list[int]]] = {}
        for group, at in zip(keys, positions):
            les, where = by_key.setdefault(group[1], ([], []))
            les.append(group[2])
            where.append(at)
        # itemgetter of one position gives a value, not a 1-tuple: wrap that case.
        plan = cache[kind] = [(key, tuple(les), itemgetter(*where) if len(where) > 1
                               else _one(where[0])) for key, (les, where) in by_key.items()]
    return plan


def _one(position: int) -> Callable[[list[float]], tuple[float, ...]]:
    return lambda values: (values[position],)


_LAYOUTS: dict[tuple[str, tuple[tuple[str, Labels], ...]], Layout] = {}
_LAYOUTS_MAX = 10_000
EMPTY_LAYOUT = Layout((), (), (), np.empty(0, dtype=np.intp))


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
    # Every counter series on its own (the fields above sum them): Prometheus takes ``rate``
    # per series before ``sum``, which differs when a series appears or resets in the window.
    layout: Layout = EMPTY_LAYOUT
    values: np.ndarray = field(default_factory=lambda: np.empty(0))

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

    def same_markers(self, old: Counters) -> bool:
        """``old.start == self.start and old.created == self.created``, without building
        ``created`` when both scrapes came from one :class:`~.extractor.Extractor` plan with
        equal marker values (a NaN among them takes the dict comparison, which is exact)."""
        if old.start != self.start:
            return False
        mine, theirs = self.__dict__.get("_marks"), old.__dict__.get("_marks")
        if (mine is not None and theirs is not None and mine[0] is theirs[0]
                and np.array_equal(mine[1], theirs[1])):
            return True
        return old.created == self.created

    @classmethod
    def planned(cls, fields: dict[str, Any], marks: tuple[tuple[tuple[tuple[str, Hashable], Labels], ...],
                                                         np.ndarray]) -> Counters:
        """Counters of a planned extraction (:mod:`.extractor`): ``fields`` holds ``layout``,
        ``values``, ``start`` and the balancer gauges; the per-route sums (``buckets``,
        ``requests``, ``errors``, ``cache``, ``lb_buckets``) are worked out from the counter
        columns, and ``created`` from ``marks`` (each ``_created`` column's (field, key) and
        labels, and their values), on first read: the model reads neither per scrape."""
        out = cls.__new__(cls)
        out.__dict__.update(fields)
        out.__dict__["_marks"] = marks
        return out

    if not TYPE_CHECKING:  # mypy must keep checking every other attribute name
        def __getattr__(self, name: str) -> Any:
            """The fields :meth:`planned` Counters fill on first read (only then is this called)."""
            d = self.__dict__
            if name in _SUMMED and "layout" in d:
                d.update(_sums(d["layout"], d["values"]))
                return d[name]
            if name == "created" and "_marks" in d:
                created = d["created"] = _created(*d["_marks"])
                return created
            raise AttributeError(name)


_SUMMED = frozenset(("buckets", "requests", "errors", "cache", "lb_buckets"))


def _sums(layout: Layout, values: np.ndarray) -> dict[str, dict[Any, Any]]:
    """The summed :class:`Counters` fields from its counter columns, added in column order
    as :func:`extract` adds them sample by sample (so every float is the same)."""
    buckets: dict[str, dict[float, float]] = {}
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    cache: dict[tuple[str, str], float] = {}
    lb_buckets: dict[str, dict[float, float]] = {}
    for (kind, key, sub), value in zip(layout.groups, values.tolist()):
        if kind == "buckets" or kind == "lb_buckets":
            per = (buckets if kind == "buckets" else lb_buckets).setdefault(key, {})  # type: ignore[arg-type]
            per[sub] = per.get(sub, 0.0) + value  # type: ignore[index]
        elif kind == "requests":
            requests[key] = requests.get(key, 0.0) + value  # type: ignore[index]
            if sub == "5xx":
                errors[key] = errors.get(key, 0.0) + value  # type: ignore[index]
        elif kind == "cache":
            cache[key] = cache.get(key, 0.0) + value  # type: ignore[index]
    return {"buckets": buckets, "requests": requests, "errors": errors, "cache": cache,
            "lb_buckets": lb_buckets}


def _created(ids: tuple[tuple[tuple[str, Hashable], Labels], ...],
             values: np.ndarray) -> dict[tuple[str, Hashable], dict[Labels, float]]:
    """``Counters.created`` of the ``_created`` columns ``ids`` holding ``values``."""
    out: dict[tuple[str, Hashable], dict[Labels, float]] = {}
    for (key, labels), value in zip(ids, values.tolist()):
        if math.isfinite(value):  # as _extract_restart_marker
            out.setdefault(key, {})[labels] = value
    return out


def extract(expo: Exposition, service: str = "") -> Counters:
    """Pick out what the cockpit charts; everything else is ignored here.

    Routes are keyed by :func:`~.keys.route_key` of ``service`` (the scraped target's),
    or of the series' own ``service`` label when it has a valid one (:func:`series_service`).
    """
    out = Counters()
    names, label_sets, values, _stamps = expo.columns()  # no Sample tuples built
    if sum(len(c) for caches in _KEY_CACHES.values() for c in caches) > _KEY_CACHE_MAX:
        _KEY_CACHES.clear()  # bounded
    caches = _KEY_CACHES.get(service)
    if caches is None:
        caches = _KEY_CACHES[service] = ({}, {}, {})
    bucket_keys, request_keys, size_routes = caches
    buckets, requests, errors = out.buckets, out.requests, out.errors
    ids: list[tuple[str, Labels]] = []
    groups: list[Group] = []
    column: list[float] = []
    for at in canonical_order(names, label_sets):  # summed alike live and in a replay
        name, labels, value = names[at], label_sets[at], values[at]
        if name == HIST_BUCKET:
            key = bucket_keys.get(labels)
            if key is None:
                key = bucket_keys[labels] = _bucket_key(labels, service)
            if key[1] != key[1]:  # no usable "le": not a bucket this cockpit can place
                continue
            per_route = buckets.get(key[0])
            if per_route is None:
                per_route = buckets[key[0]] = {}
            per_route[key[1]] = per_route.get(key[1], 0.0) + value
            ids.append((name, labels))
            groups.append(key[2])
            column.append(value)
        elif name == REQUESTS:
            rkey = request_keys.get(labels)
            if rkey is None:
                rkey = request_keys[labels] = _request_key(labels, service)
            route = rkey[0]
            requests[route] = requests.get(route, 0.0) + value
            if rkey[1]:
                errors[route] = errors.get(route, 0.0) + value
            ids.append((name, labels))
            groups.append(rkey[2])
            column.append(value)
        elif name == SIZE_SUM or name == SIZE_COUNT:
            # Only the rates matter (mean bytes per response): no Counters field to fill.
            route = size_routes.get(labels)
            if route is None:
                lab = dict(labels)
                route = size_routes[labels] = route_key(series_service(lab, service),
                                                        lab.get("route", "?"))
            ids.append((name, labels))
            groups.append(("sizes", route, "sum" if name == SIZE_SUM else "count"))
            column.append(value)
        elif name == CACHE:
            lab = dict(labels)
            ckey = (route_key(series_service(lab, service), lab.get("route", "?")),
                    lab.get("result", "?"))
            out.cache[ckey] = out.cache.get(ckey, 0.0) + value  # bypass: one series per reason
            ids.append((name, labels))
            groups.append(("cache", ckey, None))
            column.append(value)
        elif name == RATELIMIT:  # rates only (allowed / limited / shadow_limited per limit)
            lab = dict(labels)
            ids.append((name, labels))
            groups.append(("ratelimit", (route_key(series_service(lab, service),
                                                   lab.get("route", "?")),
                                         lab.get("limit", "?")),
                           lab.get("result", "?")))
            column.append(value)
        elif name in (LB_REQUESTS, LB_EXPECTED, LB_WEIGHT):
            server = dict(labels).get("server")
            if server is not None:  # a balancer series without its server is not placeable
                {LB_REQUESTS: out.lb_requests, LB_EXPECTED: out.lb_expected,
                 LB_WEIGHT: out.lb_weight}[name][server] = value
                if name == LB_REQUESTS:
                    ids.append((name, labels))
                    groups.append(("lb_requests", server, None))
                    column.append(value)
        elif name in CREATED or name == PROCESS_START:
            _extract_restart_marker(out, name, labels, value, service)
        elif name.startswith("trimtab_balancer_"):
            group = _extract_balancer(out, name, dict(labels), value)
            if group is not None:
                ids.append((name, labels))
                groups.append(group)
                column.append(value)
    if ids:
        out.layout = make_layout(tuple(ids), groups, service)
        out.values = np.array(column, dtype=float)
    return out


def canonical_order(names: Sequence[str], label_sets: Sequence[Labels]) -> list[int]:
    """The order a scrape's samples are read in: by name, then label set, whatever order
    the target printed them in (or the store hands them back to a replay in).

    Everything summed over a scrape's series (a route's buckets, a group's rates) then adds
    the same numbers in the same order live and in a replay. In printed order the last-bit
    difference moved a p50 whose rank fell exactly on a bucket boundary by a whole bucket
    (a replay test failed now and then on a loaded host).
    """
    # Only tuples are kept (a list is no dict key): the plans' layouts, not extract()'s lists.
    cacheable = isinstance(names, tuple) and isinstance(label_sets, tuple)
    found = _ORDERS.get((names, label_sets)) if cacheable else None
    if found is None:
        # ~3 ms for 2,000 samples: once per layout, and once for a fleet whose targets
        # print the same series (their parsers hand out the same label tuples)
        keys = list(zip(names, map(sorted, label_sets)))
        found = sorted(range(len(keys)), key=keys.__getitem__)
        if cacheable:
            if len(_ORDERS) > _ORDERS_MAX:
                _ORDERS.clear()  # bounded: series churn must not grow it forever
            _ORDERS[(names, label_sets)] = found
    return found


_ORDERS: dict[tuple[tuple[str, ...], tuple[Labels, ...]], list[int]] = {}
_ORDERS_MAX = 256


# Label set → what extract() needs of it. The parser hands out the same label tuples scrape
# after scrape, so decoding each (dict(labels), float(le)) once instead of per scrape takes
# most of extract's time off the collector thread, which shares the GIL with the GUI.
# One (buckets, requests, sizes) triple per service: the same labels key another route there.
_KEY_CACHES: dict[str, tuple[dict[Labels, tuple[str, float, Group]],
                             dict[Labels, tuple[str, bool, Group]], dict[Labels, str]]] = {}
_KEY_CACHE_MAX = 200_000


def series_service(lab: dict[str, str], service: str) -> str:
    """The service a series belongs to: its own ``service`` label (an endpoint exporting
    several services, or a mapping rendering one), else its target's ``service``.

    A label no service name may carry (``collectors.scrape.service_problem``) falls back to
    the target's: the series is kept, never lost or given an ambiguous key.
    """
    own = lab.get("service")
    return own if own and service_problem(own) is None else service


def _bucket_key(labels: Labels, service: str) -> tuple[str, float, Group]:
    """(route, le, group) of a latency bucket sample; le is NaN when missing or not a number.

    The parser accepts an untyped ``…_bucket`` without a numeric ``le``; raising here
    would lose the whole scrape (and, from a Prometheus source, stop its polling).
    """
    lab = dict(labels)
    try:
        le = float(lab["le"])
    except (KeyError, ValueError):
        le = math.nan
    route = route_key(series_service(lab, service), lab.get("route", "?"))
    return route, le, ("buckets", route, le)


def _request_key(labels: Labels, service: str) -> tuple[str, bool, Group]:
    """(route, is a 5xx, group) of a request counter sample (grouped by status class)."""
    lab = dict(labels)
    route = route_key(series_service(lab, service), lab.get("route", "?"))
    cls = status_class(lab.get("status", ""))
    return route, cls == "5xx", ("requests", route, cls)


def _extract_restart_marker(out: Counters, name: str, labels: Labels, value: float,
                            service: str = "") -> None:
    if not math.isfinite(value):  # NaN != NaN would look like a restart at every scrape
        return
    if name == PROCESS_START:
        out.start = value
        return
    out.created.setdefault(marker_key(name, labels, service), {})[labels] = value


def marker_key(name: str, labels: Labels, service: str = "") -> tuple[str, Hashable]:
    """The (Counters field, key) a ``_created`` sample ``name`` of ``labels`` dates."""
    counter, lab = CREATED[name], dict(labels)
    key: Hashable
    if counter == "cache":
        key = (route_key(series_service(lab, service), lab.get("route", "?")),
               lab.get("result", "?"))
    elif counter == "ratelimit":
        key = (route_key(series_service(lab, service), lab.get("route", "?")),
               lab.get("limit", "?"))
    elif counter.startswith("lb_"):
        key = lab.get("server", "?")
    else:
        key = route_key(series_service(lab, service), lab.get("route", "?"))
    return counter, key


def _extract_balancer(out: Counters, name: str, lab: dict[str, str],
                      value: float) -> Group | None:
    """Files one balancer sample; returns its group when it is a counter series."""
    server = lab.get("server", "?")
    if name == LB_IN_FLIGHT:
        out.lb_in_flight[server] = value
    elif name == LB_UP:
        out.lb_up[server] = value
    elif name == LB_STATE and value == 1:
        out.lb_state[server] = lab.get("state", "?")
    elif name == LB_ERRORS:
        out.lb_errors[server] = value
        return ("lb_errors", server, None)
    elif name == LB_BUCKET:
        try:
            le = float(lab["le"])
        except (KeyError, ValueError):  # as in extract(): skip, never lose the scrape
            return None
        per = out.lb_buckets.setdefault(server, {})
        per[le] = per.get(le, 0.0) + value
        return ("lb_buckets", server, le)
    return None
