"""One instance's share of a route's requests refused with 429 by one rate limit.

The staged rollout of a limit change gates the canary on it (``Gates.refused_max``): read
from the model's per-instance limit rows (:attr:`FleetModel.limits`, rates over the rate
window), so it is as fresh as the last scrape and needs no history store.
"""

from __future__ import annotations

from collections.abc import Iterable

from .fleet import LimitRow


def refused_share(rows: Iterable[LimitRow], route: str, limit: str, target: str
                  ) -> float | None:
    """Of the requests ``limit`` decided on ``route`` (a route key) at ``target``, the share
    it refused with 429 (0..1).

    None when the target reports no such limit now (not scraped yet, stale, the limit not
    there) or it decided nothing over the window (``off``, no traffic): nobody was refused,
    and nobody can be said to be. Would-be-limited requests (``shadow``) were served: they
    count as decided, not as refused.
    """
    for row in rows:
        if (row.route, row.limit, row.target) == (route, limit, target):
            decided = row.allowed + row.limited + row.shadow_limited
            return row.limited / decided if decided > 0 else None
    return None
