"""``trimtab snapshot export`` and ``report`` as a user runs them, on a real history file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from trimtab.app.store.store import Store


def _history(path: Path) -> None:
    store = Store(path)
    for i in range(120):
        le_rows = [("api-1", "trimtab_http_request_duration_seconds_bucket",
                    (("le", le), ("method", "GET"), ("route", "/r")), float(i * n))
                   for le, n in (("0.1", 1), ("0.5", 3), ("+Inf", 4))]
        store.write_cycle(1_700_000_000.0 + i, [*le_rows, ("api-1", "trimtab_http_requests_total",
                                                           (("route", "/r"),), float(i * 4))])
    store.close()


def test_export_then_report(tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    _history(history)
    snap, html = tmp_path / "incident.trimtab", tmp_path / "report.html"
    (tmp_path / "none.toml").write_text("")  # a targets file without targets
    run = [sys.executable, "-m", "trimtab.app.cli.main", "snapshot"]
    export = subprocess.run([*run, "export", "--from=1700000010", "--to=1700000100",
                             "--out", str(snap), "--store", str(history),
                             "--targets", str(tmp_path / "none.toml"), "--notes", "p95 spike"],
                            capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    report = subprocess.run([*run, "report", str(snap), "--out", str(html)],
                            capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert report.returncode == 0, report.stderr
    page = html.read_text()
    assert "/r" in page and "p95 spike" in page and "<img" in page


def test_opening_something_that_is_not_a_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "x.trimtab"
    bogus.write_bytes(b"definitely not sqlite")
    proc = subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", "snapshot", "report",
                           str(bogus), "--out", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip()


def test_snapshot_charts_as_csv_and_svg_headless(tmp_path: Path) -> None:
    """``trimtab snapshot charts`` (issue 21.7): every chart of a page as files, from the
    command line; the CSV says its units; a bad suffix or a bad file is one line, exit 2."""
    import os

    history = tmp_path / "history.sqlite"
    _history(history)
    snap = tmp_path / "incident.trimtab"
    (tmp_path / "none.toml").write_text("")
    run = [sys.executable, "-m", "trimtab.app.cli.main", "snapshot"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    export = subprocess.run([*run, "export", "--from=1700000010", "--to=1700000100",
                             "--out", str(snap), "--store", str(history),
                             "--targets", str(tmp_path / "none.toml")],
                            capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    bad = subprocess.run([*run, "charts", str(snap), "--out", str(tmp_path / "c.gif")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and ".png, .svg or .csv" in bad.stderr
    for ext in ("csv", "svg"):
        done = subprocess.run([*run, "charts", str(snap), "--page", "overview",
                               "--out", str(tmp_path / f"c.{ext}")],
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
    csvs = sorted(tmp_path.glob("c-overview-*.csv"))
    assert csvs, list(tmp_path.iterdir())
    latency = next(p for p in csvs if "p95" in p.name)
    header = latency.read_text().splitlines()[0]
    assert "time (unix s)" in header and "/r" in header and "(s)" in header
    assert len(latency.read_text().splitlines()) > 10
    assert sorted(tmp_path.glob("c-overview-*.svg"))
    missing = subprocess.run([*run, "charts", str(tmp_path / "nope.trimtab"),
                              "--out", str(tmp_path / "c.png")],
                             capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
