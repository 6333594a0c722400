"""``TRIMTAB_COLLECTOR``: a bad value stops ``trimtab`` before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from trimtab.collectors.scrape_process import COLLECTOR_ENV


@pytest.mark.parametrize("command", ["cockpit", "demo"])
def test_a_bad_collector_setting_stops_the_start_by_name(tmp_path: Path, command: str) -> None:
    targets = tmp_path / "targets.toml"
    env = {**os.environ, COLLECTOR_ENV: "fibre", "QT_QPA_PLATFORM": "offscreen",
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    argv = ["cockpit", "--targets", str(targets)] if command == "cockpit" else ["demo"]
    proc = subprocess.run([sys.executable, "-m", "trimtab.app.cli.main", *argv], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{COLLECTOR_ENV} must be one of process, thread, not 'fibre'" in proc.stderr
    assert "starting the demo fleet" not in proc.stdout  # nothing was started
    assert not targets.exists() and not (tmp_path / "config").exists()
