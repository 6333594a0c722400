"""Flask and Django are optional: the WSGI agent runs a plain WSGI app without either."""

from __future__ import annotations

import subprocess
import sys

PROBE = '''
import sys
for name in ("flask", "django", "werkzeug"):
    sys.modules[name] = None  # as if not installed: importing them raises ImportError
from wsgiref.util import setup_testing_defaults
from trimtab.agent.wsgi import TrimtabWSGI

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

agent = TrimtabWSGI(app, instance="plain", patterns=("/items/{id}",), tokens="")
for path in ("/items/7", "/metrics"):
    environ = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    seen = []
    # Iterated to the end, never closed (as a careless server would): still recorded.
    body = b"".join(agent(environ, lambda status, headers, exc=None: seen.append(status)))
    assert seen == ["200 OK"], seen
print(body.decode())
try:
    import trimtab.agent.flask
except ImportError as exc:
    print("flask helper needs flask:", isinstance(exc, ImportError))
'''


def test_the_wsgi_agent_needs_neither_flask_nor_django() -> None:
    out = subprocess.run([sys.executable, "-I", "-c", PROBE], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert 'trimtab_http_requests_total{method="GET",route="/items/{id}",status="200"} 1.0' \
        in out.stdout
    assert "flask helper needs flask: True" in out.stdout
