"""Targets that follow the fleet (issue 17.4): a real demo fleet scaled 3 → 6 → 2 instances,
once by rewriting a Prometheus file_sd file and once by changing DNS (a real dnsmasq,
re-read on SIGHUP), both declared as ``[[discovery]]`` tables of the targets file.

At each step the model and the Fleet page of a real window show exactly the instances
listed, up; the ones dropped read "gone" (never DOWN, out of the up count, a departure
event each, their series kept), and a non-Prometheus URL next to them reads as one line.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.model.fleet import FleetModel
from trimtab.app.targets import file as targets_file
from trimtab.app.targets.manager import TargetManager
from trimtab.app.ui.pages.fleet import FLEET_HEADERS
from trimtab.app.ui.pages.registry import index as page_index
from trimtab.app.ui.window import MainWindow
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget
from trimtab.demo.fleet import spawn_demo

from tests.collectors.discovery.dnsmasq import Dnsmasq, dnsmasq

pytestmark = pytest.mark.slow  # six real instances, two scalings

IPS = [f"127.0.0.{11 + i}" for i in range(6)]  # loopback aliases: one port, six hosts (A records)
HTML_ERROR = "HTTP 404 Not Found — not a Prometheus /metrics endpoint (got text/html)"
WAIT = 90.0


@pytest.fixture(scope="module")
def instances() -> Iterator[int]:
    """Six demo API instances on 127.0.0.11-16, all on one port (returned)."""
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="trimtab-test-discovery-"))
    procs = [spawn_demo(["instance", "--name", f"api-{i + 1}", "--host", ip, "--port", str(port),
                         "--insecure-bind"], str(logs / f"api-{i + 1}.log"))
             for i, ip in enumerate(IPS)]
    try:
        for ip, proc in zip(IPS, procs):
            wait_http(f"http://{ip}:{port}/metrics", proc, timeout=120)
        yield port
    finally:
        stop_all(procs)


class _Html(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<!DOCTYPE html><html><body><h1>Not Found</h1>" + b"<p>x</p>" * 300 + b"</body></html>"
        self.send_response(404)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _fleet_rows(window: MainWindow) -> dict[str, dict[str, str]]:
    table = window.fleet.table
    columns = {h: table.column_texts(i) for i, h in enumerate(FLEET_HEADERS)}
    return {name: {h: columns[h][row] for h in FLEET_HEADERS}
            for row, name in enumerate(columns["target"])}


def _scale(qtbot, tmp_path: Path, discovery: str, set_fleet: Callable[[list[str]], None],
           port: int, html_url: str, shot: str | None = None) -> None:
    names = [f"{ip}:{port}" for ip in IPS]
    path = tmp_path / "targets.toml"
    path.write_text("# my fleet: one hand-written target, the rest discovered\n"
                    f"[[target]]\nname = \"web-ui\"\nurl = \"{html_url}\"\n\n{discovery}")
    set_fleet(names[:3])
    model = FleetModel()
    static = targets_file.load(path)
    engine = ScrapeEngine(static, model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(path, engine, model, names={t.name for t in static})
    window = None
    try:
        manager.discover(targets_file.load_discovery(path))
        window = MainWindow(model, targets=manager)
        qtbot.addWidget(window)
        window.resize(1366, 768)
        window.show()
        window.tabs.setCurrentIndex(page_index("fleet"))
        before: set[str] = set()
        for count in (3, 6, 2):
            listed = set(names[:count])
            gone = before - listed
            set_fleet(names[:count])

            def model_agrees() -> bool:
                health = model.read(lambda m: {k: (h.up, h.gone) for k, h in m.health.items()})
                return (all(health.get(n, (False, 1.0)) == (True, 0.0) for n in listed)
                        and all(health.get(n, (True, 0.0))[1] > 0 for n in gone))

            qtbot.waitUntil(model_agrees, timeout=int(WAIT * 1000))

            def page_agrees() -> bool:
                rows = _fleet_rows(window)
                return ({n for n, r in rows.items() if r["state"] == "up"} == listed
                        and {n for n, r in rows.items() if r["state"] == "gone"} == gone
                        and rows.get("web-ui", {}).get("error", "").startswith(HTML_ERROR))

            qtbot.waitUntil(page_agrees, timeout=int(WAIT * 1000))
            rows = _fleet_rows(window)
            assert [n for n, r in rows.items() if r["state"] == "DOWN"] == ["web-ui"]
            assert all(rows[n]["url"] == f"http://{n}/metrics" for n in listed | gone)
            assert all("<" not in r["error"] for r in rows.values())
            # gone: not counted as up or down, named apart in the status bar
            qtbot.waitUntil(lambda: f"{count}/{count + 1} targets up" in window.status.text(),
                            timeout=int(WAIT * 1000))
            status = window.status.text()
            assert (f"{len(gone)} gone" in status) == bool(gone), status
            assert not any(n in status for n in gone), status
            departed = model.read(lambda m: [t for _, t in m.departures])
            assert sorted(departed) == sorted(set(names[:6]) - listed) if count == 2 else not departed
            before = before | listed
        statuses = manager.discovery.statuses()
        assert [len(s.targets) for s in statuses] == [2] and not statuses[0].error
        assert "2 targets" in window.fleet.sources_label.text()
        if shot:
            Path(shot).parent.mkdir(parents=True, exist_ok=True)
            assert window.grab().save(shot)
    finally:
        manager.close()
        engine.stop()
        if window is not None:
            window.close()


def test_file_sd_scales_3_6_2(qtbot, tmp_path: Path, instances: int, html_url: str) -> None:
    fleet = tmp_path / "fleet" / "api.json"
    fleet.parent.mkdir()

    def set_fleet(addresses: list[str]) -> None:
        tmp = fleet.with_suffix(".tmp")  # written whole, then renamed, as a deploy tool does
        tmp.write_text(json.dumps([{"targets": addresses, "labels": {"job": "api"}}]))
        tmp.replace(fleet)

    table = ('[[discovery]]\nkind = "file_sd"\nname = "api-files"\nfiles = ["fleet/*.json"]\n'
             "refresh = 0.5\n")
    _scale(qtbot, tmp_path, table, set_fleet, instances, html_url,
           shot="/tmp/shots/F_fleet_gone_and_html_error.png")


def test_dns_scales_3_6_2(qtbot, tmp_path: Path, instances: int, html_url: str) -> None:
    with dnsmasq(tmp_path) as server:
        def set_fleet(addresses: list[str]) -> None:
            _set_dns(server, addresses)

        table = ('[[discovery]]\nkind = "dns"\nname = "api-dns"\nnames = ["api.fleet.test"]\n'
                 f'type = "A"\nport = {instances}\nnameserver = "{server.nameserver}"\n'
                 "refresh = 0.5\n")
        _scale(qtbot, tmp_path, table, set_fleet, instances, html_url)


def _set_dns(server: Dnsmasq, addresses: list[str]) -> None:
    server.write_hosts([(a.split(":")[0], "api.fleet.test") for a in addresses])
    server.reload()


def test_a_discovered_name_is_not_removed_by_hand_nor_added_twice(
        qtbot, tmp_path: Path, instances: int) -> None:
    path = tmp_path / "targets.toml"
    (tmp_path / "one.json").write_text(json.dumps([{"targets": [f"{IPS[0]}:{instances}"]}]))
    path.write_text('[[discovery]]\nkind = "file_sd"\nfiles = ["one.json"]\nrefresh = 0.5\n')
    text = path.read_text()
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(path, engine, model)
    try:
        manager.discover(targets_file.load_discovery(path))
        name = f"{IPS[0]}:{instances}"
        qtbot.waitUntil(lambda: manager.discovery.origin(name) == "file_sd-1", timeout=30_000)
        with pytest.raises(targets_file.TargetsError, match="found by discovery"):
            manager.remove(name)
        with pytest.raises(targets_file.TargetsError, match="already used"):
            manager.add(name, f"http://{name}/metrics")
        assert path.read_text() == text  # refused: the file is untouched
        # a target added by hand keeps the [[discovery]] table and the comment as written
        manager.add("api-x", "http://127.0.0.1:9/metrics")
        assert path.read_text().startswith(text)
        assert [c.source.name for c in targets_file.load_discovery(path)] == ["file_sd-1"]
    finally:
        manager.close()
        engine.stop()


def test_bad_discovery_tables_are_refused_naming_the_table(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text('[[discovery]]\nkind = "dns"\nnames = ["a.test"]\ntype = "A"\n')
    with pytest.raises(targets_file.TargetsError, match=r"targets.toml: discovery 'dns-1'.*port"):
        targets_file.load_discovery(path)
    path.write_text('discovery = "file_sd"\n')
    with pytest.raises(targets_file.TargetsError, match="array of tables"):
        targets_file.load_discovery(path)
    assert targets_file.load_discovery(tmp_path / "missing.toml") == []


def test_discovered_targets_carry_their_control_endpoint(tmp_path: Path) -> None:
    from trimtab.app.control.types import Agent

    target = ScrapeTarget("a", "http://10.0.0.5:9100/metrics", control_url="https://10.0.0.5:9443")
    assert target.agent_base == "https://10.0.0.5:9443"
    assert Agent.from_target(target).base_url == "https://10.0.0.5:9443"
    path = tmp_path / "targets.toml"
    path.write_text('[[target]]\nname = "a"\nurl = "http://h:1/metrics"\n'
                    'control_url = "http://h:2/_trimtab"\n')
    with pytest.raises(targets_file.TargetsError, match="control_url"):
        targets_file.load(path)


def test_changes_go_to_the_instances_discovery_finds(qtbot, tmp_path: Path, instances: int) -> None:
    """The control side (TTL and weight changes) follows discovery, at each target's
    control endpoint (``__trimtab_control_url__``) when it names one."""
    from trimtab.app.cli.main import follow_instances, make_tuning

    fleet = tmp_path / "fleet.yaml"
    first, second = (f"{ip}:{instances}" for ip in IPS[:2])
    fleet.write_text(f"- targets: ['{first}']\n"
                     f"- targets: ['{second}']\n"
                     "  labels: {__trimtab_control_url__: 'http://127.0.0.99:9443/'}\n")
    path = tmp_path / "targets.toml"
    path.write_text('[[discovery]]\nkind = "file_sd"\nfiles = ["fleet.yaml"]\nrefresh = 0.5\n')
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(path, engine, model, token="read-token")
    tuning = make_tuning("write-token", [])
    try:
        applier = manager.discover(targets_file.load_discovery(path))
        applier.on_change = lambda: follow_instances(tuning, [], manager)
        follow_instances(tuning, [], manager)  # a refresh before the hook was set (as the cli)
        qtbot.waitUntil(lambda: len(tuning.instances) == 2, timeout=30_000)
        assert sorted((a.name, a.base_url) for a in tuning.instances) == [
            (first, f"http://{first}"), (second, "http://127.0.0.99:9443")]
        fleet.write_text(f"- targets: ['{second}']\n")
        qtbot.waitUntil(lambda: [a.name for a in tuning.instances] == [second], timeout=30_000)
    finally:
        manager.close()
        engine.stop()
