"""The headless export carries what the GUI export carries (issue 20 item 2).

A real demo fleet (uvicorn agents, balancer, traffic), a real cockpit model
writing the history store, 12 TTL changes made through the control client;
then the README's line, ``trimtab snapshot export --from=-30m --out f.trimtab``,
run as a user runs it (the default targets file and history under
``XDG_CONFIG_HOME``, the read token in ``TRIMTAB_TOKEN``). The snapshot holds the
changes, traces and targets (no token), and its report names the changes. What
cannot be included (no token, an agent down) is said on stderr, in the
snapshot, in its report and by ``trimtab open``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from trimtab.agent.procs import free_port
from trimtab.app.cli.main import start_collection
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import Agent, expected_etags
from trimtab.app.model.fleet import FleetModel
from trimtab.app.snapshot.export import open_snapshot
from trimtab.app.store.store import Store
from trimtab.demo.fleet import DemoFleet

CHANGES = 12
ROUTE = "/search"


@dataclass
class Recorded:
    config: Path  # XDG_CONFIG_HOME: trimtab/targets.toml and trimtab/history.sqlite
    fleet: DemoFleet
    reasons: list[str]


def _toml(targets: list[tuple[str, str, str]]) -> str:
    return "".join(f'[[target]]\nname = "{n}"\nurl = "{u}"\nkind = "{k}"\n\n'
                   for n, u, k in targets)


@pytest.fixture(scope="module")
def recorded(fleet: DemoFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """The fleet scraped into the default history store while 12 changes are made."""
    config = tmp_path_factory.mktemp("xdg")
    (config / "trimtab").mkdir()
    (config / "trimtab" / "targets.toml").write_text(
        _toml([(t.name, t.url, t.kind) for t in fleet.targets]))
    store = Store(config / "trimtab" / "history.sqlite")
    model = FleetModel(store=store)
    engine = start_collection(fleet, model)
    reasons = [f"tune search #{i}" for i in range(CHANGES)]
    try:
        instances = [Agent.from_target(t) for t in fleet.targets if t.kind == "instance"]
        with ControlClient(fleet.write_token) as client:
            for i, reason in enumerate(reasons):
                agent = instances[i % len(instances)]
                reads = client.read_configs([agent])
                result = client.set_ttl([agent], ROUTE, float(i + 1), reason,
                                        expected_etags(reads))
                assert result.ok, result
        deadline = time.monotonic() + 30
        while len(store.query("trimtab_http_requests_total", start=0, end=time.time(),
                              max_points=10)) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        yield Recorded(config, fleet, reasons)  # the cockpit keeps writing meanwhile
    finally:
        engine.stop()
        store.close()


def _cli(config: Path, *args: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("TRIMTAB_TOKEN", None)
    if token is not None:
        env["TRIMTAB_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", *args], capture_output=True,
                          text=True, timeout=180, env=env, cwd=config)


def test_readme_export_carries_journal_traces_and_targets(recorded: Recorded,
                                                          tmp_path: Path) -> None:
    out, html = tmp_path / "f.trimtab", tmp_path / "report.html"
    proc = _cli(recorded.config, "snapshot", "export", "--from=-30m", "--out", str(out),
                token=recorded.fleet.read_token)
    assert proc.returncode == 0, proc.stderr
    assert "not included" not in proc.stderr and "INCOMPLETE" not in proc.stderr, proc.stderr
    assert f"{CHANGES} journal entries" in proc.stderr, proc.stderr
    with open_snapshot(out) as snap:
        journal = snap.journal()
        assert [r.reason for r in journal] == recorded.reasons
        traces = snap.traces()
        start, end = snap.window
        assert traces and all(start <= t["start"] <= end for t in traces)
        assert {t["instance"] for t in traces} <= {"api-1", "api-2", "api-3"}
        assert sorted(t.name for t in snap.target_info()) == sorted(
            t.name for t in recorded.fleet.targets)
        assert snap.omitted() == []
    raw = out.read_bytes()
    for token in (recorded.fleet.read_token, recorded.fleet.write_token):
        assert token.encode() not in raw
    report = _cli(recorded.config, "snapshot", "report", str(out), "--out", str(html),
                  token=None)
    assert report.returncode == 0, report.stderr
    page = html.read_text(encoding="utf-8")
    assert "No change in the window" not in page and "incomplete" not in page
    for reason in recorded.reasons:
        assert f"Reason: {reason}" in page
    assert f"routes.{ROUTE}.ttl" in page


@pytest.mark.slow
def test_what_cannot_be_included_is_said_everywhere(recorded: Recorded, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    config = tmp_path / "xdg"
    (config / "trimtab").mkdir(parents=True)
    (config / "trimtab" / "targets.toml").write_text(_toml(
        [(t.name, t.url, t.kind) for t in recorded.fleet.targets] + [("api-9", dead, "instance")]))
    history = recorded.config / "trimtab" / "history.sqlite"
    out = tmp_path / "partial.trimtab"
    proc = _cli(config, "snapshot", "export", "--from=-30m", "--out", str(out),
                "--store", str(history), token=recorded.fleet.read_token)
    assert proc.returncode == 0, proc.stderr
    assert "not included: journal of api-9: agent unreachable" in proc.stderr, proc.stderr
    assert "not included: traces of api-9: agent unreachable" in proc.stderr
    assert "not included: limits of api-9: agent unreachable" in proc.stderr
    assert "INCOMPLETE" in proc.stderr
    with open_snapshot(out) as snap:
        assert len(snap.journal()) == CHANGES  # the live agents' changes are all there
        assert {(o["what"], o["source"]) for o in snap.omitted()} == {
            ("journal", "api-9"), ("traces", "api-9"), ("limits", "api-9")}
    nothing = tmp_path / "no-token.trimtab"
    proc = _cli(config, "snapshot", "export", "--from=-30m", "--out", str(nothing),
                "--store", str(history), token=None)
    assert proc.returncode == 0, proc.stderr
    assert "not included: journal of all: no read token: set TRIMTAB_TOKEN" in proc.stderr
    html = tmp_path / "r.html"
    report = _cli(config, "snapshot", "report", str(nothing), "--out", str(html), token=None)
    assert report.returncode == 0, report.stderr
    page = html.read_text(encoding="utf-8")
    assert "This snapshot is incomplete" in page and "no read token" in page
    assert "No change in the window" not in page and "changes unknown" in page
    opened = _cli(config, "open", str(nothing), "--screenshot", str(tmp_path / "x.png"),
                  "--after", "0", token=None)
    assert opened.returncode == 0, opened.stderr
    assert "not in this snapshot: journal of all: no read token" in opened.stderr
