"""``trimtab snapshot report``: one self-contained HTML page from a snapshot.

One sentence on top (what was slow, what changed, what the judge says it did), a
summary, the slowest routes (fleet-wide p95 from histogram buckets over the
window), the change timeline with before/after cards (``before_after.compare``, the
judge the live card and the rollout gates use, on the changed route's p95, the fleet
p95 and the request rate), charts as embedded PNG data URIs (drawn by
the :data:`ChartRenderer` the caller passes: Qt-free here, the command line
passes :func:`trimtab.app.ui.report_chart.png_chart`), annotations and the
slowest traces. Nothing
is fetched from anywhere: the page opens offline. Every string from the
snapshot is HTML-escaped (a snapshot is somebody else's data).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..control.actions import action_label, group_changes
from ..control.types import JournalRow, balancer_label
from ..model.before_after import (
    AS_INTENDED,
    AWAY,
    BETTER,
    DEFAULT_SETTLE,
    DEFAULT_WINDOW,
    WORSE,
    Comparison,
    bounding_changes,
    change_scope,
    compare,
    format_value,
)
from .open import Snapshot, open_snapshot
from .stats import (
    RouteLatency,
    latency_over_time,
    limit_rates,
    request_rate,
    route_latencies,
    status_shares,
)

STEPS = 120  # chart / card resolution across the window
TOP_ROUTES = 10
TOP_TRACES = 200  # slowest traces listed; the page says when there are more
TOP_LIMITS = 6  # limits (route and name) charted: those that refused or would have most
DECIDED = (BETTER, WORSE, AS_INTENDED, AWAY)  # verdicts that say which way a change went
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
CSS = """body{font:14px system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.card{border:1px solid #bbb;
border-radius:6px;padding:.6em 1em;margin:.8em 0}.worse{color:#b00}.better{color:#070}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em}img{max-width:100%}
.summary{font-size:16px;background:#f3f6fa;border-left:4px solid #4a78b0;padding:.6em 1em}"""

# A change marker on a chart: (unix time, label), the label as every marker reads.
Mark = tuple[float, str]
# (curves {name: (times, values)}, title, base time, change marks) -> PNG bytes, b"" for none.
ChartRenderer = Callable[[dict[str, tuple[np.ndarray, np.ndarray]], str, float, Sequence[Mark]],
                         bytes]


def no_charts(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, base: float,
              marks: Sequence[Mark]) -> bytes:
    """A :data:`ChartRenderer` that draws nothing (a report without chart images)."""
    return b""


def write_report(snapshot: Snapshot | str | Path, out_html: str | Path,
                 chart: ChartRenderer = no_charts) -> Path:
    """Write the report of ``snapshot`` (an open Snapshot or a path) to ``out_html``."""
    snap = snapshot if isinstance(snapshot, Snapshot) else open_snapshot(snapshot)
    try:
        page = render_html(snap, chart)
    finally:
        if snap is not snapshot:
            snap.close()
    out = Path(out_html)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)  # never a half-written page under the final name
    return out


def render_html(snap: Snapshot, chart: ChartRenderer = no_charts) -> str:
    """The whole page as a string."""
    start, end = snap.window
    mids, p95 = latency_over_time(snap, start, end, STEPS)
    _, rates = request_rate(snap, start, end, STEPS)
    total_rate = _total(rates)
    journal = snap.journal()
    actions = group_changes(journal)
    judged = _judge_all(snap, journal, actions, mids, p95, total_rate)
    marks = [(g[0].time, action_label(g[0], g)) for g in actions]
    slow = route_latencies(snap, start, end)
    limits = _LimitFigures.of(snap, actions)
    top = [r.route for r in slow[:5]]
    charts = [(title, chart(curves, title, start, marks) if _has_data(curves) else b"")
              for title, curves in (
                  ("p95 latency by route (ms)",
                   {r: (mids, p95[r] * 1000) for r in [*top, "all routes"] if r in p95}),
                  ("requests/s by target", {t: (mids, v) for t, v in sorted(rates.items())}))]
    parts = [f"<h1>Incident report — {utc(start)} to {utc(end)}</h1>",
             f'<p class="summary">{_e(_headline(snap, slow, actions, judged))}</p>',
             _summary(snap), *_promises(snap),
             "<h2>Slowest routes (p95 over the window)</h2>",
             _routes(slow, limits.shares if limits else None),
             "<h2>Charts</h2>", _coverage(snap, mids, p95, rates),
             *(_image(title, png) for title, png in charts if png),
             *(limits.section(chart, start) if limits else ()),
             "<h2>Change timeline</h2>",
             _timeline(snap, journal, actions, judged),
             "<h2>Annotations</h2>", _annotations(snap), "<h2>Slowest traces</h2>", _traces(snap)]
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>trimtab incident report {utc(start)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def _image(title: str, png: bytes) -> str:
    return (f'<p><img alt="{html.escape(title)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}"></p>')


@dataclass(frozen=True)
class _LimitFigures:
    """What the Rate limits section shows: the limits at the window's end (the instances' and
    each balancer's own), the decisions per step per (route, limit), the limit changes and
    each route's 429 share."""

    limits: list[dict[str, object]]
    mids: np.ndarray
    rates: dict[tuple[str, str], dict[str, np.ndarray]]
    marks: list[Mark]
    shares: dict[str, float]
    step: float

    @classmethod
    def of(cls, snap: Snapshot, actions: list[list[JournalRow]]) -> _LimitFigures | None:
        """None when the window had no limit: none configured, none deciding, none changed."""
        start, end = snap.window
        limits = [*snap.limits(), *({**r, "agent": balancer_label(r["balancer"])}
                                    for r in snap.balancer_limits())]
        mids, rates = limit_rates(snap, start, end, STEPS)
        changes = [g for g in actions
                   if any(c.path.startswith("limits.") for r in g for c in r.changes)]
        if not (limits or rates or changes):
            return None
        marks = [(g[0].time, action_label(g[0], g)) for g in changes]
        return cls(limits, mids, rates, marks, status_shares(snap, start, end),
                   (end - start) / STEPS)

    def section(self, chart: ChartRenderer, start: float) -> list[str]:
        title = "Rate limits: limited (429) and would-be-limited (shadow) requests/s"
        busiest = sorted(self.rates, key=lambda k: (-self._total(k, "limited")
                                                    - self._total(k, "shadow_limited"), k))
        curves = {}
        for route, name in busiest[:TOP_LIMITS]:
            per = self.rates[(route, name)]
            curves[f"{route} {name} limited/s"] = (self.mids, per["limited"])
            curves[f"{route} {name} would-be-limited/s"] = (self.mids, per["shadow_limited"])
        png = chart(curves, title, start, self.marks) if _has_data(curves) else b""
        settings = _table(
            ("instance", "limit", "route", "key", "rate", "burst", "mode"),
            [(r["agent"], r["name"], r["route"] or "?", r["key"] or "?",
              "?" if r["rate"] is None else f"{r['rate']:g}/s",
              "?" if r["burst"] is None else f"{r['burst']:,}", r["mode"] or "?")
             for r in self.limits]) if self.limits else \
            "<p>No limit was set at the end of the window.</p>"
        decided = _table(
            ("route", "limit", "allowed", "limited (429)", "would-be-limited (shadow)"),
            [(route, name, *(f"{self._total((route, name), r):,.0f}"
                             for r in ("allowed", "limited", "shadow_limited")))
             for route, name in sorted(self.rates)])
        return ["<h2>Rate limits</h2>", "<h3>Limits and modes at the end of the window</h3>",
                settings, "<h3>Requests each limit decided on in the window</h3>", decided,
                *([_image(title, png)] if png else []),
                f"<p>{len(self.marks)} limit change{'' if len(self.marks) == 1 else 's'} in "
                "the window (marked on the chart; see the change timeline).</p>"]

    def _total(self, which: tuple[str, str], result: str) -> float:
        """Requests over the window (the per-step rates × the step)."""
        return float(np.nansum(self.rates[which][result]) * self.step)


def _total(rates: Mapping[str, np.ndarray]) -> np.ndarray:
    """Requests/s of all targets per step; NaN only where no target has data."""
    if not rates:
        return np.full(STEPS, np.nan)
    stacked = np.array(list(rates.values()))
    known = np.isfinite(stacked).any(axis=0)
    return np.where(known, np.nansum(stacked, axis=0), np.nan)


def _headline(snap: Snapshot, slow: Sequence[RouteLatency], actions: list[list[JournalRow]],
              judged: Mapping[int, list[Comparison]]) -> str:
    """One sentence: what was slow, what changed, what it did (the card's judge)."""
    if slow:
        q = slow[0].quantile
        at_least = "≥ " if q.in_inf_bucket else ""
        first = (f"{slow[0].route} was the slowest route (p95 {at_least}"
                 f"{q.value * 1000:.0f} ms over the window)")
    else:
        first = "No request latency was recorded in the window"
    if not actions:
        if any(o["what"] in ("journal", "targets", "everything") for o in snap.omitted()):
            return f"{first}; the change journal is not in this snapshot, so changes are unknown."
        return f"{first}; no change was made in the window."
    # The change to name: the first the judge could tell a direction for, else the first.
    decided = [i for i, g in enumerate(actions)
               if judged.get(i) and judged[i][0].direction in DECIDED]
    i = decided[0] if decided else 0
    group = actions[i]
    when = dt.datetime.fromtimestamp(group[0].time, dt.UTC).strftime("%H:%M:%S UTC")
    change = f"after {action_label(group[0], group)} at {when}"
    found = judged.get(i)
    if found:
        c = found[0]
        change += (f", {c.metric} was {c.label}, {format_value(c.metric, c.before)} → "
                   f"{format_value(c.metric, c.after)}")
    more = len(actions) - 1
    if more:
        change += f" ({more} more change{'s' if more > 1 else ''} in the timeline)"
    return f"{first}; {change}."


def _coverage(snap: Snapshot, mids: np.ndarray, p95: Mapping[str, np.ndarray],
              rates: Mapping[str, np.ndarray]) -> str:
    """Says which part of the window holds no samples (the charts leave it blank)."""
    start, end = snap.window
    step = (end - start) / STEPS
    known = np.zeros(len(mids), dtype=bool)
    for values in [*p95.values(), *rates.values()]:
        known |= np.isfinite(values)
    if not known.any():
        return "<p>No samples in the window: nothing to chart.</p>"
    first = float(mids[known][0] - step / 2)
    last = float(mids[known][-1] + step / 2)
    notes = []
    if first - start >= step:
        notes.append(f"before {utc(first)} (the first {(first - start) / 60:.1f} min of the "
                     "window)")
    if end - last >= step:
        notes.append(f"after {utc(last)} (the last {(end - last) / 60:.1f} min)")
    if not notes:
        return ""
    return (f"<p>No samples {' or '.join(_e(n) for n in notes)}: that time is left blank on "
            "the charts (no data, not zero).</p>")


def _has_data(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
    return any(np.isfinite(v).any() for _, v in curves.values())


def utc(t: float) -> str:
    """``t`` (unix seconds) as a UTC date and time, as the report prints it."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _meta_time(value: str | None) -> str:
    """A unix time from the snapshot's meta, or "?" (informative only: never fatal)."""
    try:
        t = float(value or "nan")
    except ValueError:
        return "?"
    return utc(t) if math.isfinite(t) else "?"


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return "<p>None.</p>"
    cells = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
            + cells + "</table>")


def _summary(snap: Snapshot) -> str:
    start, end = snap.window
    meta = snap.meta
    rows = [("window", f"{utc(start)} → {utc(end)} ({(end - start) / 60:.1f} min)"),
            ("exported", _meta_time(meta.get("created_at"))),
            ("trimtab", (f"{meta.get('app_version', '?')} (snapshot schema "
                         f"{meta.get('schema_version')})")),
            ("series / samples", (f"{meta.get('series', len(snap.series()))} / "
                                  f"{meta.get('samples', '?')}")),
            ("journal entries", len(snap.journal())), ("traces", len(snap.traces()))]
    targets = [(t.name, t.kind, t.url, _up(t.health.get("up"), t.health.get("gone")),
                t.health.get("error") or "") for t in snap.target_info()]
    notes = f"<h3>Notes</h3><pre>{_e(snap.notes)}</pre>" if snap.notes else ""
    return ("<h2>Summary</h2>" + _omitted(snap) + _table(("", ""), rows) + "<h3>Targets</h3>"
            + _table(("target", "kind", "url", "health", "last error"), targets) + notes)


def _omitted(snap: Snapshot) -> str:
    """What the export could not include, first: an absent change is not "no change"."""
    items = snap.omitted()
    if not items:
        return ""
    return ('<div class="card worse"><b>This snapshot is incomplete.</b> Not included:<ul>'
            + "".join(f"<li>{_e(o['what'])} of {_e(o['source'])}: {_e(o['why'])}</li>"
                      for o in items) + "</ul></div>")


def _up(value: object, gone: object = None) -> str:
    if gone:  # discovery saw it leave: neither up nor down (files before the column: None)
        return "gone"
    return "up" if value == 1 else "down" if value == 0 else "?"


def _routes(slow: Sequence[RouteLatency], shares: Mapping[str, float] | None = None) -> str:
    """The slowest routes; with ``shares`` (a window with rate limits) each route's share of
    requests answered 429."""
    rows = []
    for r in slow[:TOP_ROUTES]:
        q = r.quantile  # in the +Inf bucket the value is only a lower bound
        value = f"≥ {q.value * 1000:.1f}" if q.in_inf_bucket else f"{q.value * 1000:.1f}"
        row = [r.route, value, f"{q.lower * 1000:g}–{q.upper * 1000:g}", f"{r.requests:.0f}"]
        if shares is not None:
            share = shares.get(r.route)
            row.append("–" if share is None else f"{share * 100:.2f} %")
        rows.append(row)
    head = ["route", "p95 (ms)", "true value between (ms)", "requests"]
    return _table([*head, "429 share"] if shares is not None else head, rows)


def _judge_all(snap: Snapshot, journal: Sequence[JournalRow], actions: list[list[JournalRow]],
               mids: np.ndarray, p95: Mapping[str, np.ndarray], rate: np.ndarray
               ) -> dict[int, list[Comparison]]:
    """Each action (by index) judged by the card's judge: its routes' p95, the fleet p95
    and the request rate."""
    start, end = snap.window
    step = (end - start) / STEPS
    # The card's windows, unless the report's steps are too coarse for them.
    window = max(DEFAULT_WINDOW, 6 * step)
    settle = max(DEFAULT_SETTLE, step)
    # A step's value covers the step: dated by its end, as the live model dates a point by
    # the end of its rate window, so no step straddling the change counts as "before".
    ends = mids + step / 2
    accepted = [(r.time, change_scope(c.path for c in r.changes)) for r in journal
                if r.result == "accepted"]
    out = {}
    for i, group in enumerate(actions):
        row = group[0]
        scope = change_scope(c.path for r in group for c in r.changes)
        previous, following = bounding_changes(row.time, scope, accepted)
        routes = sorted(s.removeprefix("route:") for s in scope if s.startswith("route:"))
        curves = [(f"{r} p95", p95.get(r)) for r in routes]
        curves += [("all routes p95", p95.get("all routes")), ("requests/s", rate)]
        out[i] = [compare(ends, values, row.time, window=window, settle=settle,
                          metric=metric, now=end, previous_change=previous,
                          next_change=following)
                  for metric, values in curves if values is not None]
    return out


def _timeline(snap: Snapshot, journal: Sequence[JournalRow], actions: list[list[JournalRow]],
              judged: Mapping[int, list[Comparison]]) -> str:
    """A card per action (one for a change sent to several targets), each judged by the
    card's judge, and a card per refused change."""
    items: list[tuple[float, str]] = []
    for i, group in enumerate(actions):
        row = group[0]
        changes = "".join(
            f"<li>{_e(r.source.name)}: {_e(c.path)}: {_e(json.dumps(c.old))} → "
            f"{_e(json.dumps(c.new))}</li>" for r in group for c in r.changes)
        items.append((row.time, _card(row, action_label(row, group), changes,
                                      _cards(judged.get(i, [])))))
    for row in journal:
        if row.result != "accepted":
            changes = "".join(f"<li>{_e(c.path)}: {_e(json.dumps(c.old))} → "
                              f"{_e(json.dumps(c.new))}</li>" for c in row.changes)
            items.append((row.time, _card(
                row, f"{row.what} · {row.source.name}", changes,
                f"<p>{_e(row.result)}: nothing changed, nothing to judge.</p>")))
    if items:
        return "".join(card for _, card in sorted(items, key=lambda item: item[0]))
    if any(o["what"] in ("journal", "targets", "everything") for o in snap.omitted()):
        return "<p>The change journal was not included (see the summary): changes unknown.</p>"
    return "<p>No change in the window.</p>"


def _card(row: JournalRow, label: str, changes: str, judged: str) -> str:
    return (f'<div class="card"><b>{_e(label)}</b> · {_e(utc(row.time))} · '
            f"{_e(row.who)} · <i>{_e(row.result)}</i>"
            f"<ul>{changes}</ul><p>Reason: {_e(row.reason or '—')}"
            f"{' · ' + _e(row.detail) if row.detail else ''}</p>{judged}</div>")


# A verdict's colour in the page (the CSS classes .better / .worse).
_CSS_CLASS = {BETTER: "better", AS_INTENDED: "better", WORSE: "worse", AWAY: "worse"}


def _cards(found: Sequence[Comparison]) -> str:
    rows = "".join(
        f'<tr class="{_CSS_CLASS.get(c.direction, "neutral")}"><td>{_e(c.metric)}</td>'
        f"<td>{_e(format_value(c.metric, c.before))}</td>"
        f"<td>{_e(format_value(c.metric, c.after))}</td><td>{_e(c.change_text)}</td>"
        f"<td>{_e(c.band_text)}</td><td>{_e(c.label)}</td><td>{_e(c.data_text)}</td></tr>"
        for c in found)
    return ("<table><tr><th>metric</th><th>before</th><th>after</th><th>change</th>"
            "<th>normal before</th><th>verdict</th><th>samples before / after</th></tr>"
            f"{rows}</table>")


def _promises(snap: Snapshot) -> list[str]:
    """The SLOs in force and what the window did to each; nothing when there were none."""
    rows = snap.slos()
    if not rows:
        return []

    def pct(x: float | None, digits: str = ".2f") -> str:
        return "no traffic" if x is None else f"{x * 100:{digits}} %"

    table = _table(("SLO", "promise", "errors in the window", "burn rate",
                    "budget consumed by the window"),
                   [(r["name"], r["summary"], pct(r["error_ratio"]),
                     "no traffic" if r["burn"] is None else f"{r['burn']:.2f}×",
                     pct(r["budget_consumed"], ".3g"))
                    for r in sorted(rows, key=lambda r: -(r["budget_consumed"] or 0.0))])
    return ["<h2>Promises (SLOs)</h2>",
            "<p>Burn rate = the window's error ratio ÷ the error budget (1 − objective); "
            "budget consumed = burn rate × window ÷ the SLO's window (28 d: a 1 h burn of "
            "14.4× consumes 2 %).</p>", table]


def _annotations(snap: Snapshot) -> str:
    return _table(("time", "kind", "target", "text"),
                  [(utc(a["time"]), a["kind"], a["target"] or "", a["text"])
                   for a in snap.annotations()])


def _traces(snap: Snapshot) -> str:
    traces = snap.traces()
    slow = sorted(traces, key=lambda t: -(t.get("duration_ms") or 0.0))[:TOP_TRACES]
    n = len(traces)
    if n > TOP_TRACES:
        note = f"The list is capped: showing the {TOP_TRACES} slowest of {n:,} traces."
    else:
        note = f"All {n:,} trace{'' if n == 1 else 's'} in the snapshot, slowest first."
    if any(o["what"] in ("traces", "everything") for o in snap.omitted()):
        note += " Some traces could not be exported (see the summary)."
    return f"<p>{_e(note)}</p>" + _table(
        ("start", "route", "status", "instance", "cache", "ms", "spans"), [
            (utc(t["start"]) if t.get("start") else "", t.get("route") or t.get("name") or "",
             t.get("status", ""), t.get("instance") or "", t.get("cache") or "",
             f"{t.get('duration_ms') or 0.0:.1f}",
             ", ".join(f"{c['name']} {c.get('duration_ms') or 0:.1f} ms" for c in t["children"]))
            for t in slow])
