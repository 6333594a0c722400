"""Route resolution: the framework template, else configured patterns, else collapsed ids.

The number of distinct routes guessed from paths (collapsed ids) is capped so
that a flood of random paths can grow neither memory nor /metrics. Declared
routes (a framework template, found in the route table or reported in
``scope["route"]`` after routing, or a configured pattern) never count against
the cap and never fold: junk paths seen first cannot take their slots.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

UNMATCHED = "<unmatched>"
OTHER = "<other>"
MEMO_MAX = 4096  # (method, path) -> route memo; cleared when full so a flood stays bounded
# Declared routes come from the app's own code, so they are few; this bound only guards
# against an app that mints route objects per request.
DECLARED_MAX = 4096

_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,})$"
)


def collapse_ids(path: str) -> str:
    """Replace numeric, UUID and long-hex path segments with ``{id}``."""
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


class RouteResolver:
    """Maps an ASGI scope to a bounded set of route names."""

    def __init__(self, framework_routes: Sequence[Any] | None = None,
                 patterns: Iterable[str] = (), max_routes: int = 200) -> None:
        self._framework_routes = list(framework_routes or [])
        self._patterns = [(p, _compile_template(p)) for p in patterns]
        self._known: set[str] = set()  # routes guessed from paths: these share the cap
        self._declared: set[str] = set()  # templates and patterns: never folded
        self._memo: dict[tuple[str, str], tuple[str, bool]] = {}
        self.max_routes = max_routes
        self.folded = 0

    @property
    def has_framework_routes(self) -> bool:
        """True once the app's own route table is known."""
        return bool(self._framework_routes)

    def adopt(self, framework_routes: Sequence[Any]) -> None:
        """Use a route table found later (``scope["app"].routes``, FastAPI add_middleware)."""
        self._framework_routes = list(framework_routes)
        self._memo.clear()

    @property
    def templates(self) -> list[str]:
        """Every route the app declares (framework templates and configured patterns)."""
        return _templates(self._framework_routes, "") + [p for p, _ in self._patterns]

    def resolve(self, scope: MutableMapping[str, Any]) -> str:
        """Route name for a request before the app ran, counted against the cap."""
        return self._cap(*self._found(scope))

    def peek(self, scope: MutableMapping[str, Any]) -> str:
        """The route :meth:`resolve` would name, without taking a slot under the cap.

        For decisions made before the app runs (is there a TTL?): the name that is
        counted comes later, from :meth:`resolve_after`, which can see the template the
        framework matched even when its route table is hidden from us.
        """
        return self._found(scope)[0]

    def _found(self, scope: MutableMapping[str, Any]) -> tuple[str, bool]:
        key = (scope.get("method", ""), scope.get("path", "/"))
        found = self._memo.get(key)
        if found is None:
            found = self._raw_route(scope)
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[key] = found
        return found

    def resolve_after(self, scope: MutableMapping[str, Any], root_path: str = "") -> str:
        """Route name after the app ran: the framework's own match (``scope["route"]``) if any.

        ``root_path`` is the scope's root path before the app ran: when a Mount
        extended it, ``scope["route"]`` is only the inner route, so the mount
        prefix is recovered by matching the route table from the top.
        """
        route = scope.get("route")
        if route is not None and scope.get("root_path", "") != root_path:
            return self.resolve({"type": "http", "method": scope.get("method", "GET"),
                                 "path": scope.get("path", "/"), "root_path": root_path})
        template = template_of(route) if route is not None else None
        return self._cap(template, True) if template else self.resolve(scope)

    def _raw_route(self, scope: MutableMapping[str, Any]) -> tuple[str, bool]:
        """(route, declared): declared when a template or pattern named it."""
        path: str = scope.get("path", "/")
        if self._framework_routes:
            found = _match(self._framework_routes, scope)
            if found is not None:
                return found, True
            if not self._patterns:
                return UNMATCHED, True
        for template, regex in self._patterns:
            if regex.match(path):
                return template, True
        if self._patterns:
            return UNMATCHED, True
        return collapse_ids(path), False

    def _cap(self, route: str, declared: bool) -> str:
        if route == UNMATCHED or route in self._declared:
            return route
        if declared and len(self._declared) < DECLARED_MAX:
            self._declared.add(route)
            self._known.discard(route)  # guessed first, named later: give its slot back
            return route
        if route in self._known:
            return route
        if len(self._known) >= self.max_routes:
            self.folded += 1
            return OTHER
        self._known.add(route)
        return route


def _match(routes: Sequence[Any], scope: MutableMapping[str, Any]) -> str | None:
    """Template of the route that fully matches, descending into Mounts (prefix + inner)."""
    from starlette.routing import Match, Mount  # local: agent works without starlette routes

    for route in routes:
        match, child = route.matches(scope)
        if match != Match.FULL:
            continue
        if isinstance(route, Mount) and route.routes:
            inner = _match(route.routes, {**scope, **child})
            prefix = str(getattr(route, "path", "")).rstrip("/")  # path_format adds {path}
            return None if inner is None else prefix + inner
        return template_of(route)
    return None


def _templates(routes: Sequence[Any], prefix: str) -> list[str]:
    from starlette.routing import Mount

    out: list[str] = []
    for route in routes:
        if isinstance(route, Mount) and route.routes:
            out += _templates(route.routes, prefix + str(route.path).rstrip("/"))
        else:
            name = template_of(route)
            if name:
                out.append(prefix + name)
    return out


def template_of(route: Any) -> str | None:
    """A Starlette/FastAPI route's template (``/users/{id}``, converters stripped)."""
    return getattr(route, "path_format", None) or getattr(route, "path", None)


def _compile_template(template: str) -> re.Pattern[str]:
    """``/users/{id}`` → a regex matching one path segment per placeholder."""
    parts = re.split(r"(\{[^}]+\})", template)
    body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{body}$")
