"""Every agent and demo server refuses an unsafe bind before it opens a socket, whichever way it is run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from trimtab.agent.procs import free_port

UNSAFE = {
    "demo instance": ["-m", "trimtab.demo", "instance"],
    "balance": ["-m", "trimtab.agent", "balance", "s1=http://127.0.0.1:9"],
    "balancer module": ["-m", "trimtab.agent.balance.proxy", "s1=http://127.0.0.1:9"],
    "haproxy": ["-m", "trimtab.agent", "haproxy", "--socket", "/nonexistent", "--backend", "be"],
    "haproxy module": ["-m", "trimtab.agent.balance.haproxy", "--socket", "/nonexistent",
                       "--backend", "be"],
}


@pytest.mark.parametrize("args", UNSAFE.values(), ids=UNSAFE.keys())
def test_non_loopback_bind_without_tls_is_refused(args: list[str]) -> None:
    # A free port: if the guard were skipped the server would really start (and be killed).
    proc = subprocess.Popen([sys.executable, *args, "--port", str(free_port()),
                             "--host", "0.0.0.0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{' '.join(args)} served on 0.0.0.0 without TLS")
    assert proc.returncode != 0
    assert "without TLS" in err


@pytest.mark.parametrize("option", ["--header-timeout", "--body-timeout", "--max-connections"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "abc"])
def test_limits_must_be_positive_numbers(option: str, value: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "trimtab.demo", "instance", "--port", "1",
                           option, value], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"argument {option}" in proc.stderr  # not "unrecognized"
