"""A balancer's journal entries of its rate limits (``limits.<name>``, old and new the changed
fields) read as an instance's limit changes: field paths ``limits.<name>.<field>``, the same
operator's label, and revertible (issue 18). Bad shapes first."""

from __future__ import annotations

from trimtab.app.control.actions import action_label
from trimtab.app.control.types import BALANCER, Agent, FieldChange, JournalRow, comparable

LB = Agent("edge-lb", "http://127.0.0.1:1", BALANCER)


def row(what: str, old: object, new: object, result: str = "accepted") -> JournalRow:
    return JournalRow(LB, 7, 1.0e9, "admin", "balancer", what, old, new, "why", result)


def test_a_refused_patch_of_the_whole_section_is_not_revertible() -> None:
    refused = row("limits", None, {"per-ip": {"rate": -5}}, "refused")
    assert not refused.revertible
    assert not row("limits.per-ip", {"mode": "shadow"}, {"mode": "enforce"},
                   "refused").revertible


def test_a_mode_change_reads_as_the_instances_do() -> None:
    r = row("limits.per-ip", {"mode": "shadow"}, {"mode": "enforce"})
    assert r.changes == (FieldChange("limits.per-ip.mode", "shadow", "enforce"),)
    assert r.revertible
    assert action_label(r, routes={"per-ip": "*"}) == \
        "Limit per-ip on every route: shadow → enforce · edge-lb"


def test_a_created_and_a_removed_limit() -> None:
    fields = {"route": "/search", "key": "ip", "rate": 2.0, "burst": 10, "mode": "shadow"}
    added, removed = row("limits.per-ip", None, fields), row("limits.per-ip", fields, None)
    assert {c.path for c in added.changes} == {f"limits.per-ip.{f}" for f in fields}
    assert all(c.old is None for c in added.changes)
    assert all(c.new is None for c in removed.changes)
    assert action_label(added) == \
        "Limit per-ip added on /search (shadow, 2/s burst 10, per ip) · edge-lb"
    assert action_label(removed) == "Limit per-ip removed from /search · edge-lb"


def test_a_conflict_compares_settings_not_live_counts() -> None:
    doc = {"version": '"l1"', "target": "balancer", "routes": ["*"], "store": "memory",
           "limits": {"per-ip": {"route": "*", "key": "ip", "rate": 1.0, "burst": 2,
                                 "mode": "shadow", "counts": {"*": {"allowed": 3}}}}}
    assert comparable(doc) == {"limits": {"per-ip": {"route": "*", "key": "ip", "rate": 1.0,
                                                     "burst": 2, "mode": "shadow"}}}


def test_an_haproxy_reapply_of_map_values_is_not_revertible_and_says_why() -> None:
    """The HAProxy adapter journals its re-apply after a reload with map values; the agent
    refuses to set those back (409, then 422 forced): never offered as an undo."""
    for old, new in (({"mode": "2"}, {"mode": 0}), ({"limit": "3"}, {"limit": 5}),
                     ({"mode": None}, {"mode": 1}), ({"rate": True}, {"rate": 1.0}),
                     ({"mode": "shadow"}, ["enforce"])):
        r = row("limits.per-ip", old, new)
        assert not r.revertible, (old, new)
        assert "HAProxy map values" in r.not_revertible and "422" in r.not_revertible
        assert r.setting_change
    assert "mode '2' → 0" in row("limits.per-ip", {"mode": "2"}, {"mode": 0}).not_revertible
    # The operator's own changes stay revertible: a partial change, a creation, a removal.
    fields = {"route": "/search", "key": "ip", "rate": 2, "burst": 10, "mode": "enforce"}
    for old, new in (({"mode": "off"}, {"mode": "shadow"}), (None, fields), (fields, None)):
        assert row("limits.per-ip", old, new).not_revertible == ""
    refused = row("limits.per-ip", {"mode": "shadow"}, {"mode": "enforce"}, "refused")
    assert "this one was refused" in refused.not_revertible
    flushed = row("cache.invalidate", None, {"route": "/search"})
    assert not flushed.setting_change and "dropped cache entries" in flushed.not_revertible
