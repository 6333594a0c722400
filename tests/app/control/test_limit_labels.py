"""Rate limit changes read as an operator says them, on markers, cards and the Journal page:
``Limit per-key on /search: shadow → enforce · api-1, api-2, api-3`` — never the raw config
path ``limits.per-key.mode``."""

from __future__ import annotations

from typing import Any

import pytest
from trimtab.app.control import types as ctl
from trimtab.app.control.actions import action_label, limit_routes
from trimtab.app.ui.pages.journal import ChangeGroup, change_text, revert_prompt

API = [ctl.Agent(f"api-{n}", f"http://127.0.0.1:{9000 + n}") for n in range(1, 6)]
ROUTES = {"per-key": "/search"}
SEARCH_LIMIT = {"route": "/search", "key": "header:x-api-key", "rate": 5.0, "burst": 10,
                "mode": "shadow"}


def row(n: int, old: Any, new: Any, t: float = 100.0, reason: str = "greedy",
        id_: int = 7) -> ctl.JournalRow:
    """A config change journaled by instance api-<n>, as the agent journals a limits patch."""
    return ctl.JournalRow(API[n - 1], id_, t + n * 0.1, "ops", API[n - 1].name, "config",
                          {"limits": old}, {"limits": new}, reason, "accepted")


def fleet_wide(old: Any, new: Any, count: int = 3) -> list[ctl.JournalRow]:
    return [row(n, old, new) for n in range(1, count + 1)]


@pytest.mark.parametrize(("old", "new", "routes", "label"), [
    ({"per-key": {"mode": "shadow"}}, {"per-key": {"mode": "enforce"}}, ROUTES,
     "Limit per-key on /search: shadow → enforce"),
    ({"per-key": {"mode": "shadow"}}, {"per-key": {"mode": "enforce"}}, None,
     "Limit per-key: shadow → enforce"),  # the route is not in the journal: said when known
    ({"per-key": {"rate": 5.0, "burst": 10}}, {"per-key": {"rate": 2.0, "burst": 5}}, None,
     "Limit per-key: 5/s burst 10 → 2/s burst 5"),
    ({"per-key": {"rate": 5.0}}, {"per-key": {"rate": 2.5}}, ROUTES,
     "Limit per-key on /search: 5/s → 2.5/s"),
    ({"per-key": {"burst": 10}}, {"per-key": {"burst": 20}}, None,
     "Limit per-key: burst 10 → 20"),
    ({"per-key": {"key": "ip", "mode": "off"}},
     {"per-key": {"key": "header:x-api-key", "mode": "shadow"}}, None,
     "Limit per-key: per ip → per header:x-api-key, off → shadow"),
    ({"per-key": {"rate": 5.0, "burst": 10, "mode": "shadow"}},
     {"per-key": {"rate": 2.0, "burst": 5, "mode": "enforce"}}, ROUTES,
     "Limit per-key on /search: 5/s burst 10 → 2/s burst 5, shadow → enforce"),
    ({"per-key": {"route": "/search"}}, {"per-key": {"route": "/orders"}}, ROUTES,
     "Limit per-key: /search → /orders"),
    ({"per-key": None}, {"per-key": SEARCH_LIMIT}, None,
     "Limit per-key added on /search (shadow, 5/s burst 10, per header:x-api-key)"),
    ({"per-key": SEARCH_LIMIT}, {"per-key": None}, None, "Limit per-key removed from /search"),
    ({"all.routes": {"mode": "shadow"}}, {"all.routes": {"mode": "off"}},
     {"all.routes": "*"}, "Limit all.routes on every route: shadow → off"),  # dots in a name
])
def test_a_limit_change_reads_as_an_operator_says_it(old, new, routes, label) -> None:
    rows = fleet_wide(old, new)
    assert action_label(rows[0], rows, routes) == f"{label} · api-1, api-2, api-3"


def test_targets_are_named_as_for_other_markers_and_olds_that_differ_are_joined() -> None:
    rows = [row(1, {"per-key": {"rate": 5.0}}, {"per-key": {"rate": 2.0}}),
            *(row(n, {"per-key": {"rate": 4.0}}, {"per-key": {"rate": 2.0}}) for n in (2, 3, 4))]
    assert action_label(rows[0], rows, ROUTES) == \
        "Limit per-key on /search: 5 or 4/s → 2/s · api-1, api-2 +2 more"
    one = rows[:1]
    assert action_label(one[0], one) == "Limit per-key: 5/s → 2/s · api-1"


def test_a_ttl_and_a_limit_in_one_patch_are_both_said() -> None:
    r = ctl.JournalRow(API[0], 3, 1.0, "ops", "api-1", "config",
                       {"routes": {"/a": {"ttl": 10.0}}, "limits": {"per-key": {"mode": "off"}}},
                       {"routes": {"/a": {"ttl": 60.0}}, "limits": {"per-key": {"mode": "shadow"}}},
                       "", "accepted")
    assert action_label(r, None, ROUTES) == \
        "TTL /a 10→60 s, Limit per-key on /search: off → shadow · api-1"


def test_the_routes_come_from_the_instances_configs() -> None:
    configs = {"api-1": {"limits": {"per-key": SEARCH_LIMIT, "global": {"route": "*"}}},
               "api-2": {"limits": {"per-key": SEARCH_LIMIT}},
               "api-3": {"routes": {}},  # an agent without limits (older, or none set)
               "api-4": {"limits": {"per-key": {**SEARCH_LIMIT, "route": "/orders"}}},
               "api-5": {"limits": {"broken": "not an object"}}}
    # Instances that disagree name no route: the label would claim one of them.
    assert limit_routes(configs) == {"global": "*"}
    del configs["api-4"]
    assert limit_routes(configs) == {"per-key": "/search", "global": "*"}


def test_the_journal_page_says_it_the_same_way() -> None:
    old, new = {"per-key": {"mode": "shadow"}}, {"per-key": {"mode": "enforce"}}
    r = row(1, old, new)
    assert change_text(r) == "Limit per-key: shadow → enforce"
    assert "limits." not in change_text(row(1, {"per-key": None}, {"per-key": SEARCH_LIMIT}))
    assert revert_prompt(ChangeGroup([r])) == \
        "Undo change #7 on api-1: Limit per-key: enforce → shadow?"
    added = ChangeGroup([row(n, {"per-key": None}, {"per-key": SEARCH_LIMIT}) for n in (1, 2)])
    assert revert_prompt(added) == \
        "Undo this change on api-1, api-2: Limit per-key removed from /search?"
    removed = ChangeGroup([row(1, {"per-key": SEARCH_LIMIT}, {"per-key": None})])
    assert revert_prompt(removed) == ("Undo change #7 on api-1: Limit per-key added on /search "
                                      "(shadow, 5/s burst 10, per header:x-api-key)?")
    ttl = ctl.JournalRow(API[0], 2, 1.0, "ops", "api-1", "config", {"routes": {"/a": {"ttl": 10}}},
                         {"routes": {"/a": {"ttl": 60}}}, "", "accepted")
    assert change_text(ttl) == "TTL of /a: 10 s → 60 s"  # other fields as before
    assert revert_prompt(ChangeGroup([ttl])) == \
        "Undo change #2 on api-1: set the TTL of /a back from 60 s to 10 s?"
