"""The demo shows its write token (terminal and window) and leaves no temporary directory
behind, however it is stopped (issue 20.14)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.demo.fleet import DemoFleet

TOKEN_LINE = re.compile(r"^trimtab: demo write token \(this run only\): (\S+)$")


def _read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if pattern in line:
            return seen[-1]
    raise AssertionError(f"the demo ended before printing {pattern!r}:\n" + "\n".join(seen))


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_demo_prints_a_working_token_and_cleans_up(tmp_path: Path, stop: signal.Signals) -> None:
    temp = tmp_path / "tmp"  # the demo's tempfile.mkdtemp lands here, and only here
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "QT_QPA_PLATFORM": "offscreen",
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "trimtab.app.cli.main", "demo"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        token_line = _read_until(proc, "demo write token", seen)
        match = TOKEN_LINE.match(token_line)
        assert match, token_line
        token = match.group(1)
        curl = _read_until(proc, "curl ", seen).split("try it: ", 1)[1]
        assert token in curl
        _read_until(proc, "cockpit open", seen)
        assert any(temp.iterdir())  # the history and logs live in a temporary directory
        # The printed example, pasted into a shell as is: a write the agent accepts.
        answer = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30)
        assert answer.returncode == 0, answer.stderr
        assert '"dropped"' in answer.stdout, answer.stdout
        # The same token works against the control API; a wrong one does not.
        base = shlex.split(curl)[-1].removesuffix("/_trimtab/cache/invalidate")
        journal = httpx.get(f"{base}/_trimtab/journal",
                            headers={"authorization": f"Bearer {token}"}, timeout=10).json()
        assert any(e["reason"] == "tried from curl" for e in journal["entries"])
        assert httpx.get(f"{base}/_trimtab/journal", headers={"authorization": "Bearer nope"},
                         timeout=10).status_code == 401
        proc.send_signal(stop)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    seen += proc.stdout.read().splitlines()
    assert list(temp.iterdir()) == [], "\n".join(seen)  # the temporary directory is gone
    assert all(token not in line for line in seen[seen.index(token_line) + 2:])  # said twice


def test_window_shows_the_demo_token(qtbot) -> None:
    from trimtab.app.ui.demo_info import show_demo_info
    from trimtab.app.ui.window import MainWindow

    fleet = DemoFleet()  # not started: its tokens and examples exist already
    window = MainWindow(FleetModel())
    qtbot.addWidget(window)
    show_demo_info(window, fleet.write_token, fleet.curl_example("http://127.0.0.1:1"))
    window.show()
    label = window.demo_token_label
    assert label.isVisible()
    assert fleet.write_token in label.text()
    assert "curl" in label.toolTip() and fleet.write_token in label.toolTip()
    action = window.demo_about_action
    assert action.text() == "About this demo…"
    window.close()
    fleet.stop()  # removes the temporary directory the fleet made
    assert not os.path.exists(fleet.workdir)
