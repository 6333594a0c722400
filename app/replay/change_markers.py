"""From journal rows to chart markers and before/after cards (Qt-free)."""

from __future__ import annotations

import math
import time

from ..control import types as ctl
from ..model.before_after import compare_all
from ..model.fleet import FleetModel

CARD_WINDOW = 120.0  # seconds compared on each side of the change
CARD_SETTLE = 15.0  # seconds right after the change left out (caches fill, weights settle)


def marker_key(row: ctl.JournalRow) -> str:
    return f"{row.source.name}#{row.id}"


def marker_label(row: ctl.JournalRow) -> str:
    parts = [f"{c.path.removeprefix('routes.').removeprefix('servers.')} {c.old}→{c.new}"
             for c in row.changes]
    return f"{row.source.name}: " + ", ".join(parts)


def markers(rows: list[ctl.JournalRow]) -> list[tuple[str, float, str]]:
    """Accepted changes only: a refused change changed nothing on the charts."""
    return [(marker_key(r), r.time, marker_label(r)) for r in rows if r.result == "accepted"]


def _series_for(model: FleetModel, row: ctl.JournalRow, since: float) -> dict[str, tuple]:
    """The series a change can move: its route's latency/errors/hit ratio, or the shares."""
    routes = {c.path.split(".")[1] for c in row.changes if c.path.startswith("routes.")}
    out: dict[str, tuple] = {}
    if routes:
        for route in sorted(routes):
            for metric in ("p50", "p95", "p99", "error_ratio", "hit_ratio"):
                series = model.snapshot(metric, since, [route]).get(route)
                if series is not None:
                    out[f"{route} {metric}"] = series
        return out
    for server, series in sorted(model.snapshot("share", since).items()):
        out[f"{server} share"] = series
    for server, series in sorted(model.snapshot("lb_p95", since).items()):
        out[f"{server} p95"] = series
    for route, series in sorted(model.snapshot("p95", since).items()):
        out[f"{route} p95"] = series
    return out


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.4g}"


def card(model: FleetModel, row: ctl.JournalRow, now: float | None = None
         ) -> tuple[str, str, list[tuple[str, ...]]]:
    """(title, subtitle, rows) comparing matched windows before and after ``row``'s change."""
    now = time.time() if now is None else now
    series = _series_for(model, row, row.time - CARD_WINDOW - 5.0)
    results = compare_all(series, row.time, window=CARD_WINDOW, settle=CARD_SETTLE, now=now)
    rows = []
    for name, c in results.items():
        change = f"{c.delta_pct:+.1%}" if c.delta_pct is not None else _fmt(c.delta)
        band = "–" if math.isnan(c.band[0]) else f"{_fmt(c.band[0])}–{_fmt(c.band[1])}"
        verdict = {"within spread": "within the normal spread", "unknown": "not enough data yet"
                   }.get(c.direction, f"beyond the normal spread: {c.direction}")
        rows.append((name, _fmt(c.before), _fmt(c.after), change, band, verdict))
    if not rows:
        rows.append(("(no series)", "–", "–", "–", "–",
                     "nothing was recorded around this change (no data from its routes/servers)"))
    when = time.strftime("%H:%M:%S", time.localtime(row.time))
    title = f"Change {marker_key(row)} at {when}"
    subtitle = (f"{marker_label(row)} — by {row.who}, reason: {row.reason or '–'}. "
                f"Mean over {CARD_WINDOW:.0f} s before vs {CARD_WINDOW:.0f} s after, leaving out "
                f"the first {CARD_SETTLE:.0f} s after the change; latency in seconds, ratios 0–1.")
    return title, subtitle, rows
