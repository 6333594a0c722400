"""The agent's command line refuses an unsafe bind before it opens a socket."""

from __future__ import annotations

import subprocess
import sys


def test_non_loopback_bind_without_tls_is_refused() -> None:
    proc = subprocess.run([sys.executable, "-m", "trimtab.agent", "instance", "--port", "1",
                           "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "without TLS" in proc.stderr
