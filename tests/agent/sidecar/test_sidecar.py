"""The sidecar in front of services that are not Python: a real nginx (apt) serving a few
locations, including a 20 MB file and a cacheable one, plus a slow and a streaming upstream.
The sidecar runs as its real process (``python -m trimtab.agent sidecar``); every request
goes over sockets. Bad input first: what the sidecar refuses to start with."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.agent.sidecar import (
    RoutesError,
    forward_headers,
    order_templates,
    routes_from_file,
    routes_from_openapi,
)

from tests.conftest import require_binary
from tests.support import ROOT, start_uvicorn, wait_for

TOKENS = "alice:write:w-secret,bob:read:r-secret"
W = {"authorization": "Bearer w-secret"}
BIG = 20 * 1024 * 1024


# --------------------------------------------------------------------- bad input first

@pytest.mark.parametrize(("args", "says"), [
    (["--upstream", "ftp://x"], "http(s)://host"),
    (["--upstream", "http://"], "http(s)://host"),
    (["--upstream", "http://127.0.0.1:1", "--ttl", "search=5"], "ROUTE=SECONDS"),
    (["--upstream", "http://127.0.0.1:1", "--ttl", "/search=-5"], "0 to 86400"),
    (["--upstream", "http://127.0.0.1:1", "--ttl", "/search=nan"], "0 to 86400"),
    (["--upstream", "http://127.0.0.1:1", "--routes", "/nonexistent/routes.txt"],
     "No such file"),
    (["--upstream", "http://127.0.0.1:1", "--openapi", "/nonexistent/openapi.json"],
     "No such file"),
])
def test_the_sidecar_refuses_to_start_on_bad_input(args: list[str], says: str) -> None:
    port = str(free_port())  # were it to start, it must not find another test's port
    done = subprocess.run([sys.executable, "-m", "trimtab.agent", "sidecar", "--port", port,
                           *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0
    assert says.lower() in done.stderr.lower(), done.stderr


@pytest.mark.parametrize("text", ["items/{id}\n", "/a b\n", "/x{id\n", "# only a comment\n"])
def test_a_bad_routes_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "routes.txt"
    path.write_text(text)
    with pytest.raises(RoutesError):
        routes_from_file(path)


@pytest.mark.parametrize("doc", [{}, {"paths": []}, {"paths": {"items": {}}}, [1, 2]])
def test_a_bad_openapi_document_is_refused(doc: object) -> None:
    with pytest.raises(RoutesError):
        routes_from_openapi(doc)  # type: ignore[arg-type]


def test_templates_from_openapi_literal_first_and_server_prefix() -> None:
    doc = {"openapi": "3.0.0", "servers": [{"url": "https://api.example/v1/"}],
           "paths": {"/items/{id}": {}, "/items/search": {}, "/health": {}}}
    assert routes_from_openapi(doc) == ["/v1/health", "/v1/items/search", "/v1/items/{id}"]
    assert routes_from_openapi({"swagger": "2.0", "basePath": "/api", "paths": {"/x": {}}}) \
        == ["/api/x"]
    assert order_templates(["/a/{x}/b", "/a/c/{y}", "/a/c/d"]) == ["/a/c/d", "/a/c/{y}",
                                                                  "/a/{x}/b"]


def test_hop_by_hop_headers_stay_on_their_hop() -> None:
    headers = [(b"Connection", b"close, X-Secret-Hop"), (b"X-Secret-Hop", b"1"),
               (b"Keep-Alive", b"5"), (b"Transfer-Encoding", b"chunked"), (b"TE", b"trailers"),
               (b"Upgrade", b"h2c"), (b"Accept", b"*/*"), (b"Host", b"shop.example")]
    assert forward_headers(headers) == [(b"Accept", b"*/*"), (b"Host", b"shop.example")]


# --------------------------------------------------------------------- real processes

NGINX_CONF = """\
{user}
worker_processes 1;
error_log {work}/nginx-error.log;
pid {work}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    log_format trace '$request_uri|$http_traceparent|$http_x_forwarded_for|$http_host';
    access_log {work}/access.log trace;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {work}/www;
        location /static/ {{ }}
        location ~ ^/items/[0-9]+$ {{
            default_type application/json;
            add_header Cache-Control "public, max-age=60";
            return 200 '{{"item": "$uri"}}';
        }}
        location = /search {{ default_type text/plain; return 200 "results for $arg_q"; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    binary = require_binary("nginx")
    work = tmp_path_factory.mktemp("nginx")
    (work / "www" / "static").mkdir(parents=True)
    (work / "www" / "static" / "big.bin").write_bytes(os.urandom(BIG))
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(NGINX_CONF.format(user=user, work=work, port=port))
    proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf"),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                            stderr=open(work / "nginx-stderr.log", "wb"))  # noqa: SIM115
    try:
        wait_http(f"http://127.0.0.1:{port}/search?q=ready", proc)
        yield f"http://127.0.0.1:{port}", work
    finally:
        stop_all([proc])


def _sidecar(work: Path, upstream: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "TRIMTAB_TOKENS": TOKENS}
    log = open(work / f"sidecar-{port}.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen([sys.executable, "-m", "trimtab.agent", "sidecar", "--port", str(port),
                             "--upstream", upstream, "--instance", "shop", *extra],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/metrics", proc)
    except BaseException:
        stop_all([proc])
        raise
    return proc, base


@pytest.fixture(scope="module")
def sidecar(nginx, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    upstream, work = nginx
    routes = work / "routes.txt"
    routes.write_text("# the service's routes\n/items/{id}\n/search\n/static/big.bin\n")
    proc, base = _sidecar(work, upstream, "--routes", str(routes),
                          "--state-dir", str(tmp_path_factory.mktemp("state")))
    try:
        yield base, work
    finally:
        stop_all([proc])


def _access(work: Path) -> list[str]:
    path = work / "access.log"
    return path.read_text().splitlines() if path.exists() else []


def test_routes_metrics_and_traceparent_in_front_of_nginx(sidecar) -> None:
    base, work = sidecar
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.get("/items/42", headers={"host": "shop.example", "x-forwarded-for": "10.0.0.9"})
        assert r.status_code == 200 and r.json() == {"item": "/items/42"}
        assert c.get("/search", params={"q": "lamp"}).text == "results for lamp"
        assert c.get("/nowhere/7").status_code == 404  # nginx's answer, passed on
        traces = c.get("/_trimtab/traces", headers=W).json()
        metrics = c.get("/metrics").text
    assert 'route="/items/{id}"' in metrics and 'route="/search"' in metrics
    assert 'route="<unmatched>"' in metrics  # a path no template names folds
    line = next(x for x in _access(work) if x.startswith("/items/42|"))
    uri, traceparent, forwarded, host = line.split("|")
    assert host == "shop.example"  # the Host the client sent
    # Appended, not replaced; and the client is the peer, not what its header claims.
    assert forwarded == "10.0.0.9, 127.0.0.1"
    trace = next(t for t in traces["traces"] if t["route"] == "/items/{id}")
    assert traceparent.split("-")[1] == trace["trace_id"]  # the request's span went upstream


def test_a_large_file_streams_through_whole(sidecar, nginx) -> None:
    base, _ = sidecar
    _, work = nginx
    digest = hashlib.sha256()
    size = 0
    with httpx.Client(timeout=60) as c, c.stream("GET", base + "/static/big.bin") as r:
        assert r.status_code == 200 and int(r.headers["content-length"]) == BIG
        for chunk in r.iter_raw():
            digest.update(chunk)
            size += len(chunk)
    assert size == BIG
    assert digest.hexdigest() == hashlib.sha256(
        (work / "www" / "static" / "big.bin").read_bytes()).hexdigest()


def test_a_live_ttl_caches_the_upstream_answer(sidecar) -> None:
    base, work = sidecar
    with httpx.Client(base_url=base, timeout=30) as c:
        etag = c.get("/_trimtab/config", headers=W).headers["etag"]
        r = c.patch("/_trimtab/config", headers={**W, "if-match": etag},
                    json={"routes": {"/items/{id}": {"ttl": 60}}, "reason": "sidecar test"})
        assert r.status_code == 200, r.text
        bad = c.patch("/_trimtab/config", headers={**W, "if-match": r.headers["etag"]},
                      json={"routes": {"/items/{id}": {"ttl": -5}}, "reason": "typo"})
        assert bad.status_code == 422
        before = sum(1 for x in _access(work) if x.startswith("/items/7|"))
        first, second = c.get("/items/7"), c.get("/items/7")
        journal = c.get("/_trimtab/journal", headers=W).json()
    assert first.headers["x-trimtab-cache"] == "miss" and second.headers["x-trimtab-cache"] == "hit"
    assert second.json() == first.json()
    wait_for(lambda: sum(1 for x in _access(work) if x.startswith("/items/7|")) == before + 1,
             what="nginx logged the one miss")
    results = [e["result"] for e in journal["entries"]]
    assert "accepted" in results and "refused" in results


def test_slow_dead_and_streaming_upstreams(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    upstream, port = start_uvicorn("tests.agent.sidecar.upstream_apps:app", tmp_path / "up.log",
                                   env={**os.environ, "STREAM_FLAG": str(flag)})
    procs = [upstream]
    try:
        wait_http(f"http://127.0.0.1:{port}/echo", upstream)
        side, base = _sidecar(tmp_path, f"http://127.0.0.1:{port}", "--upstream-timeout", "0.5")
        procs.append(side)
        dead, dead_base = _sidecar(tmp_path, f"http://127.0.0.1:{free_port()}")
        procs.append(dead)
        with httpx.Client(timeout=30) as c:
            slow = c.get(base + "/slow", params={"s": "3"})
            assert slow.status_code == 504 and "did not answer in time" in slow.json()["error"]
            refused = c.get(dead_base + "/anything")
            assert refused.status_code == 502 and "unreachable" in refused.json()["error"]
            body = os.urandom(3 * 1024 * 1024)
            echoed = c.post(base + "/echo", content=body, headers={"connection": "close"})
            assert echoed.json()["length"] == len(body)
            # "close" stayed on the client's hop (HTTP/1.1 keeps the upstream's alive unsaid)
            assert "close" not in echoed.json()["headers"].get("connection", "")
            with c.stream("GET", base + "/stream") as r:
                chunks = r.iter_raw()
                first = next(chunks)
                # The upstream is still holding the stream open: the first event came through
                # before the second exists.
                assert first.startswith(b"data: first") and not flag.exists()
                flag.write_text("go")
                rest = b"".join(chunks)
            assert b"data: second" in first + rest
    finally:
        stop_all(procs)
