"""Route resolution: the framework template, else configured patterns, else collapsed ids.

The number of distinct routes is capped so that a flood of random paths can
grow neither memory nor /metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

UNMATCHED = "<unmatched>"
OTHER = "<other>"
MEMO_MAX = 4096  # (method, path) -> route memo; cleared when full so a flood stays bounded

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
        self._known: set[str] = set()
        self._memo: dict[tuple[str, str], str] = {}
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
        names = [template_of(r) for r in self._framework_routes]
        return [n for n in names if n] + [p for p, _ in self._patterns]

    def resolve(self, scope: MutableMapping[str, Any]) -> str:
        """Route name for a request before the app ran, counted against the cap."""
        key = (scope.get("method", ""), scope.get("path", "/"))
        raw = self._memo.get(key)
        if raw is None:
            raw = self._raw_route(scope)
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[key] = raw
        return self._cap(raw)

    def resolve_after(self, scope: MutableMapping[str, Any]) -> str:
        """Route name after the app ran: the framework's own match (``scope["route"]``) if any."""
        route = scope.get("route")
        template = template_of(route) if route is not None else None
        return self._cap(template) if template else self.resolve(scope)

    def _raw_route(self, scope: MutableMapping[str, Any]) -> str:
        path: str = scope.get("path", "/")
        if self._framework_routes:
            from starlette.routing import Match  # local: agent works without starlette routes

            for route in self._framework_routes:
                match, _ = route.matches(scope)
                if match == Match.FULL:
                    return template_of(route) or path
            if not self._patterns:
                return UNMATCHED
        for template, regex in self._patterns:
            if regex.match(path):
                return template
        if self._patterns:
            return UNMATCHED
        return collapse_ids(path)

    def _cap(self, route: str) -> str:
        if route in self._known or route == UNMATCHED:
            return route
        if len(self._known) >= self.max_routes:
            self.folded += 1
            return OTHER
        self._known.add(route)
        return route


def template_of(route: Any) -> str | None:
    """A Starlette/FastAPI route's template (``/users/{id}``, converters stripped)."""
    return getattr(route, "path_format", None) or getattr(route, "path", None)


def _compile_template(template: str) -> re.Pattern[str]:
    """``/users/{id}`` → a regex matching one path segment per placeholder."""
    parts = re.split(r"(\{[^}]+\})", template)
    body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{body}$")
