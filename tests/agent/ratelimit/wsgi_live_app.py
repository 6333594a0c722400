"""A plain WSGI app behind the agent for the live rate limit tests under gunicorn.

Configured by the environment gunicorn is started with: ``TRIMTAB_TOKENS``,
``TRIMTAB_STATE_DIR`` and ``LIVE_INSTANCE``. Answers are cacheable and name the worker
process that ran the app.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from trimtab.agent.wsgi import TrimtabWSGI


def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = json.dumps({"pid": os.getpid(), "path": environ.get("PATH_INFO", "")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Cache-Control", "public, max-age=60"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = TrimtabWSGI(inner, instance=os.environ.get("LIVE_INSTANCE", "live-wsgi"),
                          patterns=("/items/{i}", "/other/{i}"))
