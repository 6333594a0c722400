"""``trimtab demo`` as a user runs it: a real process tree, a PNG, and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from PySide6.QtGui import QImage


def _tagged_pids(tag: str) -> list[int]:
    """Processes whose environment carries ``tag`` (the demo's children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if f"TRIMTAB_TEST_TAG={tag}".encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _run_env(tag: str) -> dict[str, str]:
    return {**os.environ, "TRIMTAB_TEST_TAG": tag, "QT_QPA_PLATFORM": "offscreen"}


def _wait_gone(tag: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _tagged_pids(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_screenshot_mode_saves_a_png_and_exits_clean(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    png = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", "demo", "--screenshot",
                           str(png), "--after", "8"], env=_run_env(tag), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    image = QImage(str(png))
    assert not image.isNull()
    assert image.width() >= 800 and image.height() >= 500
    assert _wait_gone(tag) == []


def test_ctrl_c_stops_the_demo_and_its_children(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "trimtab.app.cli.main", "demo"], env=_run_env(tag),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the fleet is up once the balancer address is printed
            if "balancer at" in line:
                break
        assert len(_tagged_pids(tag)) >= 6  # the cockpit and its five children
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0  # generous: the shutdown is ~0.4 s, CI can be loaded
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _wait_gone(tag) == []
