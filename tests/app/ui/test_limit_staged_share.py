"""The canary's 429 share the staged limit rollout gates on (app/model/limit_share.py): from
the model's per-instance limit rows, one limit on one route of one instance."""

from __future__ import annotations

from trimtab.app.model.fleet import LimitRow
from trimtab.app.model.limit_share import refused_share

ROWS = [
    LimitRow("/search", "per-key", "api-1", allowed=6.0, limited=2.0, shadow_limited=0.0),
    LimitRow("/search", "per-key", "api-2", allowed=6.0, limited=0.0, shadow_limited=2.0),
    LimitRow("/search", "global", "api-1", allowed=1.0, limited=3.0, shadow_limited=0.0),
    LimitRow("shop · /search", "per-key", "api-1", allowed=1.0, limited=1.0, shadow_limited=0.0),
    LimitRow("/orders", "per-key", "api-3", allowed=0.0, limited=0.0, shadow_limited=0.0),
]


def test_the_share_is_that_limits_refusals_on_that_route_and_instance() -> None:
    assert refused_share(ROWS, "/search", "per-key", "api-1") == 0.25
    assert refused_share(ROWS, "/search", "global", "api-1") == 0.75  # not the other limit's
    assert refused_share(ROWS, "shop · /search", "per-key", "api-1") == 0.5  # its service's
    # Shadow: would-be-limited requests were served; decided, not refused.
    assert refused_share(ROWS, "/search", "per-key", "api-2") == 0.0


def test_nothing_decided_or_nothing_known_is_no_share() -> None:
    assert refused_share(ROWS, "/orders", "per-key", "api-3") is None  # off, or no traffic
    assert refused_share(ROWS, "/search", "per-key", "api-3") is None  # not reported there
    assert refused_share(ROWS, "/search", "nope", "api-1") is None
    assert refused_share([], "/search", "per-key", "api-1") is None
