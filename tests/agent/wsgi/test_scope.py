"""scope_of: a WSGI environ described as the ASGI-shaped scope the shared core reads."""

from __future__ import annotations

from trimtab.agent.cache import cache_key, header_map
from trimtab.agent.wsgi import scope_of
from werkzeug.test import EnvironBuilder


def test_environ_to_scope() -> None:
    environ = EnvironBuilder(path="/caf%C3%A9/7", query_string="b=2&a=1", method="GET",
                             headers=[("X-Forwarded-Host", "shop"), ("Traceparent", "t")],
                             base_url="http://api.local:8080/mount",
                             environ_base={"REMOTE_ADDR": "10.1.2.3", "REMOTE_PORT": "5555"}
                             ).get_environ()
    scope = scope_of(environ)
    assert scope["path"] == "/café/7" and scope["root_path"] == "/mount"
    assert scope["query_string"] == b"b=2&a=1"  # raw and in order, as the cache keys it
    assert scope["server"] == ("api.local", 8080) and scope["scheme"] == "http"
    assert scope["client"] == ("10.1.2.3", 5555)
    headers = dict(scope["headers"])
    assert headers[b"x-forwarded-host"] == b"shop" and headers[b"traceparent"] == b"t"
    assert headers[b"host"] == b"api.local:8080"
    # Two requests the app tells apart get two cache keys.
    other = scope_of(EnvironBuilder(path="/caf%C3%A9/7", query_string="a=1&b=2",
                                    base_url="http://api.local:8080/mount").get_environ())
    assert cache_key("/r", scope, header_map(scope["headers"])) != \
        cache_key("/r", other, header_map(other["headers"]))


def test_garbage_ports_and_a_missing_peer_do_not_fail_a_request() -> None:
    environ = EnvironBuilder(path="/").get_environ()
    environ.update({"SERVER_PORT": "\u0968\u0966", "REMOTE_PORT": "9" * 5000})
    environ.pop("REMOTE_ADDR", None)
    scope = scope_of(environ)
    assert scope["server"][1] == 0 and scope["client"] is None
