"""Other instrumentations' metrics as trimtab's canonical ones, driven by data tables.

One table per source (built-ins in ``mappings_builtin.toml``; users add or replace
tables in their config file with the same schema)::

    [[mapping]]
    source = "my-framework"                 # unique; a user table replaces a built-in one
    detect = ["myapp_requests_total{path}"] # sample names (optionally {a label it carries});
                                            # any one present → this source
    [[mapping.metric]]
    from = "myapp_latency_ms"               # source name (histogram: family name)
    kind = "histogram"                      # "sample" (default) or "histogram"
    to = "trimtab_http_request_duration_seconds"
    scale = 0.001                           # source unit → canonical unit (ms → s)
    labels = { route = "{path}", method = "{verb|method}" }
    match = { job = "api" }                 # optional: only series with these label values

``labels`` maps each canonical label to a template: ``{a}`` is the source label
``a``, ``{a|b}`` the first non-empty of ``a`` and ``b``, other text is literal.
Source labels not named are dropped, and a label that renders empty is left out
(Prometheus: an empty label is no label). Series that become equal are summed —
so ``sum by`` is built in: dropped labels (say a status code on buckets) add up.

``kind = "histogram"`` maps ``from_bucket/_count/_sum`` to ``to_bucket/_count/_sum``;
``le`` is kept and multiplied by ``scale``, as is ``_sum``; counts are not. For a
``sample`` rule ``scale`` multiplies the value.

:func:`normalise` keeps every source sample untouched, in order, and appends the
canonical samples after them (``keep_source=False`` drops the samples a rule used).
Keeping them costs a list copy and leaves the exposition's indexes (exemplars)
valid; the cockpit reads only canonical names. An exposition nothing maps is
returned as is. Compile the tables once (:class:`Normaliser`, or
:func:`for_exposition` on a target's first scrape): the per-scrape work is then one
dict lookup by name per sample, plus one by (name, label tuple identity) per
mapped sample.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .exposition import Exemplar, Exposition, Labels, Sample
from .promql import le_value

KINDS = ("sample", "histogram")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_DETECT = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\})?\Z")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_TABLE_KEYS = {"source", "detect", "metric"}
_RULE_KEYS = {"from", "to", "kind", "scale", "labels", "match"}
_MEMO_LIMIT = 200_000  # series seen; cleared past this so label churn cannot grow it forever
# A resolved source series: (its labels, (canonical slot, value factor)..., (slot, exemplar
# factor)...). A slot numbers one canonical series for the life of the Normaliser.
_Hit = tuple[Labels, tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]


class MappingError(ValueError):
    """An invalid mapping table; ``field`` names where (``mapping[1].metric[0].to``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Template:
    """A label template: literal text and ``{a|b}`` placeholders (first non-empty label)."""

    parts: tuple[str | tuple[str, ...], ...]

    def render(self, labels: Mapping[str, str]) -> str:
        """The template filled from ``labels`` (a missing label counts as empty)."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(next((labels[n] for n in part if labels.get(n)), ""))
        return "".join(out)


@dataclass(frozen=True)
class MetricRule:
    """One source name (or histogram family) to one canonical name."""

    source: str
    target: str
    kind: str = "sample"
    scale: float = 1.0
    labels: tuple[tuple[str, Template], ...] = ()
    match: Labels = ()


@dataclass(frozen=True)
class MappingTable:
    """All rules of one source, and how to recognise its exposition."""

    source: str
    detect: tuple[tuple[str, str | None], ...]
    metrics: tuple[MetricRule, ...]


# ---------------------------------------------------------------- loading and validation

def builtin_tables() -> list[MappingTable]:
    """The tables shipped with trimtab (``mappings_builtin.toml``, package data)."""
    return list(_builtin_tables())


@functools.cache
def _builtin_tables() -> tuple[MappingTable, ...]:
    # Read and validated once per process: every target's first scrape asks (parsing the
    # TOML again was 2 ms a target, 0.4 s of CPU when 200 targets start together). The
    # tables are frozen; callers get their own list.
    text = resources.files(__package__).joinpath("mappings_builtin.toml").read_text("utf-8")
    return tuple(load_tables(tomllib.loads(text), "builtin"))


def load_file(path: Path) -> list[MappingTable]:
    """Tables from the ``[[mapping]]`` entries of a TOML file (other keys are ignored)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(str(path), f"not valid TOML: {exc}") from None
    return load_tables(doc, str(path))


def load_tables(doc: Mapping[str, Any], where: str = "config") -> list[MappingTable]:
    """Validate ``doc["mapping"]`` (parsed TOML) into tables; :class:`MappingError` names the field."""
    entries = doc.get("mapping", [])
    if not isinstance(entries, list):
        raise MappingError(f"{where}: mapping", "must be an array of tables ([[mapping]])")
    tables: list[MappingTable] = []
    for i, entry in enumerate(entries):
        table = _table(entry, f"{where}: mapping[{i}]")
        if any(t.source == table.source for t in tables):
            raise MappingError(f"{where}: mapping[{i}].source", f"{table.source!r} is defined twice")
        tables.append(table)
    return tables


def merge(builtin: Sequence[MappingTable], user: Sequence[MappingTable]) -> list[MappingTable]:
    """Built-ins with the user's tables: same ``source`` replaces, others are added after."""
    by_source = {t.source: t for t in user}
    out = [by_source.pop(t.source, t) for t in builtin]
    return out + [t for t in user if t.source in by_source]


def _table(entry: Any, where: str) -> MappingTable:
    entry = _mapping(entry, where, _TABLE_KEYS)
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise MappingError(f"{where}.source", "must be a non-empty string")
    detect = entry.get("detect")
    if not isinstance(detect, list) or not detect:
        raise MappingError(f"{where}.detect", "must be a non-empty list of sample names")
    found: list[tuple[str, str | None]] = []
    for j, item in enumerate(detect):
        m = _DETECT.match(item) if isinstance(item, str) else None
        if m is None:
            raise MappingError(f"{where}.detect[{j}]",
                               f"must be a sample name, optionally with {{label}}, got {item!r}")
        found.append((m["name"], m["label"]))
    rules = entry.get("metric")
    if not isinstance(rules, list) or not rules:
        raise MappingError(f"{where}.metric", "must be a non-empty array of tables ([[mapping.metric]])")
    metrics = tuple(_rule(r, f"{where}.metric[{j}]") for j, r in enumerate(rules))
    return MappingTable(source, tuple(found), metrics)


def _rule(entry: Any, where: str) -> MetricRule:
    entry = _mapping(entry, where, _RULE_KEYS)
    names = {}
    for key in ("from", "to"):
        value = entry.get(key)
        if not isinstance(value, str) or not _NAME.match(value):
            raise MappingError(f"{where}.{key}", f"must be a metric name, got {value!r}")
        names[key] = value
    kind = entry.get("kind", "sample")
    if kind not in KINDS:
        raise MappingError(f"{where}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    scale = entry.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
        raise MappingError(f"{where}.scale", f"must be a positive number, got {scale!r}")
    labels = _label_table(entry.get("labels", {}), f"{where}.labels")
    if kind == "histogram" and "le" in labels:
        raise MappingError(f"{where}.labels.le", "histogram rules keep and scale le themselves")
    templates = tuple(sorted((k, _template(v, f"{where}.labels.{k}")) for k, v in labels.items()))
    match = tuple(sorted(_label_table(entry.get("match", {}), f"{where}.match").items()))
    return MetricRule(names["from"], names["to"], kind, float(scale), templates, match)


def _mapping(entry: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise MappingError(where, "must be a table")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise MappingError(f"{where}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
    return entry


def _label_table(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise MappingError(where, "must be a table of label = string")
    for key, text in value.items():
        if not _LABEL.match(key):
            raise MappingError(f"{where}.{key}", "not a valid label name")
        if not isinstance(text, str):
            raise MappingError(f"{where}.{key}", f"must be a string, got {text!r}")
    return dict(value)


def _template(text: str, where: str) -> Template:
    parts: list[str | tuple[str, ...]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append(text[pos:m.start()])
        names = tuple(m[1].split("|"))
        if not all(_LABEL.match(n) for n in names):
            raise MappingError(where, f"placeholder {m[0]!r} must be {{label}} or {{label|label}}")
        parts.append(names)
        pos = m.end()
    parts.append(text[pos:])
    if any(isinstance(p, str) and ("{" in p or "}" in p) for p in parts):
        raise MappingError(where, f"unbalanced brace in {text!r}")
    return Template(tuple(p for p in parts if p != ""))


# ---------------------------------------------------------------- detection and normalising

def detect_all(expo: Exposition, tables: Iterable[MappingTable] | None = None) -> list[str]:
    """Every source whose ``detect`` names appear in ``expo``, in table order.

    An exposition that already carries canonical ``trimtab_`` names (the agent's) is
    recognised by nothing: mapping it would duplicate its series.
    """
    seen: dict[str, set[str]] = {}
    names, label_sets, _values, _stamps = expo.columns()  # no Sample tuple built for this
    for name, labels in zip(names, label_sets):
        if name.startswith("trimtab_"):
            return []
        if name not in seen:
            seen[name] = set()
        if labels:
            seen[name].update(k for k, _ in labels)
    tables = builtin_tables() if tables is None else tables
    return [t.source for t in tables
            if any(n in seen and (lab is None or lab in seen[n]) for n, lab in t.detect)]


def detect(expo: Exposition, tables: Iterable[MappingTable] | None = None) -> str | None:
    """The first source (built-ins by default) that ``expo`` looks like, or None."""
    found = detect_all(expo, tables)
    return found[0] if found else None


@dataclass(frozen=True)
class _Rule:
    target: str
    labels: tuple[tuple[str, Template], ...]
    match: Labels
    le_scale: float | None  # None: `le` is not a bound of this rule
    value_scale: float
    exemplar_scale: float


def _expand(rule: MetricRule) -> list[tuple[str, _Rule]]:
    """Sample-level rules; a histogram becomes its _bucket, _count and _sum rules."""
    if rule.kind == "sample":
        return [(rule.source, _Rule(rule.target, rule.labels, rule.match, None, rule.scale,
                                    rule.scale))]
    s, t, lab, m, k = rule.source, rule.target, rule.labels, rule.match, rule.scale
    return [(f"{s}_bucket", _Rule(f"{t}_bucket", lab, m, k, 1.0, k)),
            (f"{s}_count", _Rule(f"{t}_count", lab, m, None, 1.0, k)),
            (f"{s}_sum", _Rule(f"{t}_sum", lab, m, None, k, k))]


def _scaled_le(le: str, scale: float) -> str:
    """``le`` times ``scale``; 1/scale as a divisor when whole, so 5 ms reads 0.005 exactly."""
    bound = le_value(le)
    if scale == 1.0 or bound in (float("inf"), float("-inf")):
        return le
    inverse = 1.0 / scale
    value = bound / round(inverse) if abs(inverse - round(inverse)) < 1e-9 else bound * scale
    return repr(value)


class Normaliser:
    """Compiled tables: per sample one dict lookup by name; rules run once per new series."""

    def __init__(self, tables: Iterable[MappingTable]) -> None:
        tables = list(tables)
        self.sources = tuple(t.source for t in tables)
        self._rules: dict[str, list[_Rule]] = {}
        self._families: dict[str, tuple[str, str]] = {}  # canonical sample name → family, type
        for table in tables:
            for rule in table.metrics:
                for name, expanded in _expand(rule):
                    self._rules.setdefault(name, []).append(expanded)
                    self._families[expanded.target] = _family(rule, expanded.target)
        # (name, id(labels)) → (labels, value slots, exemplar slots). The parser hands out the
        # same labels tuple every scrape, so the key hashes an int, not the label pairs; the
        # entry holds the tuple, so its id cannot be reused while the entry lives.
        self._memo: dict[tuple[str, int], _Hit] = {}
        self._slot_of: dict[tuple[str, Labels], int] = {}  # canonical series → slot
        self._slot_keys: list[tuple[str, Labels]] = []

    def normalise(self, expo: Exposition, keep_source: bool = True) -> Exposition:
        """``expo`` with canonical samples appended (see the module docstring)."""
        samples, exemplars = expo.samples, expo.exemplars
        if len(self._memo) >= _MEMO_LIMIT:  # label churn: start over rather than grow forever
            self._memo.clear()  # between scrapes only: a scrape's slots must stay valid
            self._slot_of.clear()
            self._slot_keys.clear()
        sums, stamps = self._sum(samples)
        if not sums:
            return expo
        if keep_source:
            kept, kept_ex = list(samples), dict(exemplars)
        else:
            kept, kept_ex = self._unused(samples, exemplars)
        canon_ex: dict[int, Exemplar] = {}
        for i, ex in exemplars.items():
            name, labels = samples[i][0], samples[i][1]
            if name in self._rules:
                for slot, factor in self._hit(name, labels)[2]:
                    canon_ex[slot] = ex._replace(value=ex.value * factor)
        types = dict(expo.types)
        for slot, value in sums.items():
            if slot in canon_ex:
                kept_ex[len(kept)] = canon_ex[slot]
            name, labels = self._slot_keys[slot]
            kept.append(Sample(name, labels, value, stamps.get(slot)))
            family, typ = self._families[name]
            types.setdefault(family, typ)
        return Exposition(kept, types, dict(expo.helps), dict(expo.units), kept_ex, expo.format)

    def _sum(self, samples: list[Sample]) -> tuple[dict[int, float], dict[int, float]]:
        """The hot loop: canonical sums by slot, and the first timestamp seen for each."""
        rules, memo = self._rules, self._memo
        sums: dict[int, float] = {}
        stamps: dict[int, float] = {}
        for name, labels, value, ts in samples:
            if name not in rules:
                continue
            hit = memo.get((name, id(labels)))
            if hit is None or hit[0] is not labels:
                hit = self._resolve(name, labels)
            for slot, factor in hit[1]:
                if slot in sums:
                    sums[slot] += value * factor
                else:
                    sums[slot] = value * factor
                    if ts is not None:
                        stamps[slot] = ts
        return sums, stamps

    def _hit(self, name: str, labels: Labels) -> _Hit:
        hit = self._memo.get((name, id(labels)))
        return hit if hit is not None and hit[0] is labels else self._resolve(name, labels)

    def _unused(self, samples: list[Sample], exemplars: dict[int, Exemplar],
                ) -> tuple[list[Sample], dict[int, Exemplar]]:
        """Samples no rule used, with their exemplars re-indexed (``keep_source=False``)."""
        kept: list[Sample] = []
        kept_ex: dict[int, Exemplar] = {}
        for i, sample in enumerate(samples):
            if sample.name in self._rules and self._hit(sample.name, sample.labels)[1]:
                continue
            if i in exemplars:
                kept_ex[len(kept)] = exemplars[i]
            kept.append(sample)
        return kept, kept_ex

    def _resolve(self, name: str, labels: Labels) -> _Hit:
        lab = dict(labels)
        values: list[tuple[int, float]] = []
        exemplars: list[tuple[int, float]] = []
        for rule in self._rules[name]:
            if any(lab.get(k, "") != v for k, v in rule.match):
                continue
            rendered = {k: t.render(lab) for k, t in rule.labels}
            if rule.le_scale is not None and "le" in lab:
                try:
                    rendered["le"] = _scaled_le(lab["le"], rule.le_scale)
                except ValueError:
                    continue  # not a bucket bound: no canonical bucket from this series
            key = (rule.target, tuple(sorted((k, v) for k, v in rendered.items() if v)))
            slot = self._slot_of.get(key)
            if slot is None:
                slot = self._slot_of[key] = len(self._slot_keys)
                self._slot_keys.append(key)
            values.append((slot, rule.value_scale))
            exemplars.append((slot, rule.exemplar_scale))
        hit = self._memo[(name, id(labels))] = (labels, tuple(values), tuple(exemplars))
        return hit


def _family(rule: MetricRule, name: str) -> tuple[str, str]:
    """Family name and type of a canonical sample name, for ``Exposition.types``."""
    if rule.kind == "histogram":
        return rule.target, "histogram"
    if name.endswith("_total"):
        return name[:-6], "counter"
    return name, "gauge"


def for_exposition(expo: Exposition,
                   tables: Sequence[MappingTable] | None = None) -> Normaliser | None:
    """A :class:`Normaliser` of only the tables ``expo`` is detected as (None: nothing to map).

    Compile it on a target's first scrape and reuse it: a rule of one source then never
    applies to another's look-alike names (``http_requests_total`` is common).
    """
    tables = builtin_tables() if tables is None else tables
    found = set(detect_all(expo, tables))
    return Normaliser([t for t in tables if t.source in found]) if found else None


def normalise(expo: Exposition, mappings: Normaliser | Iterable[MappingTable],
              keep_source: bool = True) -> Exposition:
    """``expo`` plus canonical samples from ``mappings`` (compile once with :class:`Normaliser`
    on the hot path: a sequence of tables is compiled on every call)."""
    normaliser = mappings if isinstance(mappings, Normaliser) else Normaliser(mappings)
    return normaliser.normalise(expo, keep_source)
