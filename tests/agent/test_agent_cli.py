"""The agent's and the demo's command lines refuse an unsafe bind before they open a socket."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", [["trimtab.demo", "instance"],
                                     ["trimtab.agent", "balance", "a=http://127.0.0.1:1"]])
def test_non_loopback_bind_without_tls_is_refused(command: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", command[0], *command[1:], "--port", "1",
                           "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "without TLS" in proc.stderr
