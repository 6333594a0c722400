"""The WSGI middleware in-process: Flask routes, cache, traces, metrics equal to the ASGI agent's.

Real Flask and Starlette apps; httpx's WSGI and ASGI transports stand in for the server
only (the gunicorn tests in test_gunicorn.py run the real one).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from trimtab.agent.flask import instrument
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.agent.wsgi import TrimtabWSGI, WSGIRefused
from werkzeug.test import EnvironBuilder

from tests.agent.wsgi.apps import ITEMS_ASGI, ITEMS_FLASK, flask_app, starlette_app

TOKENS = "alice:write:w-secret-wsgi,bob:read:r-secret-wsgi"
W = {"authorization": "Bearer w-secret-wsgi"}
R = {"authorization": "Bearer r-secret-wsgi"}


def flask_agent(**options: Any) -> tuple[TrimtabWSGI, httpx.Client]:
    app = flask_app()
    agent = instrument(app, instance="wsgi-1", tokens=TOKENS, **options)
    client = httpx.Client(transport=httpx.WSGITransport(app=app, raise_app_exceptions=False),
                          base_url="http://api")
    return agent, client


def families(text: str) -> dict[str, tuple[str, frozenset[str], tuple[str, ...]]]:
    """name -> (type, label names of its samples, histogram bounds) of an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        labels = frozenset(k for s in fam.samples for k in s.labels if k != "le")
        bounds = tuple(sorted({s.labels["le"] for s in fam.samples if "le" in s.labels},
                              key=float))
        out[fam.name] = (fam.type, labels, bounds)
    return out


