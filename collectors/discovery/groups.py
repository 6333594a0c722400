"""Prometheus target groups (``[{"targets": [...], "labels": {...}}, ...]``) → targets.

The format file_sd and http_sd share. Without relabelling, Prometheus scrapes
``{__scheme__}://{__address__}{__metrics_path__}`` with ``__param_<name>`` as query
parameters and names the instance after ``__address__`` unless an ``instance`` label
is given; trimtab does the same, and reads two labels of its own:

- ``__trimtab_control_url__``: the agent's control endpoint (``/_trimtab/…``) when it is
  not on the scrape address, e.g. ``http://10.0.0.5:9100``;
- ``__trimtab_kind__``: ``instance`` (default) or ``balancer``.

Both start with ``__``, so Prometheus drops them after relabelling: one file can feed
Prometheus and trimtab alike.

The target's service (its routes are keyed ``service · /route``) is its ``service``
label, else its ``job``, else the first ``__meta_…_service`` or ``__meta_…_service_name`` label in
name order
(``__meta_kubernetes_service_name``, ``__meta_consul_service``); none: the unnamed one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..scrape import service_problem

CONTROL_LABEL = "__trimtab_control_url__"
KIND_LABEL = "__trimtab_kind__"
KINDS = ("instance", "balancer")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ADDRESS = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^\s/:?#\[\]@]+)(:\d{1,5})?")


class DiscoveryError(ValueError):
    """A discovery source gave something trimtab cannot use; the message says where and why."""


@dataclass(frozen=True)
class Discovered:
    """One discovered scrape target."""

    name: str  # the ``instance`` label, or the address
    url: str  # what is scraped
    kind: str = "instance"
    control_url: str = ""  # scheme://host:port of the agent's control API
    service: str = ""  # "" = the one unnamed service
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)


def parse_groups(data: Any, where: str) -> list[tuple[list[str], dict[str, str]]]:
    """Validate Prometheus' target-group list; [(targets, labels), …]. ``where`` names the
    source in errors (a file, a URL)."""
    if not isinstance(data, list):
        raise DiscoveryError(f"{where}: expected a list of target groups, got {type(data).__name__}")
    out = []
    for i, group in enumerate(data):
        if not isinstance(group, dict):
            raise DiscoveryError(f"{where}: group {i}: expected an object with 'targets'")
        targets = group.get("targets", [])
        labels = group.get("labels") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise DiscoveryError(f"{where}: group {i}: 'targets' must be a list of host:port")
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise DiscoveryError(f"{where}: group {i}: 'labels' must map names to strings")
        for name in labels:
            if not _LABEL_NAME.fullmatch(name):
                raise DiscoveryError(f"{where}: group {i}: invalid label name {name!r}")
        for address in targets:
            if not _ADDRESS.fullmatch(address):
                raise DiscoveryError(f"{where}: group {i}: {address!r} is not host:port")
        out.append((list(targets), dict(labels)))
    return out


def to_targets(groups: Sequence[tuple[list[str], Mapping[str, str]]],
               extra: Mapping[str, str] | None = None) -> list[Discovered]:
    """Targets of ``groups`` (``extra`` labels, like ``__meta_filepath``, added to each),
    in order, the first of a name kept."""
    out: dict[str, Discovered] = {}
    for addresses, labels in groups:
        for address in addresses:
            target = discovered({**(extra or {}), **labels, "__address__": address})
            out.setdefault(target.name, target)
    return list(out.values())


def discovered(labels: Mapping[str, str]) -> Discovered:
    """One target from its labels (``__address__`` required), with Prometheus' defaults."""
    address = labels["__address__"]
    scheme = labels.get("__scheme__", "http") or "http"
    if scheme not in ("http", "https"):
        raise DiscoveryError(f"{address}: __scheme__ must be http or https, got {scheme!r}")
    path = labels.get("__metrics_path__", "/metrics") or "/metrics"
    if not path.startswith("/"):
        path = "/" + path
    params = {k[len("__param_"):]: v for k, v in labels.items() if k.startswith("__param_")}
    url = f"{scheme}://{address}{path}" + (f"?{urlencode(params)}" if params else "")
    kind = labels.get(KIND_LABEL, "instance") or "instance"
    if kind not in KINDS:
        raise DiscoveryError(f"{address}: {KIND_LABEL} must be one of {', '.join(KINDS)}, "
                             f"got {kind!r}")
    control = labels.get(CONTROL_LABEL, "").rstrip("/")
    if control:
        parts = urlsplit(control)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.username:
            raise DiscoveryError(f"{address}: {CONTROL_LABEL} must be http(s)://host:port, "
                                 f"got {control!r}")
    name = labels.get("instance") or address
    service = service_label(labels)
    problem = service_problem(service)
    if problem is not None:
        raise DiscoveryError(f"{address}: {problem}")
    return Discovered(name, url, kind, control, service, dict(labels))


def service_label(labels: Mapping[str, str]) -> str:
    """The service a target's labels name: ``service``, else ``job``, else the first
    ``__meta_…_service`` / ``__meta_…_service_name`` label by name (``""`` when none has a
    value; ``__meta_kubernetes_service_annotation_…`` and the like are not names)."""
    for name in ("service", "job"):
        if labels.get(name):
            return labels[name]
    meta = sorted(k for k in labels if k.startswith("__meta_") and labels[k]
                  and k.endswith(("_service", "_service_name")))
    return labels[meta[0]] if meta else ""
