"""The cockpit on a Prometheus server: targets file, --prometheus, the Fleet page, mapping files."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from pytestqt.qtbot import QtBot
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.cli import main as cli
from trimtab.app.model.fleet import FleetModel
from trimtab.app.store.store import Store
from trimtab.app.targets import file as tf
from trimtab.app.targets.manager import TargetManager
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget
from trimtab.demo.fleet import spawn_demo
from trimtab.widgets.target_dialog import TargetDialog

from tests.collectors.prometheus.prom_server import running_prometheus
from tests.support import poll

BAD_MAPPING = """\
[[mapping]]
source = "mine"
detect = ["my_requests_total"]
[[mapping.metric]]
from = "my_requests_total"
to = "trimtab_http_requests_total"
scale = -1
"""


class Prom(NamedTuple):
    url: str
    instance: str  # the demo instance's `instance` label (host:port)


@pytest.fixture(scope="module")
def prom() -> Iterator[Prom]:
    """A demo instance with some traffic, scraped every second by a real Prometheus."""
    work = Path(tempfile.mkdtemp(prefix="trimtab-test-prom-cockpit-"))
    port = free_port()
    procs = [spawn_demo(["instance", "--name", "api-1", "--port", str(port)], str(work / "api.log"))]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/metrics", procs[0])
        with httpx.Client(base_url=base, timeout=5.0) as client:
            for i in range(20):
                client.get(f"/products/{i % 5}")
        with running_prometheus(work, {"demo": [f"{base}/metrics"]}) as url:
            yield Prom(url, f"127.0.0.1:{port}")
    finally:
        stop_all(procs)


def _run(argv: list[str]) -> int:
    """The cockpit command in-process (``main`` would register faulthandler on captured stderr)."""
    args = cli.build_parser().parse_args(argv)
    return int(args.func(args))


def _args(**options: object) -> argparse.Namespace:
    return cli.build_parser().parse_args(
        ["cockpit", *(f"--{k}={v}" for k, v in options.items())])


# ---------------------------------------------------------------- bad input first

def test_bad_mapping_file_stops_the_start_naming_file_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = tmp_path / "targets.toml"
    (tmp_path / "mappings.toml").write_text(BAD_MAPPING)
    assert _run(["cockpit", "--targets", str(targets), "--store",
                     str(tmp_path / "h.sqlite")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'mappings.toml'}: mapping[0].metric[0].scale: must be a positive" in err
    assert not targets.exists() and not (tmp_path / "h.sqlite").exists()  # nothing started


@pytest.mark.parametrize("url", ["ftp://prom:9090", "http://prom:9090/metrics",
                                 "http://prom:9090/api/v1/query"])
def test_bad_prometheus_url_is_refused(tmp_path: Path, url: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["cockpit", "--targets", str(tmp_path / "t.toml"), "--prometheus", url]) == 2
    assert "url" in capsys.readouterr().err


def test_user_mapping_tables_are_loaded_beside_the_targets_file(tmp_path: Path) -> None:
    (tmp_path / "mappings.toml").write_text(BAD_MAPPING.replace("scale = -1", "scale = 1"))
    tf.add(tmp_path / "targets.toml", ScrapeTarget("prom", "http://127.0.0.1:9090",
                                                      tf.PROMETHEUS))
    path, scraped, proms, tables = cli._cockpit_config(
        _args(targets=tmp_path / "targets.toml", prometheus="http://127.0.0.1:9091"))
    assert path == tmp_path / "targets.toml" and scraped == []
    assert [(t.name, t.url, saved) for t, saved in proms] == [
        ("prom", "http://127.0.0.1:9090", True), ("prometheus", "http://127.0.0.1:9091", False)]
    assert "mine" in {t.source for t in tables} and "starlette_exporter" in {t.source for t in tables}


def test_dialog_offers_prometheus_with_its_url_hint(qtbot: QtBot) -> None:
    dialog = TargetDialog(tf.KINDS)
    qtbot.addWidget(dialog)
    dialog.kind.setCurrentText("prometheus")
    assert dialog.url_label.text() == "Prometheus URL"
    assert dialog.url.placeholderText() == "http://127.0.0.1:9090"
    assert dialog.form.isRowVisible(dialog.token_env)  # a Prometheus may sit behind a token
    dialog.token_env.setText(" PROM_TOKEN ")
    assert dialog.token_variable() == "PROM_TOKEN"
    dialog.kind.setCurrentText("instance")
    assert dialog.url_label.text() == "Metrics URL"
    assert not dialog.form.isRowVisible(dialog.token_env) and dialog.token_variable() == ""


# ---------------------------------------------------------------- a real Prometheus

def _wait(fn: Callable[[], object], timeout: float = 30.0) -> bool:
    return bool(poll(fn, bool, timeout, interval=0.2))


def test_target_manager_adds_and_removes_a_prometheus_source(tmp_path: Path, prom: Prom) -> None:
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(tmp_path / "targets.toml", engine, model)
    try:
        with pytest.raises(tf.TargetsError, match="base URL"):
            manager.add("prom", f"{prom.url}/metrics", "prometheus", 1.0)
        assert not manager.collectors and not (tmp_path / "targets.toml").exists()
        manager.add("prom", prom.url, "prometheus", 1.0)
        assert [t.kind for t in tf.load(tmp_path / "targets.toml")] == ["prometheus"]

        def rows() -> dict[str, tuple[str, bool]]:
            return model.read(lambda m: {h.name: (h.kind, h.up)
                                         for h in m.health.values()})
        assert _wait(lambda: rows() == {"prom": ("prometheus", True),
                                        f"prom/{prom.instance}": ("instance", True)}), rows()
        manager.remove("prom")
        assert rows() == {} and manager.collectors == {}
        assert tf.load(tmp_path / "targets.toml") == []
    finally:
        manager.close()
        engine.stop()


def test_cockpit_on_a_prometheus_targets_file_collects_its_targets(
        tmp_path: Path, prom: Prom) -> None:
    targets, store_path = tmp_path / "targets.toml", tmp_path / "history.sqlite"
    tf.save(targets, [ScrapeTarget("prom", prom.url, tf.PROMETHEUS)])
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "trimtab.app.cli.main", "cockpit", "--targets", str(targets),
         "--store", str(store_path), "--page", "fleet", "--screenshot", str(tmp_path / "f.png"),
         "--after", "6"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Prometheus prom at {prom.url}" in proc.stdout
    with Store(store_path) as store:
        # What Prometheus scraped, under its instance label prefixed by the source's name.
        assert store.targets() == [f"prom/{prom.instance}"]
        names = {k.name for k in store.series(target=f"prom/{prom.instance}")}
    assert {"trimtab_http_requests_total", "trimtab_http_request_duration_seconds_bucket"} <= names


# ------------------------------------------------- a Prometheus behind a bearer-token proxy

def test_bad_token_env_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "targets.toml"
    with pytest.raises(tf.TargetsError, match="token_env: must be an environment variable"):
        tf.add(path, ScrapeTarget("p", "http://127.0.0.1:9090", tf.PROMETHEUS, token_env="1-x"))
    with pytest.raises(tf.TargetsError, match="token_env: only a Prometheus source"):
        tf.add(path, ScrapeTarget("a", "http://127.0.0.1:1/metrics", token_env="X"))
    assert not path.exists()
    os.environ.pop("TRIMTAB_TEST_UNSET_TOKEN", None)
    assert _run(["cockpit", "--targets", str(path), "--prometheus", "http://127.0.0.1:9",
                 "--prometheus-token-env", "TRIMTAB_TEST_UNSET_TOKEN"]) == 2
    assert "TRIMTAB_TEST_UNSET_TOKEN (its token_env) is not set" in capsys.readouterr().err
    assert _run(["cockpit", "--targets", str(path), "--prometheus-token-env", "X"]) == 2
    assert "needs --prometheus" in capsys.readouterr().err


@pytest.fixture()
def guarded(prom: Prom) -> Iterator[str]:
    """A real loopback proxy in front of Prometheus that wants ``Bearer s3cret`` (401 else)."""
    import http.server
    import threading
    import urllib.request

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != "Bearer s3cret":
                self.send_response(401)
                self.end_headers()
                return
            with urllib.request.urlopen(prom.url + self.path, timeout=10) as answer:
                body = answer.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_prometheus_behind_a_token_is_read_with_token_env(tmp_path: Path, guarded: str,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            prom: Prom) -> None:
    path = tmp_path / "targets.toml"
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(path, engine, model)
    try:
        monkeypatch.delenv("TRIMTAB_TEST_PROM_TOKEN", raising=False)
        with pytest.raises(tf.TargetsError, match="TRIMTAB_TEST_PROM_TOKEN .* is not set"):
            manager.add("guarded", guarded, "prometheus", 1.0, token_env="TRIMTAB_TEST_PROM_TOKEN")
        assert not path.exists() and not manager.collectors  # nothing changed
        monkeypatch.setenv("TRIMTAB_TEST_PROM_TOKEN", "s3cret")
        manager.add("guarded", guarded, "prometheus", 1.0, token_env="TRIMTAB_TEST_PROM_TOKEN")

        def up() -> dict[str, bool]:
            return model.read(lambda m: {h.name: h.up for h in m.health.values()})
        assert _wait(lambda: up() == {"guarded": True, f"guarded/{prom.instance}": True}), up()
        saved = path.read_text()
        assert 'token_env = "TRIMTAB_TEST_PROM_TOKEN"' in saved and "s3cret" not in saved
        assert tf.load(path)[0].token_env == "TRIMTAB_TEST_PROM_TOKEN"
    finally:
        manager.close()
        engine.stop()


def test_without_the_token_the_source_is_down_with_the_reason(tmp_path: Path, guarded: str) -> None:
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
    manager = TargetManager(tmp_path / "targets.toml", engine, model)
    try:
        manager.add("open", guarded, "prometheus", 1.0)  # no token_env: the proxy says 401

        def health() -> tuple[bool, str] | None:
            h = model.read(lambda m: m.health.get("open"))
            return None if h is None else (h.up, h.error)
        assert _wait(lambda: health() is not None)
        up, error = health()  # type: ignore[misc]
        assert not up and "401" in error
    finally:
        manager.close()
        engine.stop()