def test_metric_families_equal_the_asgi_agents() -> None:
    """Names, types, label names and bucket bounds: the cockpit reads both the same way."""
    wsgi, client = flask_agent(ttls={ITEMS_FLASK: 30.0})
    asgi = TrimtabMiddleware(starlette_app(), instance="asgi-1", tokens=TOKENS,
                             ttls={ITEMS_ASGI: 30.0})
    script = [("GET", "/items/1"), ("GET", "/items/1"), ("HEAD", "/items/2"),
              ("GET", "/nope"), ("POST", "/orders"), ("GET", "/boom"),
              ("GET", "/items/3", {"authorization": "Bearer x"})]
    for method, path, *headers in script:
        client.request(method, path, headers=headers[0] if headers else None)
    client.get("/_trimtab/config")  # a 401: the unauthenticated counter moves on both

    async def drive() -> str:
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as aclient:
            for method, path, *headers in script:
                await aclient.request(method, path, headers=headers[0] if headers else None)
            await aclient.get("/_trimtab/config")
            return (await aclient.get("/metrics")).text

    asgi_text = asyncio.run(drive())
    wsgi_text = client.get("/metrics").text
    assert families(wsgi_text) == families(asgi_text)
    # And the same traffic gave the same samples, route names aside.
    def samples(text: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        out = []
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name.endswith(("_sum", "_created")) or "seconds_bucket" in s.name:
                    continue  # timing differs run to run
                labels = {k: v.replace(ITEMS_FLASK, ITEMS_ASGI) for k, v in s.labels.items()
                          if k != "instance"}
                if s.name.startswith("trimtab_cache_memory"):
                    continue  # entry sizes differ with the frameworks' headers
                out.append((s.name, tuple(sorted(labels.items())), s.value))
        return sorted(out)

    wsgi_samples = samples(wsgi_text)
    assert (("trimtab_cache_requests_total",
             (("reason", ""), ("result", "hit"), ("route", ITEMS_ASGI)), 1.0)) in wsgi_samples
    asgi_samples = samples(asgi_text)
    size_names = {"trimtab_http_response_size_bytes_bucket", "trimtab_http_response_size_bytes_count"}
    # Body sizes differ (Flask's JSON has a newline and different spacing): compared by count.
    assert [s for s in wsgi_samples if s[0] not in size_names and "size" not in s[0]] == \
        [s for s in asgi_samples if s[0] not in size_names and "size" not in s[0]]


def test_routes_are_flask_rules_and_junk_paths_take_no_slot() -> None:
    wsgi, client = flask_agent(max_routes=3)
    assert set(wsgi.config.known_routes) >= {ITEMS_FLASK, "/orders", "/boom", "/session"}
    for n in range(20):
        assert client.get(f"/junk/{n}/x{n}").status_code == 404
    assert client.get("/items/7").status_code == 200
    text = client.get("/metrics").text
    assert f'route="{ITEMS_FLASK}"' in text
    assert 'route="<unmatched>"' in text and 'route="<other>"' not in text
    assert "/junk" not in text


def test_cache_follows_live_ttls_and_the_safety_rules() -> None:
    wsgi, client = flask_agent()
    assert "x-trimtab-cache" not in client.get("/items/1").headers  # no TTL: not cached
    etag = client.get("/_trimtab/config", headers=R).headers["etag"]
    r = client.patch("/_trimtab/config", headers={**W, "if-match": etag},
                     json={"routes": {ITEMS_FLASK: {"ttl": 60}, "/session": {"ttl": 60}},
                           "reason": "test"})
    assert r.status_code == 200, r.text
    first, second = client.get("/items/1"), client.get("/items/1")
    assert first.headers["x-trimtab-cache"] == "miss"
    assert second.headers["x-trimtab-cache"] == "hit" and second.content == first.content
    assert client.head("/items/1").content == b""
    assert client.get("/items/2").headers["x-trimtab-cache"] == "miss"  # another key
    # A response setting a cookie is never stored; a request with credentials bypasses.
    for _ in range(2):
        client.cookies.clear()  # the jar would send the cookie back: a bypass, not a miss
        assert client.get("/session").headers["x-trimtab-cache"] == "miss"
    client.cookies.clear()
    assert "x-trimtab-cache" not in client.get("/items/1", headers={"cookie": "a=b"}).headers
    text = client.get("/metrics").text
    assert (f'trimtab_cache_requests_total{{reason="credentials",result="bypass",'
            f'route="{ITEMS_FLASK}"}} 1.0') in text
    # The what-if simulation saw the cacheable requests (keyed by path and query).
    whatif = client.get("/_trimtab/cache/whatif", headers=R, params={"route": ITEMS_FLASK})
    assert whatif.status_code == 200 and whatif.json()["current_ttl"] == 60.0, whatif.text
    # Invalidation through the control API drops the entry.
    assert client.post("/_trimtab/cache/invalidate", headers=W,
                       json={"route": ITEMS_FLASK}).json()["dropped"] >= 2
    assert client.get("/items/1").headers["x-trimtab-cache"] == "miss"


def test_traces_join_the_callers_trace_and_keep_child_spans() -> None:
    wsgi, client = flask_agent()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client.get("/items/4", headers={"traceparent": parent})
    traces = client.get("/_trimtab/traces", headers=R).json()["traces"]
    assert len(traces) == 1
    trace = traces[0]
    assert trace["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert trace["parent_id"] == "b7ad6b7169203331"
    assert (trace["route"], trace["method"], trace["status"]) == (ITEMS_FLASK, "GET", 200)
    assert [c["name"] for c in trace["children"]] == ["db.query", "handler"]
    assert trace["children"][0]["tags"] == {"table": "items"}


def test_exceptions_streams_and_in_flight() -> None:
    wsgi, client = flask_agent()
    assert client.get("/boom").status_code == 500
    assert len(client.get("/stream").content) == 50_000
    text = client.get("/metrics").text
    assert 'trimtab_http_exceptions_total{route="/boom"} 1.0' in text
    assert 'trimtab_http_requests_total{method="GET",route="/boom",status="500"} 1.0' in text
    assert 'trimtab_http_response_size_bytes_sum{method="GET",route="/stream"} 50000.0' in text
    assert "trimtab_http_requests_in_flight 0.0" in text


def test_a_stream_closed_early_is_a_499() -> None:
    """The server closes the body before the end (client gone): counted as 499, once."""
    wsgi, _ = flask_agent()
    environ = EnvironBuilder(path="/stream").get_environ()
    started: list[str] = []
    body = wsgi(environ, lambda status, headers, exc_info=None: started.append(status))
    chunks = iter(body)
    next(chunks)
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    text = wsgi.metrics_payload("")[0].decode()
    assert 'trimtab_http_requests_total{method="GET",route="/stream",status="499"} 1.0' in text
    assert "trimtab_http_requests_in_flight 0.0" in text


def test_a_multiprocess_server_without_state_dir_is_refused(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("TRIMTAB_STATE_DIR", raising=False)
    wsgi, _ = flask_agent()
    for path in ("/items/1", "/metrics", "/_trimtab/config"):  # nothing one worker speaks for
        environ = EnvironBuilder(path=path, method="PATCH" if "config" in path else "GET",
                                 headers=W).get_environ()
        environ["wsgi.multiprocess"] = True
        with pytest.raises(WSGIRefused, match="state dir"):
            wsgi(environ, lambda *a: None)
    assert wsgi.journal.list() == []
    shared, _ = flask_agent(state_dir=str(tmp_path))
    environ = EnvironBuilder(path="/items/1").get_environ()
    environ["wsgi.multiprocess"] = True
    assert b"".join(shared(environ, lambda *a: None)) == b'{"id":1}\n'


def test_an_enforced_rate_limit_answers_429_before_the_view() -> None:
    wsgi, client = flask_agent()
    etag = client.get("/_trimtab/config", headers=R).headers["etag"]
    limit = {"route": ITEMS_FLASK, "key": "header:x-api-key", "rate": 1, "burst": 2,
             "mode": "enforce"}
    r = client.patch("/_trimtab/config", headers={**W, "if-match": etag},
                     json={"limits": {"per-key": limit}, "reason": "greedy client"})
    assert r.status_code == 200, r.text
    greedy = [client.get("/items/1", headers={"x-api-key": "k1"}) for _ in range(4)]
    assert [g.status_code for g in greedy] == [200, 200, 429, 429]
    assert int(greedy[-1].headers["retry-after"]) >= 1
    assert client.get("/items/1", headers={"x-api-key": "k2"}).status_code == 200  # own bucket
    traces = client.get("/_trimtab/traces", headers=R).json()["traces"]
    refused = [t for t in traces if t["status"] == 429]
    assert len(refused) == 2 and all(t["route"] == ITEMS_FLASK for t in refused)
    assert all("handler" not in [c["name"] for c in t["children"]] for t in refused)
    text = client.get("/metrics").text
    assert (f'trimtab_http_requests_total{{method="GET",route="{ITEMS_FLASK}",status="429"}} '
            "2.0") in text


def test_rules_added_after_instrument_become_configurable_at_the_first_request() -> None:
    """Blueprints registered after ``instrument`` (the usual app-factory order) are not lost."""
    app = flask_app()
    instrument(app, instance="late", tokens=TOKENS)

    @app.get("/late/<int:n>")
    def late(n: int) -> str:
        return str(n)

    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://api")
    doc = client.get("/_trimtab/config", headers=R)
    assert "/late/<int:n>" in doc.json()["routes"]
    r = client.patch("/_trimtab/config", headers={**W, "if-match": doc.headers["etag"]},
                     json={"routes": {"/late/<int:n>": {"ttl": 5}}})
    assert r.status_code == 200, r.text
    assert [client.get("/late/1").headers["x-trimtab-cache"] for _ in range(2)] == \
        ["miss", "hit"]
