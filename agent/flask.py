"""Flask: the WSGI middleware naming requests by the app's URL rules (``request.url_rule``).

Usage (rules registered later, by an app factory say, are adopted at the first request)::

    from trimtab.agent.flask import instrument
    instrument(app, instance="api-1", ttls={"/items/<int:id>": 10.0})

``instrument`` wraps ``app.wsgi_app`` in place (``app`` stays the WSGI callable gunicorn
imports) and returns the :class:`~.wsgi.TrimtabWSGI`. A request is named by the rule
Flask's URL map matches for it — the one Flask then exposes as ``request.url_rule`` —
found before the view runs so the cache can answer first; a path no rule matches is
``<unmatched>``. Flask is not a dependency of the agent: import this module only in a
Flask app.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, got_request_exception, request
from werkzeug.exceptions import HTTPException

from .wsgi import FAILED_KEY, Environ, TrimtabWSGI


class FlaskRoutes:
    """A Flask app's URL map as a :class:`~.wsgi.RouteSource`."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def templates(self) -> list[str]:
        """Every rule of the URL map (``/items/<int:id>``), static files included."""
        return sorted({rule.rule for rule in self.app.url_map.iter_rules()})

    def match(self, environ: Environ) -> str | None:
        """The rule Flask will dispatch this request to; None for 404, 405 and redirects."""
        adapter = self.app.url_map.bind_to_environ(
            environ, server_name=self.app.config.get("SERVER_NAME"))
        try:
            rule, _ = adapter.match(return_rule=True)
        except HTTPException:  # NotFound, MethodNotAllowed, RequestRedirect (strict slashes)
            return None
        return str(rule.rule)


def instrument(app: Flask, **options: Any) -> TrimtabWSGI:
    """Wrap ``app.wsgi_app`` with the agent; ``options`` go to :class:`~.wsgi.TrimtabWSGI`."""
    middleware = TrimtabWSGI(app.wsgi_app, routes=FlaskRoutes(app), **options)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    got_request_exception.connect(_mark_failed, app, weak=False)
    return middleware


def _mark_failed(sender: Flask, exception: BaseException, **_: Any) -> None:
    """Flask turned a view's exception into a 500 itself: tell the middleware it raised."""
    request.environ[FAILED_KEY] = True
