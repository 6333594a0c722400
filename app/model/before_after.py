"""The one judge of a change: a metric's level after it against its normal spread before it.

The before/after card behind a chart marker, the HTML report's change timeline and the
staged rollout's gates all call :func:`compare`, so a change reads the same everywhere.

Given a metric's samples (times and values in the model's units: seconds of latency,
ratios 0–1, per-second rates) and the change time:

- Windows. ``before`` = ``[max(t - W, previous + settle), t)``: it ends at the change
  and starts no earlier than the settled end of the previous change to the same target
  (the demo's warm-up or an earlier change is not "normal before"). ``after`` =
  ``[t + settle, min(t + settle + W, now, next change))``: the settle period right after
  the change is left out (caches refill, connections drain, the rate window still holds
  old requests) and the after window grows as data arrives. The before window does not
  shrink with the after window: the normal spread is always estimated from all of it.
- Levels. The mean of each window's finite samples (NaN = gap, ignored).
- Normal spread. The before window is cut into ``sub_windows`` equal parts and each
  part's mean is taken. The normal band is the wider of [min, max] of those part means
  and before-mean ± ``k`` × their standard deviation, clipped to what the metric can be
  (≥ 0; ≤ 1 for ratios). The after mean is *beyond the normal spread* outside it.
- Why this method. Latency series are autocorrelated, so the textbook standard error of
  a mean is far too small and flags every wiggle. The part means show how much a
  window's level wanders on its own before the change; the band errs wide, i.e. towards
  "not shown to differ".
- Direction per metric (:data:`KINDS`): latency and errors down = better, hit ratio up
  = better, a balancer share moving toward the share the new weights give = as intended;
  requests limited (or would-be-limited) by a rate limit moving the way the change meant
  (:func:`limit_intent`: a raised limit means fewer, enforcing means more) = as intended;
  a rate just changed.
- Not enough data (fewer than ``min_parts`` before-parts with samples, or fewer than
  ``min_after`` samples after the settle period): ``beyond`` is None and the verdict says
  how much there is; nothing is guessed. No text ever shows ``nan``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

DEFAULT_WINDOW = 120.0  # seconds judged on each side of a change
DEFAULT_SETTLE = 15.0  # seconds right after a change left out (caches fill, weights settle)
TOGETHER = 2.0  # changes this close are one action fanned out to several agents


@dataclass(frozen=True)
class Kind:
    """What a metric is: which way is better, what values it can take, how it is shown."""

    # "down" | "up" | "toward" (the new weights' share) | "intended" (the way the change
    # meant it to move: limit_intent) | None
    better: str | None
    low: float  # the band is clipped to [low, high]
    high: float
    unit: str  # "ms" (model holds seconds), "%" (model holds 0–1), "/s" or ""
    # A difference smaller than this (model units) is never claimed: it is below what the
    # card shows (0.1 ms, 0.1 pts), e.g. a flat 1 % error ratio after float arithmetic.
    resolution: float = 0.0


LATENCY = Kind("down", 0.0, math.inf, "ms", 1e-4)
ERRORS = Kind("down", 0.0, 1.0, "%", 1e-3)
HIT_RATIO = Kind("up", 0.0, 1.0, "%", 1e-3)
SHARE = Kind("toward", 0.0, 1.0, "%", 1e-3)
RATE = Kind(None, 0.0, math.inf, "/s", 0.1)
# Requests a rate limit refused (or would have): neither more nor fewer is better in itself,
# only the way the change meant them to go (an operator tightening a limit wants more).
LIMITED = Kind("intended", 0.0, math.inf, "/s", 0.1)
# An SLO's error-budget burn rate (error ratio ÷ budget): lower is better.
BURN = Kind("down", 0.0, math.inf, "×", 0.01)
OTHER = Kind(None, -math.inf, math.inf, "")
KINDS: dict[str, Kind] = {
    "p50": LATENCY, "p90": LATENCY, "p95": LATENCY, "p99": LATENCY, "lb_p95": LATENCY,
    "error_ratio": ERRORS, "error_rate": ERRORS, "hit_ratio": HIT_RATIO, "share": SHARE,
    "rate": RATE, "requests/s": RATE, "allowed/s": RATE,
    "limited/s": LIMITED, "would-be-limited/s": LIMITED,
    "burn": BURN,
}

# Direction words (Comparison.direction).
BETTER, WORSE, AS_INTENDED, AWAY = "better", "worse", "as intended", "away from the new weights"
AGAINST = "against the change"  # a limited rate moving the other way than the change meant
CHANGED, WITHIN, UNKNOWN = "changed", "within spread", "unknown"

Series = tuple[npt.ArrayLike, npt.ArrayLike]


def kind_of(metric: str) -> Kind:
    """The kind of ``metric``, named by its last word: ``"/search p95"`` → latency."""
    words = metric.strip().split()
    last = words[-1] if words else ""
    return KINDS.get(last, KINDS.get(last.rsplit(".", 1)[-1], OTHER))


def format_value(metric: str, value: float) -> str:
    """``value`` (model units) in the app's units: ``0.2185`` p95 → ``"218.5 ms"``; no nan."""
    if not math.isfinite(value):
        return "–"
    unit = kind_of(metric).unit
    if unit == "ms":
        ms = value * 1000
        return f"{ms:.1f} ms" if ms < 1000 else f"{ms:,.0f} ms"
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit == "/s":
        return f"{value:.1f}/s"
    if unit == "×":
        return f"{value:.2f}×"
    return f"{value:.4g}"


