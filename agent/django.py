"""Django: the WSGI middleware naming requests by the URL resolver's ``route``.

Usage, in the project's ``wsgi.py``::

    from django.core.wsgi import get_wsgi_application
    from trimtab.agent.django import instrument
    application = instrument(get_wsgi_application(), instance="api-1",
                             ttls={"/items/<int:id>/": 10.0})

A request is named ``/`` + the ``route`` of the ``ResolverMatch`` Django's resolver
returns for its path (``/items/<int:id>/``, includes joined the way Django joins them),
found before the view runs so the cache can answer first; a path nothing resolves is
``<unmatched>``. A view that raises (Django answers 500 itself) is counted in
``trimtab_http_exceptions_total`` through Django's ``got_request_exception`` signal. Every URL
pattern of the root URLconf is configurable. A per-request
``request.urlconf`` (set by a middleware) is not seen: routes come from ``ROOT_URLCONF``.
Django is not a dependency of the agent: import this module only in a Django project.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

# Django ships no type information (django-stubs is a separate project): typed at our edge.
from django.core.handlers.wsgi import get_path_info  # type: ignore[import-untyped]
from django.core.signals import got_request_exception  # type: ignore[import-untyped]
from django.urls import (  # type: ignore[import-untyped]
    Resolver404,
    URLResolver,
    get_resolver,
    resolve,
)

from .wsgi import FAILED_KEY, Environ, TrimtabWSGI, WSGIApp


class DjangoRoutes:
    """The root URLconf as a :class:`~.wsgi.RouteSource`."""

    def __init__(self, urlconf: str | None = None) -> None:
        self.urlconf = urlconf

    def templates(self) -> list[str]:
        """Every URL pattern, includes expanded (``/api/items/<int:id>/``)."""
        return sorted(set(_walk(get_resolver(self.urlconf).url_patterns, "")))

    def match(self, environ: Environ) -> str | None:
        """The route the resolver matches for this request's path; None when none does."""
        try:
            found = resolve(get_path_info(environ), self.urlconf)
        except Resolver404:
            return None
        return "/" + str(found.route)


def _walk(patterns: Sequence[Any], prefix: str) -> Iterator[str]:
    for pattern in patterns:
        route = URLResolver._join_route(prefix, str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        else:
            yield "/" + route


def instrument(application: WSGIApp, **options: Any) -> TrimtabWSGI:
    """Wrap a Django WSGI application; ``options`` go to :class:`~.wsgi.TrimtabWSGI`."""
    got_request_exception.connect(_mark_failed, weak=False,
                                  dispatch_uid="trimtab.agent.django.failed")
    return TrimtabWSGI(application, routes=DjangoRoutes(), **options)


def _mark_failed(sender: Any, request: Any = None, **_: Any) -> None:
    """Django turned a view's exception into a 500 itself: tell the middleware it raised."""
    environ = getattr(request, "environ", None)
    if environ is not None:
        environ[FAILED_KEY] = True
