"""The before/after judge on rate limit changes: which way each limited rate was meant to
move, and "as intended" / "against the change" when it moved beyond the normal spread."""

from __future__ import annotations

import numpy as np
import pytest
from trimtab.app.model.before_after import (
    AGAINST,
    AS_INTENDED,
    CHANGED,
    LIMITED,
    change_scope,
    compare,
    kind_of,
    limit_intent,
)

T0 = 1000.0


def series(before: float, after: float) -> tuple[np.ndarray, np.ndarray]:
    """One point a second, 120 s each side of T0, with a little noise."""
    t = np.arange(T0 - 120, T0 + 140, 1.0)
    rng = np.random.default_rng(7)
    v = np.where(t < T0, before, after) + rng.normal(0, 0.05, t.size)
    return t, v


@pytest.mark.parametrize(("changes", "expected"), [
    # raised rate: fewer refused, either way
    ([("limits.k.rate", 2.0, 6.0)], {"k": {"limited/s": "down", "would-be-limited/s": "down"}}),
    # lowered burst: more
    ([("limits.k.burst", 10, 3)], {"k": {"limited/s": "up", "would-be-limited/s": "up"}}),
    # rate up and burst down at once: nothing claimed
    ([("limits.k.rate", 2.0, 6.0), ("limits.k.burst", 10, 3)], {}),
    # a new key: nothing claimed
    ([("limits.k.rate", 2.0, 6.0), ("limits.k.key", "ip", "header:x-api-key")], {}),
    # shadow → enforce: the would-be refusals become 429s
    ([("limits.k.mode", "shadow", "enforce")],
     {"k": {"limited/s": "up", "would-be-limited/s": "down"}}),
    ([("limits.k.mode", "enforce", "shadow")],
     {"k": {"limited/s": "down", "would-be-limited/s": "up"}}),
    ([("limits.k.mode", "enforce", "off")], {"k": {"limited/s": "down"}}),
    # removed (a revert of a creation looks the same)
    ([("limits.k.mode", "shadow", None), ("limits.k.rate", 2.0, None)],
     {"k": {"limited/s": "down", "would-be-limited/s": "down"}}),
    # created in shadow / in enforce
    ([("limits.k.mode", None, "shadow"), ("limits.k.rate", None, 2.0)],
     {"k": {"would-be-limited/s": "up"}}),
    ([("limits.k.mode", None, "enforce"), ("limits.k.rate", None, 2.0)],
     {"k": {"limited/s": "up"}}),
    # not a limit at all
    ([("routes./search.ttl", 10.0, 60.0)], {}),
])
def test_the_way_a_limit_change_means_the_refusals_to_go(changes, expected) -> None:
    assert limit_intent(changes) == expected


def test_a_limit_change_is_scoped_to_its_limit() -> None:
    assert change_scope(["limits.per-key.rate", "limits.per-key.mode"]) == {"limit:per-key"}
    assert change_scope(["limits.a.rate", "routes./x.ttl"]) == {"limit:a", "route:/x"}


def test_fewer_limited_after_raising_a_limit_is_as_intended() -> None:
    name = "/search per-key limited/s"
    assert kind_of(name) is LIMITED
    assert kind_of("/search per-key would-be-limited/s") is LIMITED
    t, v = series(before=4.0, after=0.5)
    c = compare(t, v, T0, metric=name, now=T0 + 140, intended="down")
    assert c.direction == AS_INTENDED and c.label.startswith("as intended")
    # The same drop after a tightening is the other way round.
    c = compare(t, v, T0, metric=name, now=T0 + 140, intended="up")
    assert c.direction == AGAINST and c.label.startswith("against the change")
    # No intent known: it only changed.
    assert compare(t, v, T0, metric=name, now=T0 + 140).direction == CHANGED
    assert "4.0/s → 0.5/s" in c.verdict


def test_a_limited_rate_within_its_spread_claims_nothing() -> None:
    t, v = series(before=2.0, after=2.0)
    c = compare(t, v, T0, metric="/search k limited/s", now=T0 + 140, intended="down")
    assert c.beyond is False and c.direction == "within spread"