def display_scale(metric: str) -> float:
    """Factor from the model's units to the app's: 1000 for latency (ms), 100 for ratios (%)."""
    return {"ms": 1000.0, "%": 100.0}.get(kind_of(metric).unit, 1.0)


@dataclass(frozen=True)
class Comparison:
    """One metric before vs after a change."""

    metric: str
    before: float  # mean over the before window (NaN when empty)
    after: float
    delta: float  # after - before
    delta_pct: float | None  # relative to before; None when before is 0 or not finite
    spread: float  # standard deviation of the before window's part means
    band: tuple[float, float]  # normal range of the level before the change (clipped)
    n_before: int
    n_after: int
    before_span: tuple[float, float]  # the windows actually used, [start, end)
    after_span: tuple[float, float]
    beyond: bool | None  # None: not enough data to say
    direction: str  # better | worse | as intended | away from… | changed | within | unknown
    label: str  # the short verdict the card, the report and the gates show
    verdict: str  # one line: levels, change, band, label, data held
    expected: float | None = None  # a share's target under the new weights

    @property
    def window(self) -> float:
        """Seconds of the after window held so far."""
        return max(0.0, self.after_span[1] - self.after_span[0])

    @property
    def change_text(self) -> str:
        """``"-45.8 %"`` relative; ``"+30.7 pts"`` for ratios; ``"–"`` when unknown."""
        if not math.isfinite(self.delta):
            return "–"
        if kind_of(self.metric).unit == "%":
            return _signed(self.delta * 100, ".1f") + " pts"
        if self.delta_pct is not None:
            return _signed(self.delta_pct * 100, ".1f") + " %"
        return _signed(self.delta, ".4g")

    @property
    def band_text(self) -> str:
        """The normal band in the app's units, ``"–"`` when not known."""
        if not all(math.isfinite(b) for b in self.band):
            return "–"
        return f"{format_value(self.metric, self.band[0])} – {format_value(self.metric, self.band[1])}"

    @property
    def data_text(self) -> str:
        """How much each side holds: ``"118 before (120 s) / 14 after (14 s)"``."""
        b = self.before_span[1] - self.before_span[0]
        return (f"{self.n_before} before ({max(0.0, b):.0f} s) / "
                f"{self.n_after} after ({self.window:.0f} s)")


def _signed(x: float, spec: str) -> str:
    """``+1.5`` / ``-1.5`` / ``±0.0`` (never ``-0.0``)."""
    text = f"{abs(x):{spec}}"
    if float(text) == 0:
        return f"±{text}"
    return ("+" if x > 0 else "-") + text


