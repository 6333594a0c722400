"""Discovery sources read what Prometheus reads: file_sd files (JSON, YAML), HTTP SD, DNS.

Real files, a real HTTP server, a real dnsmasq on a loopback port; bad input is an error
naming the source, and the runner keeps the last good list while a source fails.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from trimtab.collectors.discovery.config import from_table
from trimtab.collectors.discovery.dns_sd import DnsSD
from trimtab.collectors.discovery.file_sd import FileSD
from trimtab.collectors.discovery.groups import Discovered, DiscoveryError
from trimtab.collectors.discovery.http_sd import HttpSD
from trimtab.collectors.discovery.runner import DiscoveryRunner, refresh_once

from tests.collectors.discovery.dnsmasq import dnsmasq
from tests.support import wait_for

GROUPS = [
    {"targets": ["127.0.0.1:8001", "127.0.0.1:8002"],
     "labels": {"job": "api", "__meta_zone": "a"}},
    {"targets": ["10.0.0.5:9100"],
     "labels": {"__scheme__": "https", "__metrics_path__": "/_trimtab/metrics",
                "__trimtab_kind__": "balancer", "__trimtab_control_url__": "https://10.0.0.5:9443/",
                "instance": "lb-1", "__param_format": "text"}},
]
YAML = """\
# the same groups, as a Prometheus user writes them
- targets: ["127.0.0.1:8001", "127.0.0.1:8002"]
  labels: {job: api, __meta_zone: a}
- targets:
    - 10.0.0.5:9100
  labels:
    __scheme__: https
    __metrics_path__: /_trimtab/metrics
    __trimtab_kind__: balancer
    __trimtab_control_url__: https://10.0.0.5:9443/
    instance: lb-1
    __param_format: text
