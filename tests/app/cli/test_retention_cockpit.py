"""The real ``trimtab`` process keeps its history: old raw blocks are rolled up and deleted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from trimtab.app.store.codec import Points
from trimtab.app.store.store import Store

TIMEOUT_S = 60.0


def _seed(path: Path, start: float) -> None:
    """12 raw blocks of 20 cycles, 10 s apart, two days before now."""
    with Store(path, chunk_cycles=20) as store:
        for i in range(240):
            store.write_cycle(start + 10.0 * i, [("old", "seeded_total", (), float(i))])


def _tiers(path: Path, start: float) -> dict[int, int]:
    """Blocks per tier that hold seeded time, read-only beside the running cockpit."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT tier, COUNT(*) FROM blocks WHERE t0 < ? GROUP BY tier",
                                 (start + 2400,)).fetchall())
    finally:
        conn.close()


def _live_cycles(path: Path) -> int:
    """Cycles the cockpit wrote itself (not yet folded: the head)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM head").fetchone()[0]
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.stdout.read() if proc.stdout else ""


def test_the_cockpit_rolls_up_and_deletes_old_raw_history(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "metrics").write_text("# TYPE tiny_total counter\ntiny_total 1\n")
    start = time.time() - 2 * 86400
    start -= start % 3600
    store = tmp_path / "history.sqlite"
    _seed(store, start)
    assert _tiers(store, start) == {0: 12}
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "x")}
    target = subprocess.Popen(  # a tiny real target: a static /metrics file over HTTP
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
         str(www)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    cockpit: subprocess.Popen[str] | None = None
    try:
        assert target.stdout is not None
        port = int(target.stdout.readline().split(" port ")[1].split()[0])
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "targets.toml").write_text(
            f'[[target]]\nname = "tiny"\nurl = "http://127.0.0.1:{port}/metrics"\n')
        (conf / "settings.toml").write_text('[history]\nretention_raw = "1h"\n')
        cockpit = subprocess.Popen(
            [sys.executable, "-m", "trimtab.app.cli.main", "cockpit", "--targets",
             str(conf / "targets.toml"), "--store", str(store), "--history-cap", "1GB"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and cockpit.poll() is None:
            tiers = _tiers(store, start)
            if tiers.get(0, 0) == 0 and tiers.get(1) and tiers.get(2) and _live_cycles(store):
                break
            time.sleep(0.5)
        assert cockpit.poll() is None, _stop(cockpit)
        assert _tiers(store, start) == {1: 1, 2: 1}  # raw went, both rollups hold it
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        blobs = conn.execute(
            "SELECT b.tier, c.blob FROM chunks c JOIN blocks b ON b.id = c.block_id "
            "JOIN series s ON s.id = c.series_id WHERE s.name = 'seeded_total'").fetchall()
        conn.close()
        for tier, blob in blobs:
            points = Points.decode(blob)
            step = 60 if tier == 1 else 600
            assert points.last.tolist() == [min(i + step // 10 - 1, 239)
                                            for i in range(0, 240, step // 10)]
            assert points.cnt.tolist() == [min(step // 10, 240 - i)
                                           for i in range(0, 240, step // 10)]
            assert np.all(np.diff(points.t) > 0)
        assert _live_cycles(store) > 0  # the cockpit kept writing its own cycles
    finally:
        out = _stop(cockpit) if cockpit is not None else ""
        _stop(target)
    assert "keeps raw 1 h · 1 min steps 7 d · 10 min steps 90 d · cap 1 GB" in out, out
