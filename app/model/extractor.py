"""Per-target extraction plans: :func:`.extract.extract` without per-sample Python while a
target's series stay the same.

:func:`~.extract.extract` decides, sample by sample, which :class:`~.extract.Counters`
field each sample feeds: a dict look-up, a branch and an append per sample, every scrape
(most of the collector's CPU at 200 targets × 2,000 samples). That decision depends only
on the sample names, the label sets and the target's service, and a target's scrapes
repeat those: :class:`~trimtab.collectors.exposition.TargetParser` hands out the very same
``names`` and ``labels`` tuples while a scrape has the previous one's layout. An
:class:`Extractor` works the decision out once per layout (a :class:`Plan`: the positions
of the counter columns, of the ``_created`` and ``process_start_time_seconds`` samples
and of the balancer's gauges) and then takes each scrape's values with numpy gathers
(``values[positions]``). A scrape with other names or labels builds a new plan.

The result is the same :class:`~.extract.Counters` as :func:`~.extract.extract`
(tests/app/model/test_extract_plan.py compares both on random layouts and values): the
same interned :class:`~.extract.Layout`, the same floats. The per-route sums (``buckets``,
``requests``…) and ``created``, which the live model does not read per scrape, are
built on first read (:meth:`~.extract.Counters.planned`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

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

from .extract import (
    _KEY_CACHE_MAX,
    _KEY_CACHES,
    EMPTY_LAYOUT,
    Counters,
    Group,
    Layout,
    _bucket_key,
    _request_key,
    canonical_order,
    make_layout,
    marker_key,
    series_service,
)
from .keys import route_key

_ASSIGNED = {LB_REQUESTS: "lb_requests", LB_EXPECTED: "lb_expected", LB_WEIGHT: "lb_weight"}
_GAUGE_FIELDS = ("lb_requests", "lb_expected", "lb_weight", "lb_in_flight", "lb_up", "lb_errors")


@dataclass(frozen=True, eq=False)
class Plan:
    """What :func:`~.extract.extract` does with each sample of one layout, as positions."""

    names: tuple[str, ...]
    labels: tuple[Labels, ...]
    service: str
    layout: Layout  # the counter columns
    counters: np.ndarray  # their positions in the scrape
    # Gauges that take the value as it is (the last one wins): (Counters field, server, position).
    assigned: tuple[tuple[str, str, int], ...]
    states: tuple[tuple[int, str, str], ...]  # (position, server, state): the state whose value is 1
    starts: tuple[int, ...]  # process_start_time_seconds samples (the last finite one counts)
    marks: np.ndarray  # positions of the _created samples
    mark_ids: tuple[tuple[tuple[str, Hashable], Labels], ...]  # their ((field, key), labels)

    def apply(self, values: Sequence[float]) -> Counters:
        """The :class:`~.extract.Counters` of a scrape of this layout holding ``values``."""
        column = np.array(values, dtype=float)
        fields: dict[str, Any] = {name: {} for name in _GAUGE_FIELDS}
        fields["lb_state"] = {}
        fields["layout"] = self.layout
        fields["values"] = column[self.counters] if len(self.counters) else np.empty(0)
        for name, server, at in self.assigned:
            fields[name][server] = values[at]
        for at, server, state in self.states:
            if values[at] == 1:
                fields["lb_state"][server] = state
        start = None
        for at in self.starts:
            if math.isfinite(values[at]):
                start = values[at]
        fields["start"] = start
        return Counters.planned(fields, (self.mark_ids, column[self.marks]))


def build_plan(names: tuple[str, ...], label_sets: tuple[Labels, ...], service: str = "") -> Plan:
    """The plan of one layout: the branches of :func:`~.extract.extract`, without values."""
    if sum(len(c) for caches in _KEY_CACHES.values() for c in caches) > _KEY_CACHE_MAX:
        _KEY_CACHES.clear()  # bounded, as in extract()
    caches = _KEY_CACHES.get(service)
    if caches is None:
        caches = _KEY_CACHES[service] = ({}, {}, {})
    bucket_keys, request_keys, size_routes = caches
    positions: list[int] = []
    ids: list[tuple[str, Labels]] = []
    groups: list[Group] = []
    assigned: list[tuple[str, str, int]] = []
    states: list[tuple[int, str, str]] = []
    starts: list[int] = []
    marks: list[int] = []
    mark_ids: list[tuple[tuple[str, Hashable], Labels]] = []

    def counter(at: int, name: str, labels: Labels, group: Group) -> None:
        positions.append(at)
        ids.append((name, labels))
        groups.append(group)

    for at in canonical_order(names, label_sets):  # in the order extract() reads them
        name, labels = names[at], label_sets[at]
        if name == HIST_BUCKET:
            key = bucket_keys.get(labels)
            if key is None:
                key = bucket_keys[labels] = _bucket_key(labels, service)
            if key[1] == key[1]:  # a usable "le"
                counter(at, name, labels, key[2])
        elif name == REQUESTS:
            rkey = request_keys.get(labels)
            if rkey is None:
                rkey = request_keys[labels] = _request_key(labels, service)
            counter(at, name, labels, rkey[2])
        elif name == SIZE_SUM or name == SIZE_COUNT:
            route = size_routes.get(labels)
            if route is None:
                lab = dict(labels)
                route = size_routes[labels] = route_key(series_service(lab, service),
                                                        lab.get("route", "?"))
            counter(at, name, labels, ("sizes", route, "sum" if name == SIZE_SUM else "count"))
        elif name == CACHE:
            lab = dict(labels)
            ckey = (route_key(series_service(lab, service), lab.get("route", "?")),
                    lab.get("result", "?"))
            counter(at, name, labels, ("cache", ckey, None))
        elif name == RATELIMIT:
            lab = dict(labels)
            counter(at, name, labels, ("ratelimit", (route_key(series_service(lab, service),
                                                                lab.get("route", "?")),
                                                      lab.get("limit", "?")),
                                       lab.get("result", "?")))
        elif name in _ASSIGNED:
            server = dict(labels).get("server")
            if server is not None:
                assigned.append((_ASSIGNED[name], server, at))
                if name == LB_REQUESTS:
                    counter(at, name, labels, ("lb_requests", server, None))
        elif name in CREATED:
            marks.append(at)
            mark_ids.append((marker_key(name, labels, service), labels))
        elif name == PROCESS_START:
            starts.append(at)
        elif name.startswith("trimtab_balancer_"):
            lab = dict(labels)
            server = lab.get("server", "?")
            if name == LB_IN_FLIGHT:
                assigned.append(("lb_in_flight", server, at))
            elif name == LB_UP:
                assigned.append(("lb_up", server, at))
            elif name == LB_STATE:
                states.append((at, server, lab.get("state", "?")))
            elif name == LB_ERRORS:
                assigned.append(("lb_errors", server, at))
                counter(at, name, labels, ("lb_errors", server, None))
            elif name == LB_BUCKET:
                try:
                    le = float(lab["le"])
                except (KeyError, ValueError):
                    continue
                counter(at, name, labels, ("lb_buckets", server, le))
    layout = make_layout(tuple(ids), groups, service) if ids else EMPTY_LAYOUT
    return Plan(names, label_sets, service, layout, np.array(positions, dtype=np.intp),
                tuple(assigned), tuple(states), tuple(starts), np.array(marks, dtype=np.intp),
                tuple(mark_ids))


class Extractor:
    """:func:`~.extract.extract` for the successive scrapes of one target, with a plan kept
    while the layout repeats. Safe to share between threads (the plan is swapped whole),
    though one target's scrapes come one at a time."""

    def __init__(self) -> None:
        self.plan: Plan | None = None
        self.builds = 0  # plans built (a test and the benchmark read it)

    def extract(self, expo: Exposition, service: str = "") -> Counters:
        names, labels, values, _stamps = expo.columns()
        plan = self.plan
        if plan is None or not _same(plan, names, labels, service):
            plan = self.plan = build_plan(tuple(names), tuple(labels), service)
            self.builds += 1
        return plan.apply(values)


def _same(plan: Plan, names: Sequence[str], labels: Sequence[Labels], service: str) -> bool:
    """Whether a scrape has the plan's layout: the same tuples (TargetParser's fast path),
    else equal ones."""
    if plan.service != service:
        return False
    if names is plan.names and labels is plan.labels:
        return True
    return (len(names) == len(plan.names) and tuple(names) == plan.names
            and tuple(labels) == plan.labels)
