"""Snapshots carry the rate limits (issue 18), on the real demo fleet: its shadow limit on
/search catches the greedy client; the test enforces it through the agents' control API,
exports the window (the cockpit's File → Export job and ``trimtab snapshot export``) and
reopens it: the limits as they were at export, the change (a marker with a readable label)
and the limit series, equal point for point to the model that recorded the window.

"The model that recorded the window" is fed exactly what the history store holds: each
cycle's newest scrape per target stamped with the cycle time (as tests/app/replay does);
the engine-fed model differs from it by scrape jitter, so only directions are asserted
against that one.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from trimtab.app.cli.snapshot import add_snapshot_commands
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.model.fleet import LIMIT_SERIES, FleetModel, limit_key
from trimtab.app.replay.change_markers import markers
from trimtab.app.replay.session import snapshot_session
from trimtab.app.snapshot.open import open_snapshot
from trimtab.app.store.store import Store
from trimtab.app.targets import file as targets_file
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget
from trimtab.demo.app import DEMO_LIMIT, DEMO_LIMIT_NAME, SEARCH_ROUTE
from trimtab.demo.fleet import DemoFleet
from trimtab.demo.loadgen import GREEDY_KEY

from tests.support import wait_for

pytestmark = pytest.mark.slow  # a minute of recording on a loaded machine
KEY = limit_key(SEARCH_ROUTE, DEMO_LIMIT_NAME)
REASON = "snapshot test: enforce the greedy client's limit"


@dataclasses.dataclass
class Recorded:
    store: Store
    model: FleetModel  # fed what the store holds (cycle-stamped scrapes) and the configs
    live: FleetModel  # fed straight by the engine, as the cockpit is
    journal: list[JournalRow]
    change: float  # when the limit was enforced (the agents' journal time)
    targets: list[ScrapeTarget]


def _last(model: FleetModel, metric: str) -> float:
    found = model.snapshot(metric, keys=[KEY]).get(KEY)
    return float(found[1][-1]) if found is not None and len(found[1]) else math.nan


def _cycles(store: Store) -> int:
    return (store.last_cycle() or (0, 0))[0]


def _modes(model: FleetModel) -> set[str]:
    return model.read(lambda m: {str((doc.get("limits") or {}).get(DEMO_LIMIT_NAME, {})
                                     .get("mode")) for doc in m.configs.values()})


@pytest.fixture(scope="module")
def recorded(fleet: DemoFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    store = Store(tmp_path_factory.mktemp("limits") / "history.sqlite", chunk_cycles=8)
    model, live = FleetModel(store=store), FleetModel()
    pending: dict[str, ScrapeResult] = {}
    lock = threading.Lock()

    def sink(result: ScrapeResult) -> None:
        live.ingest(result)
        with lock:
            pending[result.target.name] = result

    def on_cycle(t: float) -> None:
        live.tick(t)
        with lock:
            results = list(pending.values())
            pending.clear()
        if results:
            for result in results:
                model.ingest(dataclasses.replace(result, timestamp=t))
            model.tick(t)

    def on_config(target: str, doc: dict | None, error: str) -> None:
        live.ingest_config(target, doc, error)
        model.ingest_config(target, doc, error)

    targets = [ScrapeTarget(t.name, t.url, t.kind, token=t.token) for t in fleet.targets]
    agents = [Agent.from_target(t) for t in targets if t.kind == "instance"]
    engine = ScrapeEngine(targets, sink, on_cycle=on_cycle, on_traces=lambda *a: None,
                          on_config=on_config).start()
    try:
        # The demo's shadow limit has caught the greedy client (would-be-limited, served).
        wait_for(lambda: _cycles(store) >= 12 and _last(model, "limit_shadow") > 0
                 and _modes(model) == {"shadow"}, timeout=120, what="the greedy client caught")
        with ControlClient(fleet.write_token) as client:
            reads = client.read_configs(agents)
            etags = {a: r.etag for a, r in reads.items() if hasattr(r, "etag")}
            result = client.set_limit(agents, DEMO_LIMIT_NAME, {"mode": "enforce"}, REASON,
                                      etags)
            assert result.ok, result.outcomes
        stored_at_change = _cycles(store)
        wait_for(lambda: _cycles(store) >= stored_at_change + 20
                 and _last(model, "limit_limited") > 0 and _modes(model) == {"enforce"},
                 timeout=120, what="the greedy client refused")
    finally:
        engine.stop()
    with ControlClient(fleet.read_token) as client:
        journal, errors = client.journal(agents)
    assert not errors
    change = min(r.time for r in journal if r.reason == REASON)
    yield Recorded(store, model, live, journal, change, targets)
    store.close()


def _window(rec: Recorded) -> tuple[float, float]:
    t = rec.model.snapshot("limit_allowed", keys=[KEY])[KEY][0]
    return float(t[0]) - 60.0, float(t[-1])


def _gui_export(qapp, rec: Recorded, out: Path) -> Path:
    """The cockpit's export job, given what the window holds (model, journal, targets)."""
    from trimtab.app.ui.export import ExportJob

    start, end = _window(rec)
    window = SimpleNamespace(model=rec.model, journal_rows={i: r for i, r in
                                                            enumerate(rec.journal)},
                             export_targets=rec.targets)
    job = ExportJob(window, start, end, "limits", out)
    done: list[object] = []
    job.done.connect(done.append)
    job.failed.connect(done.append)
    job.progressed.connect(lambda *_: None)
    job.start()
    wait_for(lambda: (qapp.processEvents(), bool(done))[1], timeout=60, what="export")
    job.release()
    assert not isinstance(done[0], str), done[0]
    return out


