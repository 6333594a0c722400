"""Snapshots and the HTML report carry the SLOs in force and what the incident window did to
each (issue 19): error ratio, burn rate, budget consumed; a colleague can import them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from trimtab.app.slo import file as slo_file
from trimtab.app.slo.openslo import loads
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.snapshot.open import open_snapshot
from trimtab.app.snapshot.report import render_html
from trimtab.app.store.store import Store

from tests.app.slo.history import AVAIL, LATENCY, T0, fill

WINDOW_S = 28 * 86400.0


@pytest.fixture()
def history(tmp_path: Path) -> Path:
    path = tmp_path / "history.sqlite"
    with Store(path) as store:
        fill(store)
    return path


def test_the_window_s_budget_travels_with_the_snapshot(tmp_path: Path, history: Path) -> None:
    out = tmp_path / "incident.trimtab"
    with Store(history) as store:
        export_snapshot(store, out, T0 + 660, T0 + 1200, slos=[LATENCY, AVAIL])
    with open_snapshot(out) as snap:
        rows = {r["name"]: r for r in snap.slos()}
        assert loads(snap.slos_openslo) == [LATENCY, AVAIL]  # importable as exported
        page = render_html(snap)
    # All slow in the window: 2 of 20 req/s over 0.25 s (10 %), 1 of 20 a 502 (5 %).
    assert rows["search-fast"]["error_ratio"] == pytest.approx(0.10, rel=1e-6)
    assert rows["search-fast"]["burn"] == pytest.approx(10.0, rel=1e-6)
    assert rows["search-fast"]["budget_consumed"] == pytest.approx(10.0 * 540 / WINDOW_S,
                                                                   rel=1e-6)
    assert rows["search-ok"]["burn"] == pytest.approx(5.0, rel=1e-6)
    assert "Promises (SLOs)" in page and "99 % of /search within 250 ms over 28 d" in page
    assert "10.00×" in page and "0.223 %" in page  # 10 × 540 s / 28 d


def test_a_snapshot_without_slos_says_nothing_of_them(tmp_path: Path, history: Path) -> None:
    out = tmp_path / "plain.trimtab"
    with Store(history) as store:
        export_snapshot(store, out, T0 + 660, T0 + 1200)
    with open_snapshot(out) as snap:
        assert snap.slos() == [] and snap.slos_openslo == ""
        assert "Promises" not in render_html(snap)


def test_the_cli_export_reads_the_slo_file_beside_the_targets(tmp_path: Path,
                                                              history: Path) -> None:
    targets = tmp_path / "targets.toml"
    targets.write_text("")
    slo_file.save(slo_file.slo_path(targets), [LATENCY])
    out = tmp_path / "cli.trimtab"
    done = subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", "snapshot", "export",
                           f"--from={T0 + 660}", f"--to={T0 + 1200}", "--out", str(out),
                           "--store", str(history), "--targets", str(targets)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TRIMTAB_TOKEN": ""})
    assert done.returncode == 0, done.stderr
    with open_snapshot(out) as snap:
        assert [r["name"] for r in snap.slos()] == ["search-fast"]
    slo_file.slo_path(targets).write_text("apiVersion: openslo/v1\nkind: SLO\n")
    damaged = subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", "snapshot",
                              "export", f"--from={T0 + 660}", f"--to={T0 + 1200}", "--out",
                              str(tmp_path / "d.trimtab"), "--store", str(history),
                              "--targets", str(targets)],
                             capture_output=True, text=True, timeout=120)
    assert damaged.returncode == 0 and "SLOs not included" in damaged.stderr