def windows(change_time: float, window: float, settle: float, now: float | None = None,
            previous_change: float | None = None, next_change: float | None = None
            ) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(before, after)`` half-open ``(start, end)`` spans; see the module docstring."""
    for name, value in (("change_time", change_time), ("window", window), ("settle", settle)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, not {value!r}")
    if window <= 0 or settle < 0:
        raise ValueError("window must be > 0 and settle >= 0")
    if previous_change is not None and not previous_change < change_time:
        raise ValueError(f"the previous change ({previous_change!r}) must come before the "
                         f"change ({change_time!r})")
    if next_change is not None and not next_change > change_time:
        raise ValueError(f"the next change ({next_change!r}) must come after the change "
                         f"({change_time!r})")
    start = change_time - window
    if previous_change is not None:
        start = min(change_time, max(start, previous_change + settle))
    after_start = change_time + settle
    end = after_start + window
    for limit in (now, next_change):
        if limit is not None:
            end = min(end, limit)
    return (start, change_time), (after_start, max(after_start, end))


def _in(times: np.ndarray, values: np.ndarray, span: tuple[float, float]) -> np.ndarray:
    mask = (times >= span[0]) & (times < span[1]) & np.isfinite(values)
    return values[mask]


def _part_means(times: np.ndarray, values: np.ndarray, span: tuple[float, float],
                parts: int) -> list[float]:
    if span[1] <= span[0]:
        return []
    edges = np.linspace(span[0], span[1], parts + 1)
    means = []
    for start, end in itertools.pairwise(edges):
        inside = _in(times, values, (float(start), float(end)))
        if inside.size:
            means.append(float(inside.mean()))
    return means


def compare(times: npt.ArrayLike, values: npt.ArrayLike, change_time: float, *,
            window: float = DEFAULT_WINDOW, settle: float = DEFAULT_SETTLE, metric: str = "",
            now: float | None = None, previous_change: float | None = None,
            next_change: float | None = None, expected: float | None = None,
            sub_windows: int = 6, k: float = 2.0, min_parts: int = 3,
            min_after: int = 3, intended: str | None = None) -> Comparison:
    """Judge one metric's level after the change against its normal spread before it.

    ``expected``: for a share, the share the new weights give (the way "as intended" is).
    ``intended``: for a limited rate, ``"down"`` or ``"up"``, the way the change meant it
    to move (:func:`limit_intent`); None: it just changed.
    """
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.shape != v.shape:
        raise ValueError(f"times and values differ in shape: {t.shape} vs {v.shape}")
    if expected is not None and not math.isfinite(expected):
        expected = None
    kind = kind_of(metric)
    before_span, after_span = windows(change_time, window, settle, now, previous_change,
                                      next_change)
    before, after = _in(t, v, before_span), _in(t, v, after_span)
    parts = _part_means(t, v, before_span, sub_windows)
    b_mean = float(before.mean()) if before.size else math.nan
    a_mean = float(after.mean()) if after.size else math.nan
    delta = a_mean - b_mean
    pct = delta / b_mean if b_mean and math.isfinite(b_mean) and math.isfinite(delta) else None
    spread = float(np.std(parts, ddof=1)) if len(parts) >= 2 else math.nan
    if len(parts) < min_parts or after.size < min_after:
        band = (math.nan, math.nan)
        beyond = None
    else:
        band = (max(kind.low, min(min(parts), b_mean - k * spread)),
                min(kind.high, max(max(parts), b_mean + k * spread)))
        beyond = not band[0] <= a_mean <= band[1] and abs(delta) >= kind.resolution
    direction = _direction(kind, b_mean, a_mean, beyond, expected, intended)
    label = _label(metric, direction, len(parts), min_parts, int(after.size), min_after,
                   expected)
    c = Comparison(metric, b_mean, a_mean, delta, pct, spread, band, int(before.size),
                   int(after.size), before_span, after_span, beyond, direction, label, "",
                   expected)
    name = metric or "value"
    text = (f"{name}: {format_value(metric, b_mean)} → {format_value(metric, a_mean)} "
            f"({c.change_text}); normal before: {c.band_text}; {label}; {c.data_text}")
    return replace(c, verdict=text)


def compare_all(series: Mapping[str, Series], change_time: float, *,
                window: float = DEFAULT_WINDOW, settle: float = DEFAULT_SETTLE,
                now: float | None = None, previous_change: float | None = None,
                next_change: float | None = None,
                expected: Mapping[str, float] | None = None, sub_windows: int = 6,
                k: float = 2.0, intended: Mapping[str, str] | None = None
                ) -> dict[str, Comparison]:
    """:func:`compare` for each named series (``expected`` by the same names, for shares;
    ``intended`` likewise, for limited rates)."""
    expected, intended = expected or {}, intended or {}
    return {name: compare(ts, vs, change_time, window=window, settle=settle, metric=name,
                          now=now, previous_change=previous_change, next_change=next_change,
                          expected=expected.get(name), sub_windows=sub_windows, k=k,
                          intended=intended.get(name))
            for name, (ts, vs) in series.items()}


LIMITED_WORDS = ("limited/s", "would-be-limited/s")  # enforced refusals, shadow ones


def limit_intent(changes: Iterable[tuple[str, object, object]]) -> dict[str, dict[str, str]]:
    """Per rate limit a change touched, the way it meant each limited rate to move:
    limit name → {"limited/s" | "would-be-limited/s": "down" | "up"}.

    ``changes`` are ``(path, old, new)`` of the change's fields (``limits.<name>.rate``…).
    A removed limit, or a raised rate or burst: fewer refused ("down"); a lowered one:
    more ("up"). A mode switched to ``enforce`` means more 429s and, from ``shadow``,
    fewer would-be-limited; back to ``shadow`` the reverse; ``off`` fewer of the one it
    left. A rate raised and a burst lowered at once, or a new key, say nothing (left out).
    """
    fields: dict[str, dict[str, tuple[object, object]]] = {}
    for path, old, new in changes:
        parts = path.split(".")
        if parts[0] == "limits" and len(parts) >= 3:
            fields.setdefault(".".join(parts[1:-1]), {})[parts[-1]] = (old, new)
    out = {}
    for name, f in fields.items():
        olds = [o for o, _ in f.values() if o is not None]
        news = [n for _, n in f.values() if n is not None]
        if not news:  # removed: nobody is refused by it any more
            out[name] = dict.fromkeys(LIMITED_WORDS, "down")
            continue
        intent: dict[str, str] = {}
        old_mode, new_mode = f.get("mode", (None, None))
        if not olds:  # created (a new limit starts in shadow)
            intent["limited/s" if new_mode == "enforce" else "would-be-limited/s"] = "up"
        elif "mode" in f:
            for mode, way in ((old_mode, "down"), (new_mode, "up")):
                if mode == "enforce":
                    intent["limited/s"] = way
                elif mode == "shadow":
                    intent["would-be-limited/s"] = way
        else:
            moves = {_way(*f[n]) for n in ("rate", "burst") if n in f}
            if len(moves) == 1 and None not in moves and "key" not in f:
                intent = dict.fromkeys(LIMITED_WORDS, moves.pop())  # type: ignore[arg-type]
        if intent:
            out[name] = intent
    return out


def _way(old: object, new: object) -> str | None:
    """``"down"`` (fewer refused) when a rate or burst was raised, ``"up"`` when lowered."""
    if not isinstance(old, int | float) or not isinstance(new, int | float) or old == new:
        return None
    return "down" if new > old else "up"


def change_scope(paths: Iterable[str]) -> set[str]:
    """What a change touches, from its field paths: ``routes./r.ttl`` → ``{"route:/r"}``;
    any balancer field → ``{"balancer"}`` (a weight moves every server's share)."""
    scope = set()
    for path in paths:
        if path.startswith("routes."):
            scope.add("route:" + path.removeprefix("routes.").rsplit(".", 1)[0])
        elif path.startswith("servers.") or path in ("servers", "policy"):
            scope.add("balancer")
        elif path.startswith("limits.") and path.count(".") >= 2:  # limits.<name>.<field>
            scope.add("limit:" + path.removeprefix("limits.").rsplit(".", 1)[0])
        else:
            scope.add(path)
    return scope


def bounding_changes(change_time: float, scope: set[str],
                     others: Iterable[tuple[float, set[str]]], together: float = TOGETHER
                     ) -> tuple[float | None, float | None]:
    """(previous, next) change time touching the same target as this one, or None.

    ``others`` are ``(time, scope)`` of accepted changes (this one may be among them);
    changes within ``together`` seconds are the same action sent to several agents.
    """
    prev = nxt = None
    for when, their in others:
        if not scope & their or abs(when - change_time) <= together:
            continue
        if when < change_time and (prev is None or when > prev):
            prev = when
        elif when > change_time and (nxt is None or when < nxt):
            nxt = when
    return prev, nxt


def _direction(kind: Kind, before: float, after: float, beyond: bool | None,
               expected: float | None, intended: str | None = None) -> str:
    if beyond is None:
        return UNKNOWN
    if not beyond:
        return WITHIN
    if kind.better == "intended":
        if intended not in ("down", "up"):
            return CHANGED
        return AS_INTENDED if (after < before) == (intended == "down") else AGAINST
    if kind.better == "toward":
        if expected is None:
            return CHANGED
        return AS_INTENDED if abs(after - expected) < abs(before - expected) else AWAY
    if kind.better is None:
        return CHANGED
    return BETTER if (after < before) == (kind.better == "down") else WORSE


def _label(metric: str, direction: str, parts: int, min_parts: int, n_after: int,
           min_after: int, expected: float | None) -> str:
    if direction == UNKNOWN:
        # Name only what is short: "6 of 3 before-parts" read as nonsense when the
        # before side was fine and only the after side lacked samples.
        short = []
        if parts < min_parts:
            short.append(f"only {parts} of the {min_parts} before-parts needed have samples")
        if n_after < min_after:
            short.append(f"{n_after} of the {min_after} samples needed after the settle period")
        return f"not enough data yet ({'; '.join(short) or 'no comparable samples'})"
    if direction == WITHIN:
        return "within the normal spread: not shown to differ"
    target = f" {format_value(metric, expected)}" if expected is not None else ""
    if kind_of(metric) is LIMITED and direction in (AS_INTENDED, AGAINST):
        return f"{direction} (beyond the normal spread)"
    if direction == AS_INTENDED:
        return f"as intended: moved toward the new weights' share{target}"
    if direction == AWAY:
        return f"moved away from the new weights' share{target}"
    return f"{direction} (beyond the normal spread)"