@pytest.fixture(scope="module")
def exported(qapp, recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _gui_export(qapp, recorded, tmp_path_factory.mktemp("gui") / "limits.trimtab")


def test_the_limits_at_export_are_in_the_file_without_any_key_value(
        exported: Path, recorded: Recorded) -> None:
    with open_snapshot(exported) as snap:
        limits = snap.limits()
    instances = {t.name for t in recorded.targets if t.kind == "instance"}
    assert {row["agent"] for row in limits} == instances
    for row in limits:
        assert row == {"agent": row["agent"], "name": DEMO_LIMIT_NAME, "route": SEARCH_ROUTE,
                       "key": DEMO_LIMIT["key"], "rate": DEMO_LIMIT["rate"],
                       "burst": DEMO_LIMIT["burst"], "mode": "enforce"}
    # The greedy client's API key (a key value) is nowhere in the file.
    assert GREEDY_KEY.encode() not in exported.read_bytes()


def test_the_change_comes_back_as_a_marker_with_a_readable_label(
        exported: Path, recorded: Recorded) -> None:
    with open_snapshot(exported) as snap:
        rows = [r for r in snap.journal() if r.reason == REASON]
    assert len(rows) == len([r for r in recorded.journal if r.reason == REASON]) == 3
    marks = markers(rows)
    assert len(marks) == 1  # one action sent to three instances
    _key, when, label = marks[0]
    assert when == pytest.approx(recorded.change)
    # the old and new mode, however the label words them
    assert DEMO_LIMIT_NAME in label and "shadow" in label and "enforce" in label
    assert all(t.name in label for t in recorded.targets if t.kind == "instance")


def test_reopened_limit_series_equal_the_recorded_ones(exported: Path,
                                                       recorded: Recorded) -> None:
    _start, end = _window(recorded)
    session = snapshot_session(exported)
    try:
        model = session.replayer.model
        session.replayer.seek(end)
        compared = 0
        for metric in (*LIMIT_SERIES.values(), "rate_429", "rate"):
            want = recorded.model.snapshot(metric)
            got = model.snapshot(metric)
            assert want.keys() == got.keys(), metric
            for key, (t, v) in want.items():
                np.testing.assert_array_equal(got[key][0], t, err_msg=f"{metric} {key}")
                np.testing.assert_allclose(got[key][1], v, rtol=1e-12, equal_nan=True,
                                           err_msg=f"{metric} {key}")
                compared += len(t)
        assert compared > 100
        # Before the change the limit only would have refused; after it, it refused.
        t, limited = model.snapshot("limit_limited", keys=[KEY])[KEY]
        _, shadow = model.snapshot("limit_shadow", keys=[KEY])[KEY]
        before, after = t < recorded.change, t > recorded.change + 10
        assert np.nanmax(shadow[before]) > 0 and np.nanmax(limited[before]) == 0
        assert np.nanmax(limited[after]) > 0
        # The Limits page reads the limits from the model's configs: as they were at the
        # replay clock, the change undone before it.
        assert _modes(model) == {"enforce"}
        session.replayer.seek(recorded.change - 1)
        assert _modes(model) == {"shadow"}
        session.replayer.seek(end)
        assert _modes(model) == {"enforce"}
    finally:
        session.close()


def test_engine_fed_model_agrees_in_direction(exported: Path, recorded: Recorded) -> None:
    """The cockpit's own model (scrape times, not cycle times) shows the same story."""
    t, limited = recorded.live.snapshot("limit_limited", keys=[KEY])[KEY]
    assert np.nanmax(limited[t < recorded.change]) == 0
    assert np.nanmax(limited[t > recorded.change + 10]) > 0


def test_cli_export_reads_the_limits_from_the_agents(recorded: Recorded, tmp_path: Path,
                                                     fleet: DemoFleet,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIMTAB_TOKEN", fleet.read_token)
    toml = tmp_path / "targets.toml"
    targets_file.save(toml, [dataclasses.replace(t, token="") for t in recorded.targets])
    start, end = _window(recorded)
    parser = argparse.ArgumentParser(prog="trimtab")
    add_snapshot_commands(parser.add_subparsers(dest="command"))
    out, log = tmp_path / "cli.trimtab", io.StringIO()
    args = parser.parse_args(["snapshot", "export", "--from", repr(start), "--to", repr(end),
                              "--out", str(out), "--store", str(recorded.store.path),
                              "--targets", str(toml)])
    assert args.func(args, log) == 0, log.getvalue()
    assert "not included" not in log.getvalue()
    with open_snapshot(out) as snap:
        modes = {(r["agent"], r["name"]): r["mode"] for r in snap.limits()}
        assert [r for r in snap.journal() if r.reason == REASON]
    assert modes == {(t.name, DEMO_LIMIT_NAME): "enforce"
                     for t in recorded.targets if t.kind == "instance"}
    assert GREEDY_KEY.encode() not in out.read_bytes()
    assert fleet.read_token.encode() not in out.read_bytes()


def test_the_recording_holds_one_accepted_change_per_instance(recorded: Recorded) -> None:
    rows = [r for r in recorded.journal if r.reason == REASON]
    assert {r.result for r in rows} == {"accepted"}
    assert all(r.new == {"limits": {DEMO_LIMIT_NAME: {"mode": "enforce"}}} for r in rows)

