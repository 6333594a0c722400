"""Read and write SLOs as OpenSLO v1 YAML (``apiVersion: openslo/v1``, ``kind: SLO``).

What trimtab writes is plain OpenSLO: a ratio indicator whose ``good`` (latency) or
``bad`` (availability) and ``total`` queries are PromQL over the agent's metrics, a
rolling ``timeWindow`` and one objective ``target``. The fields OpenSLO has no place
for (the route, the kind, the latency threshold, the bad statuses) travel as
``metadata.annotations`` under ``trimtab.dev/``. A file another tool wrote with no
such annotations is read from its queries when they have trimtab's shape
(``route="…"`` plus ``le="…"``, or ``status=~"…"``); anything else is refused with
the document and field named, never guessed.

Reading is all or nothing: one bad document and :func:`loads` raises, so a half-read
file never replaces the SLOs in use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml
from trimtab.collectors.canonical import HIST_BUCKET, REQUESTS

from .definition import SLO, SLOError, format_duration, parse_duration

API_VERSION = "openslo/v1"
PREFIX = "trimtab.dev/"
MAX_BYTES = 1 << 20  # an SLO file is a few kB; a 1 MB one is a mistake, not a promise
MAX_DOCUMENTS = 1000


def le_label(bound: float) -> str:
    """A bucket bound as client_python writes ``le`` (``0.3``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def route_matcher(slo: SLO) -> str:
    """``route="/search"``, or ``route=~"/api/.*"`` for a pattern; an SLO of one service
    also matches ``job="<service>"`` (a Prometheus job is the service, as the cockpit reads it)."""
    route = (f"route=~{_quote(slo.route_regex())}" if "*" in slo.route
             else f"route={_quote(slo.route)}")
    return f"job={_quote(slo.service)},{route}" if slo.service else route


def good_and_total(slo: SLO) -> tuple[str, str, str]:
    """(``"good"`` or ``"bad"``, its selector, the total's selector): the SLI's two counters."""
    route = route_matcher(slo)
    if slo.kind == "latency":
        assert slo.threshold_s is not None
        return ("good", f"{HIST_BUCKET}{{{route},le={_quote(le_label(slo.threshold_s))}}}",
                f"{HIST_BUCKET}{{{route},le=\"+Inf\"}}")
    return ("bad", f"{REQUESTS}{{{route},status=~{_quote(slo.status_regex())}}}",
            f"{REQUESTS}{{{route}}}")


def to_document(slo: SLO) -> dict[str, Any]:
    """One SLO as an OpenSLO v1 document (a plain dict, ready for YAML)."""
    which, part, total = good_and_total(slo)
    annotations = {f"{PREFIX}route": slo.route, f"{PREFIX}kind": slo.kind}
    if slo.kind == "latency":
        annotations[f"{PREFIX}threshold-seconds"] = repr(float(slo.threshold_s or 0.0))
    else:
        annotations[f"{PREFIX}bad-statuses"] = ",".join(slo.bad_statuses)
    spec: dict[str, Any] = {}
    if slo.description:
        spec["description"] = slo.description
    spec["service"] = slo.service or "default"
    spec["indicator"] = {
        "metadata": {"name": f"{slo.name}-sli"[:63].rstrip("-")},
        "spec": {"ratioMetric": {
            "counter": True,
            which: {"metricSource": {"type": "Prometheus", "spec": {"query": part}}},
            "total": {"metricSource": {"type": "Prometheus", "spec": {"query": total}}},
        }},
    }
    spec["timeWindow"] = [{"duration": format_duration(slo.window_s), "isRolling": True}]
    spec["budgetingMethod"] = "Occurrences"
    spec["objectives"] = [{"displayName": slo.summary(), "target": slo.objective}]
    return {"apiVersion": API_VERSION, "kind": "SLO",
            "metadata": {"name": slo.name, "displayName": slo.summary(),
                         "annotations": annotations},
            "spec": spec}


def dumps(slos: Iterable[SLO]) -> str:
    """Every SLO as one multi-document YAML text, in the order given."""
    header = "# Service level objectives (OpenSLO v1), written by trimtab.\n"
    body = yaml.safe_dump_all([to_document(s) for s in slos], sort_keys=False,
                              allow_unicode=True, default_flow_style=False)
    return header + body


def loads(text: str) -> list[SLO]:
    """Every ``kind: SLO`` document of ``text``; other kinds (Service, …) are skipped.

    Raises :class:`SLOError` naming the document (1-based) and field on the first
    problem; nothing is returned then.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SLOError(f"SLO file is over {MAX_BYTES // 1024} KiB")
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise SLOError(f"not YAML: {exc}".splitlines()[0]) from None
    except RecursionError:
        raise SLOError("not YAML: nested too deeply") from None
    if len(documents) > MAX_DOCUMENTS:
        raise SLOError(f"more than {MAX_DOCUMENTS} documents")
    out: list[SLO] = []
    names: set[str] = set()
    for index, doc in enumerate(documents, 1):
        if doc is None:
            continue
        try:
            slo = _from_document(doc)
        except SLOError as exc:
            raise SLOError(f"document {index}: {exc}") from None
        if slo is None:
            continue
        if slo.name in names:
            raise SLOError(f"document {index}: a second SLO named {slo.name!r}")
        names.add(slo.name)
        out.append(slo)
    return out


def _get(doc: Any, path: str) -> Any:
    """``doc["a"]["b"][0]`` for ``"a.b.0"``; SLOError naming the path when it is missing."""
    node = doc
    for step in path.split("."):
        if isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        else:
            raise SLOError(f"{path} is missing")
    return node


def _from_document(doc: Any) -> SLO | None:
    if not isinstance(doc, dict):
        raise SLOError("a document must be a mapping")
    if doc.get("apiVersion") != API_VERSION:
        raise SLOError(f"apiVersion {doc.get('apiVersion')!r}: only {API_VERSION} is read")
    if doc.get("kind") != "SLO":
        return None  # Service, SLI, AlertPolicy…: not ours to read
    name = _get(doc, "metadata.name")
    objectives = _get(doc, "spec.objectives")
    if not isinstance(objectives, list) or len(objectives) != 1:
        raise SLOError("spec.objectives must hold exactly one objective "
                       "(write one SLO per objective)")
    target = _get(doc, "spec.objectives.0.target")
    windows = _get(doc, "spec.timeWindow")
    if not isinstance(windows, list) or len(windows) != 1:
        raise SLOError("spec.timeWindow must hold exactly one window")
    if not isinstance(_get(doc, "spec.timeWindow.0"), dict):
        raise SLOError("spec.timeWindow entry must be a mapping with duration and isRolling")
    if _get(doc, "spec.timeWindow.0").get("isRolling") is False:
        raise SLOError("spec.timeWindow: calendar windows are not supported; use isRolling: true")
    window = parse_duration(str(_get(doc, "spec.timeWindow.0.duration")))
    method = doc["spec"].get("budgetingMethod", "Occurrences")
    if method != "Occurrences":
        raise SLOError(f"spec.budgetingMethod {method!r}: only Occurrences is supported")
    service = doc["spec"].get("service", "")
    description = doc["spec"].get("description", "")
    for field, value in (("spec.service", service), ("spec.description", description)):
        if not isinstance(value, str):
            raise SLOError(f"{field} must be text")
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, dict):
        raise SLOError("metadata.annotations must be a mapping")
    fields = (_from_annotations(annotations) if f"{PREFIX}kind" in annotations
              else _from_queries(doc))
    return SLO(name=name, objective=target, window_s=window,
               service="" if service == "default" else service,
               description=description, **fields)


def _from_annotations(annotations: dict[str, Any]) -> dict[str, Any]:
    kind = annotations.get(f"{PREFIX}kind")
    route = annotations.get(f"{PREFIX}route")
    if not isinstance(route, str):
        raise SLOError(f"metadata.annotations.{PREFIX}route is missing")
    if kind == "latency":
        raw = annotations.get(f"{PREFIX}threshold-seconds")
        try:
            threshold = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SLOError(f"metadata.annotations.{PREFIX}threshold-seconds {raw!r} "
                           "is not a number of seconds") from None
        return {"route": route, "kind": "latency", "threshold_s": threshold}
    if kind == "availability":
        raw = annotations.get(f"{PREFIX}bad-statuses", "5xx")
        if not isinstance(raw, str):
            raise SLOError(f"metadata.annotations.{PREFIX}bad-statuses must be text like 5xx,429")
        return {"route": route, "kind": "availability",
                "bad_statuses": tuple(s.strip() for s in raw.split(",") if s.strip())}
    raise SLOError(f"metadata.annotations.{PREFIX}kind {kind!r} is not latency or availability")


_ROUTE = re.compile(r'route="((?:[^"\\]|\\.)*)"')
_LE = re.compile(r'le="([^"]*)"')
_STATUS = re.compile(r'status=~"([^"]*)"')


def _from_queries(doc: dict[str, Any]) -> dict[str, Any]:
    """The route and kind from the indicator's queries, when they have trimtab's shape."""
    ratio = _get(doc, "spec.indicator.spec.ratioMetric")
    if not isinstance(ratio, dict):
        raise SLOError("spec.indicator.spec.ratioMetric must be a mapping")
    which = "good" if "good" in ratio else "bad"
    query = str(_get(ratio, f"{which}.metricSource.spec.query"))
    route = _ROUTE.search(query)
    if route is None:
        raise SLOError(f"spec.indicator {which} query names no route=\"…\" "
                       f"and the document has no {PREFIX} annotations: {query[:120]!r}")
    path = route.group(1).replace('\\"', '"').replace("\\\\", "\\")
    le = _LE.search(query)
    if which == "good" and le is not None:
        try:
            return {"route": path, "kind": "latency", "threshold_s": float(le.group(1))}
        except ValueError:
            raise SLOError(f"le={le.group(1)!r} is not a bound in seconds") from None
    status = _STATUS.search(query)
    if which == "bad" and status is not None:
        statuses = tuple(s.replace("..", "xx") for s in status.group(1).split("|"))
        return {"route": path, "kind": "availability", "bad_statuses": statuses}
    raise SLOError(f"spec.indicator {which} query is neither a latency bucket (le=\"…\") "
                   f"nor bad statuses (status=~\"…\"): {query[:120]!r}")
