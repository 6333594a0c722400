"""Slow clients are cut off and a connection cap holds, on every server the agent starts.

Each server is the process users run (``python -m trimtab.demo instance``,
``python -m trimtab.agent.balance.proxy``, ``python -m trimtab.agent.balance.haproxy`` in front of
a real haproxy) on a loopback port, with short limits given on its command line.
The attackers are raw sockets sending a request one byte at a time (slowloris),
or opening connections and sending nothing. Bounds are generous (many times the
configured timeouts): the test proves the connections get closed, not how fast.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from trimtab.agent.procs import free_port, stop_all

from tests.agent.balance.test_haproxy import HAProxy, backends  # noqa: F401 - module fixture
from tests.conftest import require_binary

SECRET_W, SECRET_R = "slow-w-secret", "slow-r-secret"
TOKENS = f"admin:write:{SECRET_W},viewer:read:{SECRET_R}"
LIMITS = ["--header-timeout", "1", "--body-timeout", "2", "--max-connections", "16"]
MAX_CONNECTIONS = 16
BOUND = 30.0  # seconds: far above the 1-2 s limits, so a slow CI box does not matter


@dataclass
class Agent:
    """A running agent server and the requests that exercise it."""

    kind: str
    port: int
    probe: str        # a GET a normal client makes (read token)
    upload: str       # a PATCH that reads its body (write token)
    log: Path

    def normal_request_ok(self) -> bool:
        resp = httpx.get(f"http://127.0.0.1:{self.port}{self.probe}", timeout=10,
                         headers={"authorization": f"Bearer {SECRET_R}"})
        return resp.status_code == 200


@pytest.fixture(params=["instance", "balancer", "haproxy"])
def agent(request: pytest.FixtureRequest, tmp_path: Path,
          backends: dict[str, str]) -> Iterator[Agent]:  # noqa: F811
    kind, port = request.param, free_port()
    started: list[subprocess.Popen[bytes]] = []
    hp: HAProxy | None = None
    try:
        if kind == "instance":
            args = ["-m", "trimtab.demo", "instance", "--name", "api", "--slowness", "0"]
            probe, upload = "/metrics", "/_trimtab/config"
        elif kind == "balancer":
            args = ["-m", "trimtab.agent.balance.proxy", *(f"{n}={u}" for n, u in backends.items())]
            probe, upload = "/_trimtab/balancer", "/_trimtab/balancer"
        else:
            hp = HAProxy(require_binary("haproxy"), tmp_path, backends)
            hp.wait_ready()
            args = ["-m", "trimtab.agent.balance.haproxy", "--socket", hp.sock, "--backend", "be"]
            probe, upload = "/_trimtab/balancer", "/_trimtab/balancer"
        log = tmp_path / f"{kind}.log"
        with open(log, "wb") as out:
            started.append(subprocess.Popen(
                [sys.executable, *args, "--port", str(port), *LIMITS],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "TRIMTAB_TOKENS": TOKENS, "TRIMTAB_STATE_DIR": str(tmp_path)}))
        found = Agent(kind, port, probe, upload, log)
        deadline = time.monotonic() + BOUND
        while True:
            assert started[0].poll() is None, log.read_text()
            try:
                if found.normal_request_ok():
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "agent did not answer"
            time.sleep(0.05)
        yield found
    finally:
        stop_all(started)
        if hp is not None:
            hp.stop()


class Attacker:
    """One raw connection: what it was sent back, and when the server closed it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.received = b""
        self.closed_at: float | None = None

    def poll(self) -> None:
        """Read what the server sent; notice when it hung up."""
        if self.closed_at is not None:
            return
        while select.select([self.sock], [], [], 0)[0]:
            try:
                chunk = self.sock.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed_at = time.monotonic()
                return
            self.received += chunk

    def trickle(self, byte: bytes = b"x") -> None:
        """Send one more byte, unless the server already answered or hung up."""
        if self.closed_at is None and not self.received:
            try:
                self.sock.send(byte)
            except (ConnectionResetError, BrokenPipeError):
                self.closed_at = time.monotonic()

    def close(self) -> None:
        self.sock.close()


def attack(attackers: list[Attacker], agent: Agent, start: bytes,
           probe_during: bool = True) -> None:
    """Send ``start`` on each, then one byte per 0.2 s until all are closed (or BOUND)."""
    for a in attackers:
        a.sock.sendall(start)
    served_during_attack = not probe_during
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        for a in attackers:
            a.poll()
            a.trickle()
        if not served_during_attack:
            # A normal client is served while the slow ones hold their connections.
            served_during_attack = agent.normal_request_ok()
        if all(a.closed_at is not None for a in attackers):
            break
        time.sleep(0.2)
    still_open = sum(a.closed_at is None for a in attackers)
    assert still_open == 0, f"{still_open} of {len(attackers)} slow connections still open"
    assert served_during_attack


def test_slow_headers_are_cut_off(agent: Agent) -> None:
    attackers = [Attacker(agent.port) for _ in range(12)]
    try:
        attack(attackers, agent, b"GET " + agent.probe.encode() + b" HTTP/1.1\r\nHost: x\r\nX-A: ")
        for a in attackers:
            assert a.received.startswith(b"HTTP/1.1 408 "), a.received[:200]
    finally:
        for a in attackers:
            a.close()
    assert agent.normal_request_ok()


def test_slow_bodies_are_cut_off(agent: Agent) -> None:
    head = (f"PATCH {agent.upload} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET_W}\r\n"
            "If-Match: *\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
            ).encode()
    attackers = [Attacker(agent.port) for _ in range(6)]
    try:
        attack(attackers, agent, head + b'{"reason": "')
        for a in attackers:
            assert a.received.startswith(b"HTTP/1.1 408 "), a.received[:200]
    finally:
        for a in attackers:
            a.close()
    assert agent.normal_request_ok()
    assert SECRET_W not in agent.log.read_text(errors="replace")


def test_connections_beyond_the_cap_are_refused_then_served_again(agent: Agent) -> None:
    # Silent connections up to the cap (their header deadline will close them) ...
    idle = [Attacker(agent.port) for _ in range(MAX_CONNECTIONS)]
    extra: list[Attacker] = []
    try:
        time.sleep(0.2)  # let the server accept them all before the next ones arrive
        extra = [Attacker(agent.port) for _ in range(4)]
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and not all(a.closed_at for a in idle + extra):
            for a in idle + extra:
                a.poll()
            time.sleep(0.05)
        # ... the ones over the cap got a clear 503 and were closed; the silent ones
        # were closed too (no request under way: no answer, just like a keep-alive close).
        for a in extra:
            assert a.received.startswith(b"HTTP/1.1 503 "), a.received[:200]
        assert all(a.closed_at is not None for a in idle)
        assert all(a.received == b"" for a in idle)
    finally:
        for a in idle + extra:
            a.close()
    assert agent.normal_request_ok()  # the cap is free again