"""


def _discover(source: object) -> list[Discovered]:
    return asyncio.run(source.discover())  # type: ignore[attr-defined]


def _expected(where: str, meta: str) -> list[tuple[str, str, str, str]]:
    del where, meta
    return [("127.0.0.1:8001", "http://127.0.0.1:8001/metrics", "instance", ""),
            ("127.0.0.1:8002", "http://127.0.0.1:8002/metrics", "instance", ""),
            ("lb-1", "https://10.0.0.5:9100/_trimtab/metrics?format=text", "balancer",
             "https://10.0.0.5:9443")]


def _rows(found: list[Discovered]) -> list[tuple[str, str, str, str]]:
    return [(t.name, t.url, t.kind, t.control_url) for t in found]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_file_sd_reads_prometheus_groups(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"fleet{suffix}"
    path.write_text(json.dumps(GROUPS) if suffix == ".json" else YAML)
    found = _discover(FileSD([str(tmp_path / f"*{suffix}")]))
    assert _rows(found) == _expected(str(path), "__meta_filepath")
    assert found[0].labels["__meta_filepath"] == str(path)
    assert found[0].labels["__meta_zone"] == "a" and found[0].labels["job"] == "api"


def test_file_sd_rereads_a_changed_file_and_drops_a_removed_one(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.yml"
    one.write_text(json.dumps([{"targets": ["127.0.0.1:1"]}]))
    two.write_text("- targets: ['127.0.0.1:2']\n")
    source = FileSD([str(tmp_path / "*.json"), str(tmp_path / "*.yml")])
    assert [t.name for t in _discover(source)] == ["127.0.0.1:1", "127.0.0.1:2"]
    one.write_text(json.dumps([{"targets": ["127.0.0.1:1", "127.0.0.1:3"]}]))
    two.unlink()
    assert [t.name for t in _discover(source)] == ["127.0.0.1:1", "127.0.0.1:3"]


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    ('{"targets": ["a:1"]}', "expected a list"),
    ('[{"targets": ["http://a:1/metrics"]}]', "is not host:port"),
    ('[{"targets": ["a:1"], "labels": {"bad-name": "x"}}]', "invalid label name"),
    ('[{"targets": ["a:1"], "labels": {"__scheme__": "ftp"}}]', "__scheme__"),
    ('[{"targets": ["a:1"], "labels": {"__trimtab_kind__": "db"}}]', "__trimtab_kind__"),
    ('[{"targets": ["a:1"], "labels": {"__trimtab_control_url__": "a:1"}}]', "control_url"),
])
def test_file_sd_bad_content_names_the_file(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DiscoveryError, match=words) as err:
        _discover(FileSD([str(path)]))
    assert str(path) in str(err.value) or "a:1" in str(err.value)


def test_the_runner_keeps_the_last_good_list_while_a_source_fails(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps([{"targets": ["127.0.0.1:1"]}]))
    updates: list[tuple[str, list[Discovered] | None, str]] = []
    source = FileSD([str(path)], refresh=0.05, name="files")
    asyncio.run(refresh_once(source, lambda *u: updates.append(u)))
    path.write_text("[{")
    asyncio.run(refresh_once(source, lambda *u: updates.append(u)))
    assert updates[0][1] is not None and updates[0][2] == ""
    assert updates[1][1] is None and "not valid JSON" in updates[1][2]
    runner = DiscoveryRunner([source], lambda *u: updates.append(u)).start()
    try:
        path.write_text(json.dumps([{"targets": ["127.0.0.1:2"]}]))
        wait_for(lambda: updates[-1][1] and updates[-1][1][0].name == "127.0.0.1:2",
                 timeout=30, what="the runner to see the rewritten file")
    finally:
        runner.stop()


# ---------------------------------------------------------------- HTTP SD

class _SD(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        status, kind, body = self.answers.get(self.path, (404, "text/html", b"<html>no</html>"))
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sd_server() -> Iterator[str]:
    handler = type("H", (_SD,), {"answers": {
        "/sd": (200, "application/json", json.dumps(GROUPS).encode()),
        "/text": (200, "text/plain", json.dumps(GROUPS).encode()),
        "/broken": (200, "application/json", b"[{"),
    }})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_sd_reads_the_file_sd_list(sd_server: str) -> None:
    found = _discover(HttpSD(f"{sd_server}/sd"))
    assert _rows(found) == _expected("", "__meta_url")
    assert found[0].labels["__meta_url"] == f"{sd_server}/sd"


@pytest.mark.parametrize("path, words", [
    ("/missing", "HTTP 404 Not Found — not a Prometheus /metrics endpoint (got text/html)"),
    ("/text", "expected application/json, got text/plain"),
    ("/broken", "not valid JSON"),
])
def test_http_sd_refuses_what_prometheus_refuses(sd_server: str, path: str, words: str) -> None:
    with pytest.raises(DiscoveryError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _discover(HttpSD(sd_server + path))


def test_http_sd_dead_port_reads_connection_refused() -> None:
    from trimtab.agent.procs import free_port

    with pytest.raises(DiscoveryError, match="connection refused"):
        _discover(HttpSD(f"http://127.0.0.1:{free_port()}/sd"))


# ---------------------------------------------------------------- DNS

def test_dns_a_records_follow_the_hosts_file(tmp_path: Path) -> None:
    hosts = [("127.0.0.2", "api.fleet.test"), ("127.0.0.3", "api.fleet.test"),
             ("::1", "api.fleet.test")]
    with dnsmasq(tmp_path, hosts) as server:
        a = DnsSD(["api.fleet.test"], "A", 8000, server.nameserver)
        aaaa = DnsSD(["api.fleet.test"], "AAAA", 8000, server.nameserver)
        assert [t.name for t in _discover(a)] == ["127.0.0.2:8000", "127.0.0.3:8000"]
        assert [t.url for t in _discover(aaaa)] == ["http://[::1]:8000/metrics"]
        assert _discover(a)[0].labels["__meta_dns_name"] == "api.fleet.test"
        server.write_hosts([("127.0.0.4", "api.fleet.test")])
        server.reload()
        wait_for(lambda: [t.name for t in _discover(a)] == ["127.0.0.4:8000"], timeout=30,
                 what="the new A record after SIGHUP")
        server.write_hosts([])
        server.reload()
        wait_for(lambda: _discover(a) == [], timeout=30, what="no A record: no targets")


def test_dns_srv_records_resolve_their_hosts(tmp_path: Path) -> None:
    hosts = [("127.0.0.1", "h1.fleet.test"), ("127.0.0.1", "h2.fleet.test")]
    srv = ["_api._tcp.fleet.test,h1.fleet.test,8001", "_api._tcp.fleet.test,h2.fleet.test,8002",
           "_api._tcp.fleet.test,nowhere.fleet.test,8003"]
    with dnsmasq(tmp_path, hosts, srv) as server:
        found = _discover(DnsSD(["_api._tcp.fleet.test"], "SRV", nameserver=server.nameserver))
    assert sorted(t.name for t in found) == ["127.0.0.1:8001", "127.0.0.1:8002",
                                             "nowhere.fleet.test:8003"]
    one = next(t for t in found if t.name == "127.0.0.1:8002")
    assert one.labels["__meta_dns_srv_record_target"] == "h2.fleet.test."
    assert one.labels["__meta_dns_srv_record_port"] == "8002"


def test_dns_server_that_does_not_answer_is_an_error() -> None:
    from trimtab.agent.procs import free_port

    source = DnsSD(["api.fleet.test"], "A", 8000, f"127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(DiscoveryError, match="api.fleet.test"):
        _discover(source)


@pytest.mark.parametrize("table, words", [
    ({"kind": "consul"}, "kind: must be one of"),
    ({"kind": "file_sd"}, "files: must be a non-empty list"),
    ({"kind": "file_sd", "files": ["x.txt"]}, "must end in .json"),
    ({"kind": "file_sd", "files": ["x.json"], "refesh": 5}, "unknown key.*refesh"),
    ({"kind": "dns", "names": ["a.test"], "type": "A"}, "needs the port"),
    ({"kind": "dns", "names": ["a.test"], "type": "MX"}, "type: must be one of"),
    ({"kind": "dns", "names": ["a.test"], "nameserver": "dns.example"}, "IP address"),
    ({"kind": "http_sd", "url": "sd.internal/x"}, "http_sd url"),
    ({"kind": "http_sd", "url": "http://u:p@sd/x"}, "credentials"),
    ({"kind": "http_sd", "url": "http://sd/x", "interval": 1, "timeout": 2}, "timeout/interval"),
    ({"kind": "http_sd", "url": "http://sd/x", "refresh": "often"}, "refresh: must be a number"),
])
def test_discovery_tables_refuse_bad_input(tmp_path: Path, table: dict, words: str) -> None:
    with pytest.raises(DiscoveryError, match=words):
        from_table(table, 1, tmp_path)


def test_discovery_table_defaults_and_relative_files(tmp_path: Path) -> None:
    config = from_table({"kind": "file_sd", "files": ["fleet/*.json"], "interval": 2}, 1, tmp_path)
    assert config.source.name == "file_sd-1" and config.source.refresh == 5.0
    assert config.source.files == [str(tmp_path / "fleet/*.json")]  # type: ignore[attr-defined]
    assert (config.interval, config.timeout) == (2.0, 1.6)
