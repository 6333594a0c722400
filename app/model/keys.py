"""Route keys: a route qualified by the service that serves it.

A fleet runs several services, and two of them may both serve ``/metrics`` or
``/items/{id}``: merged by name they would read as one route. Every series, row and
filter of the cockpit is keyed by a *route key*: the plain route for a target without
a service (the one unnamed service, so a one-service fleet looks as it always did), or
``"shop · /items/{id}"`` for a target of service ``shop``.

Build and take keys apart only with :func:`route_key` and :func:`split_route_key`;
never parse a key ad hoc. Service names cannot hold ``·`` (``collectors.scrape.
service_problem`` refuses it), so the first separator always ends the service.
"""

from __future__ import annotations

SERVICE_SEP = " · "


def route_key(service: str, route: str) -> str:
    """The key of ``route`` as served by ``service`` (``""``: the unnamed service)."""
    return f"{service}{SERVICE_SEP}{route}" if service else route


def split_route_key(key: str) -> tuple[str, str]:
    """``(service, route)`` of a key made by :func:`route_key` (``("", key)`` unqualified)."""
    service, sep, route = key.partition(SERVICE_SEP)
    if not sep or "/" in service or not service:
        # A plain route that happens to hold the separator (``/a · b``) stays whole:
        # no valid service name precedes it.
        return "", key
    return service, route


def service_of(key: str) -> str:
    """The service part of a route key (``""`` for the unnamed service)."""
    return split_route_key(key)[0]
