"""The top limited keys of one rate limit, as the agents report them, merged over a fleet.

Each agent answers ``GET /_trimtab/limits`` with, per limit, ``"top_keys": [{"key",
"limited", "shadow_limited"}, ...]`` (the keys refused most, or that would have been in
shadow mode, from its real decisions) and ``"top_keys_seconds"`` (the span they cover).
An agent merges its own workers, so one key has one entry per agent. Across instances the
entries are summed by key string: an IP or a JWT claim reads the same everywhere, and an
API key is an opaque ``#xxxxxxxx`` id (never shown in clear) that is the same everywhere
when the instances share ``TRIMTAB_KEYID_SECRET`` (the demo does). Without it each agent
salts its own, so the same client behind two instances stays two rows.

An agent older than the field answers without ``top_keys``: it is "not reported", never
an error and never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_TOP_KEYS = 20  # the agent sends at most this many per limit


@dataclass(frozen=True)
class InstanceTopKeys:
    """One instance's top limited keys of one limit: (key, limited, shadow-limited)."""

    instance: str
    seconds: float
    keys: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class TopKey:
    """One key over the fleet: its refusals summed over the instances that saw it."""

    key: str
    limited: int  # refused with 429 (enforce)
    shadow_limited: int  # would have been refused (shadow): served
    per_second: float  # (limited + shadow_limited) per second, each instance over its own span
    share: float  # of the refusals of every key listed (0..1)
    instances: tuple[str, ...]

    @property
    def refused(self) -> int:
        return self.limited + self.shadow_limited


@dataclass(frozen=True)
class TopKeys:
    """The fleet's top limited keys of one limit, and who could not say."""

    limit: str
    keys: tuple[TopKey, ...]
    seconds: float  # the longest span an instance reported (NaN: none reported)
    reporting: tuple[str, ...]  # instances whose agent reports top keys
    unsupported: tuple[str, ...]  # instances whose agent is older than top keys
    errors: dict[str, str] = field(default_factory=dict)  # instance → why it gave no answer


def parse_instance(instance: str, body: Any, name: str) -> InstanceTopKeys | None:
    """The top keys of limit ``name`` in one ``GET /_trimtab/limits`` answer; None when the
    agent does not report them (an older agent). Raises ValueError on a malformed answer,
    LookupError when the instance has no such limit."""
    if not isinstance(body, dict) or not isinstance(body.get("limits"), dict):
        raise ValueError("limits answer without limits")
    limit = body["limits"].get(name)
    if limit is None:
        raise LookupError(f"no limit {name}")
    if not isinstance(limit, dict):
        raise ValueError(f"limit {name} is not an object")
    if "top_keys" not in limit:
        return None
    entries, seconds = limit["top_keys"], limit.get("top_keys_seconds",
                                                    body.get("top_keys_seconds"))
    if not isinstance(entries, list) or isinstance(seconds, bool) \
            or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError("top_keys must be a list with top_keys_seconds a number of seconds")
    keys = []
    for entry in entries[:MAX_TOP_KEYS]:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise ValueError("a top_keys entry without a key")
        counts = [entry.get("limited", 0), entry.get("shadow_limited", 0)]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
            raise ValueError("top_keys counts must be whole numbers ≥ 0")
        keys.append((entry["key"], counts[0], counts[1]))
    return InstanceTopKeys(instance, float(seconds), tuple(keys))


def merge(limit: str, answers: Mapping[str, InstanceTopKeys | None | Exception]) -> TopKeys:
    """Sum the instances' answers by key string (see the module docstring); most refused
    first. ``answers``: instance → its keys, None (not reported) or why it failed."""
    totals: dict[str, list[Any]] = {}
    reporting, unsupported, errors = [], [], {}
    for instance, answer in sorted(answers.items()):
        if isinstance(answer, Exception):
            errors[instance] = str(answer)
            continue
        if answer is None:
            unsupported.append(instance)
            continue
        reporting.append(instance)
        for key, limited, shadow in answer.keys:
            t = totals.setdefault(key, [0, 0, 0.0, []])
            t[0], t[1] = t[0] + limited, t[1] + shadow
            t[2] += (limited + shadow) / answer.seconds if answer.seconds > 0 else math.nan
            t[3].append(instance)
    everyone = sum(t[0] + t[1] for t in totals.values())
    keys = sorted((TopKey(k, t[0], t[1], t[2], (t[0] + t[1]) / everyone if everyone else 0.0,
                          tuple(t[3])) for k, t in totals.items() if t[0] + t[1] > 0),
                  key=lambda k: (-k.refused, k.key))
    spans = [a.seconds for a in answers.values() if isinstance(a, InstanceTopKeys)]
    return TopKeys(limit, tuple(keys), max(spans) if spans else math.nan, tuple(reporting),
                   tuple(unsupported), errors)
