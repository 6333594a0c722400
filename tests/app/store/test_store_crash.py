"""Crash safety: SIGKILL a writing process 20 times; every acknowledged cycle survives exactly.

The writer prints a cycle id only after ``write_cycle`` returned (committed).
It folds chunks every 7 cycles and rolls up every 40, so kills land in plain
cycle commits, folds and rollups alike.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from trimtab.app.store.store import Retention, SeriesKey, Store

KILLS = 20

ROWS_SRC = '''
import math

BASE = 1_700_000_000.0
STEP = 30.0


def rows_for(i):
    """Cycle i: counters, floats, NaN now and then, series that skip cycles, empty cycles."""
    rows = []
    if i % 13 == 0:
        return rows
    for k in range(24):
        if (i + k) % 11 == 0:
            continue
        value = float(i * (k + 1)) if k % 2 else math.sin(i * 0.37 + k) * 1e3
        if (i * 7 + k) % 17 == 0:
            value = math.nan
        rows.append((f"t{k % 3}", f"m{k % 4}", (("k", str(k)),), value))
    return rows
'''

WRITER_SRC = ROWS_SRC + '''
import sys
from trimtab.app.store.store import Retention, Store

store = Store(sys.argv[1], chunk_cycles=7, retention=Retention(raw=1e12))
last = store.last_cycle()
i = 0 if last is None else last[0]
while True:
    i += 1
    cycle = store.write_cycle(BASE + STEP * i, rows_for(i))
    assert cycle == i, (cycle, i)
    print(cycle, flush=True)
    if i % 40 == 0:
        store.apply_retention(BASE + STEP * i)
'''


def _run_and_kill(script: Path, db: Path, rng: random.Random) -> list[int]:
    """Start a writer, SIGKILL it at a random moment once it writes; return acknowledged ids."""
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while not sel.select(timeout=0.1):  # wait until the first commit is acknowledged
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "writer never committed a cycle"
        time.sleep(rng.uniform(0.0, 0.4))  # the random moment of the crash
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    return [int(line) for line in out.decode().split("\n")[:-1]]  # a torn last line is not acked


def test_sigkill_loses_no_acknowledged_cycle(tmp_path: Path) -> None:
    script, db = tmp_path / "writer.py", tmp_path / "crash.db"
    script.write_text(WRITER_SRC)
    ns: dict = {}
    exec(ROWS_SRC, ns)  # the same rows the writer wrote
    rng = random.Random(5)
    acked: list[int] = []
    for _ in range(KILLS):
        acked += _run_and_kill(script, db, rng)
    assert len(set(acked)) == len(acked) > KILLS  # no id acknowledged twice

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    store = Store(db, retention=Retention(raw=1e12))
    try:
        _check_contents(store, ns, set(acked))
    finally:
        store.close()


def _check_contents(store: Store, ns: dict, acked: set[int]) -> None:
    """Every acked cycle is there bit-exact; nothing else is there but the cycles in flight."""
    last = store.last_cycle()
    assert last is not None and last[0] >= max(acked)
    expected: dict[SeriesKey, tuple[list[float], list[float]]] = {}
    for i in range(1, last[0] + 1):
        for target, name, labels, value in ns["rows_for"](i):
            t, v = expected.setdefault(SeriesKey(target, name, labels), ([], []))
            t.append(ns["BASE"] + ns["STEP"] * i)
            v.append(value)
    stored_cycles: set[int] = set()
    for name in ("m0", "m1", "m2", "m3"):
        got = store.query(name, start=0.0, end=4e9, max_points=10**9)
        for key, (t, v) in got.items():
            assert t.tobytes() == np.array(expected[key][0]).tobytes(), key
            assert v.tobytes() == np.array(expected[key][1]).tobytes(), key
            stored_cycles |= {round((x - ns["BASE"]) / ns["STEP"]) for x in t.tolist()}
    with_rows = {i for i in range(1, last[0] + 1) if ns["rows_for"](i)}
    assert acked & with_rows <= stored_cycles == with_rows
    # rollups written between kills hold exact raw samples too ("last" per 60 s step)
    span = ns["STEP"] * last[0]
    rolled = store.query("m1", start=ns["BASE"], end=ns["BASE"] + span, max_points=int(span // 60))
    for key, (t, v) in rolled.items():
        raw = dict(zip(expected[key][0], expected[key][1]))
        assert len(t) > 0
        assert np.array([raw[x] for x in t.tolist()]).tobytes() == v.tobytes(), key
