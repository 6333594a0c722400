"""The HAProxy runtime client and adapter against a real haproxy and real uvicorn backends."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from trimtab.agent.balance.haproxy import (
    HAProxyAdapter,
    HAProxyRefused,
    HAProxyTimeout,
    HAProxyUnavailable,
    InvalidInput,
    RuntimeClient,
)
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.demo.fleet import spawn_demo

from tests.conftest import require_binary
from tests.support import haproxy_config


class HAProxy:
    """A master-worker haproxy (``-W``) so that SIGUSR2 performs a real reload."""

    def __init__(self, binary: str, workdir: Path, backends: dict[str, str]) -> None:
        self.sock = str(workdir / "admin.sock")
        self.tcp = free_port()
        self.port = free_port()
        self.cfg = workdir / "haproxy.cfg"
        addresses = {k: v.removeprefix("http://") for k, v in backends.items()}
        # Two backends over the same servers: "be" round-robin, "bs" static-rr.
        self.cfg.write_text(haproxy_config(self.port, addresses, sock=self.sock, tcp=self.tcp,
                                           backends={"be": "roundrobin", "bs": "static-rr"}))
        self.log = open(workdir / "haproxy.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, "-W", "-db", "-f", str(self.cfg)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.client = RuntimeClient(self.sock, timeout=2.0)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, old_pid: str | None = None, timeout: float = 15.0) -> str:
        """Poll ``show info`` until a worker (other than ``old_pid``) answers; its Pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}")
            try:
                pid = self.client.show_info()["Pid"]
                if pid != old_pid:
                    return pid
            except (HAProxyUnavailable, HAProxyTimeout):
                pass
            time.sleep(0.05)
        raise TimeoutError("haproxy did not answer on its stats socket")

    def reload(self) -> str:
        """SIGUSR2 to the master: a new worker with the configured (not runtime) weights."""
        old = self.client.show_info()["Pid"]
        # The master installs its signal handlers a moment after the first worker answers;
        # a signal sent before that is lost, so repeat it until a new worker shows up.
        for _ in range(20):
            self.proc.send_signal(signal.SIGUSR2)
            try:
                new = self.wait_ready(old_pid=old, timeout=1.0)
            except TimeoutError:
                continue
            # Until the old worker exits it may still answer on the socket, so two
            # connections can reach different workers; wait for the hand-over to finish.
            deadline = time.monotonic() + 10.0
            while _pid_alive(int(old)) and time.monotonic() < deadline:
                time.sleep(0.05)
            return new
        raise TimeoutError("haproxy did not reload")

    def stop(self) -> None:
        try:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, str]]:
    """Two real uvicorn demo instances that answer immediately and name themselves."""
    procs, urls = [], {}
    try:
        for name in ("s1", "s2"):
            port = free_port()
            procs.append(spawn_demo(["instance", "--name", name, "--port", str(port),
                                "--slowness", "0"]))
            urls[name] = f"http://127.0.0.1:{port}"
        for proc, url in zip(procs, urls.values()):
            wait_http(f"{url}/metrics", proc)
        yield urls
    finally:
        stop_all(procs)


@pytest.fixture
def haproxy(tmp_path: Path, backends: dict[str, str]) -> Iterator[HAProxy]:
    hp = HAProxy(require_binary("haproxy"), tmp_path, backends)
    try:
        hp.wait_ready()
        yield hp
    finally:
        hp.stop()


def send(url: str, n: int, concurrency: int = 8) -> collections.Counter[str]:
    """``n`` GETs through the balancer; how many each backend instance answered.

    A minimal HTTP/1.1 keep-alive client (Content-Length bodies only): httpx costs
    more CPU per request than the balancers under test on this 2-core machine.
    """
    host, _, port = url.removeprefix("http://").partition(":")

    async def worker(jobs: Iterator[int], counts: collections.Counter[str]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in jobs:
                writer.write(f"GET /search?q={i} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                assert head.startswith("http/1.1 200"), head
                length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
                counts[json.loads(await reader.readexactly(length))["instance"]] += 1
        finally:
            writer.close()

    async def run() -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        jobs = iter(range(n))
        await asyncio.wait_for(asyncio.gather(*(worker(jobs, counts)
                                                for _ in range(concurrency))), 60)
        return counts

    return asyncio.run(run())


def lbtot(adapter: HAProxyAdapter) -> dict[str, int]:
    return {s.name: s.picks for s in adapter.servers()}


def test_weight_change_shows_in_get_weight_and_in_the_traffic(haproxy: HAProxy) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be")
    adapter.set_weight("s1", 3)
    assert haproxy.client.get_weight("be", "s1") == (3, 1)
    assert haproxy.client.get_weight("be", "s2") == (1, 1)
    before = lbtot(adapter)
    counts = send(haproxy.url, 2000)
    after = lbtot(adapter)
    assert sum(counts.values()) == 2000
    assert 0.70 <= counts["s1"] / 2000 <= 0.80, counts
    # lbtot (parsed from show stat by header name) counts the same choices the bodies show.
    assert {k: after[k] - before[k] for k in after} == dict(counts)
    assert {s.name: s.weight for s in adapter.servers()} == {"s1": 3, "s2": 1}


def test_drain_stops_new_traffic_and_ready_brings_it_back(haproxy: HAProxy) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be")
    adapter.set_state("s2", "drain")
    assert {s.name: s.state for s in adapter.servers()} == {"s1": "ready", "s2": "drain"}
    assert send(haproxy.url, 200) == {"s1": 200}
    adapter.set_state("s2", "ready")
    counts = send(haproxy.url, 200)
    assert counts["s2"] >= 80, counts
    adapter.set_state("s1", "maint")
    assert {s.name: s.state for s in adapter.servers()}["s1"] == "maint"
    assert send(haproxy.url, 50) == {"s2": 50}


def test_reload_loses_runtime_weights_and_the_adapter_restores_them(haproxy: HAProxy) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be", reapply=True)
    assert not adapter.check_reload().reloaded  # first look: remember who runs
    adapter.set_weight("s1", 3)
    adapter.set_state("s2", "drain")
    new_pid = haproxy.reload()
    # The premise: a reload really drops runtime changes.
    assert haproxy.client.get_weight("be", "s1") == (1, 1)
    report = adapter.check_reload()
    assert report.reloaded and report.new_pid == new_pid and report.old_pid != new_pid
    assert {(d.server, d.field) for d in report.reapplied} == {("s1", "weight"), ("s2", "state")}
    assert report.drift == []
    assert haproxy.client.get_weight("be", "s1") == (3, 1)
    assert send(haproxy.url, 40) == {"s1": 40}


def test_reload_reports_drift_when_told_not_to_reapply(haproxy: HAProxy) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be", reapply=False)
    adapter.check_reload()
    adapter.set_weight("s1", 5)
    haproxy.reload()
    report = adapter.check_reload()
    assert report.reloaded and report.reapplied == []
    assert [(d.server, d.field, d.desired, d.actual) for d in report.drift] == [
        ("s1", "weight", 5, 1)]
    assert haproxy.client.get_weight("be", "s1") == (1, 1)


def test_restore_refused_by_the_new_config_is_reported_and_retried(haproxy: HAProxy) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be", reapply=True)
    adapter.check_reload()
    adapter.set_weight("s1", 3)
    config = haproxy.cfg.read_text()
    haproxy.cfg.write_text(config.replace("backend be\n  balance roundrobin",
                                          "backend be\n  balance static-rr"))
    haproxy.reload()
    report = adapter.check_reload()
    assert report.reloaded and report.reapplied == []
    assert [(d.server, d.field) for d, _ in report.failed] == [("s1", "weight")]
    assert "static LB algorithm" in report.failed[0][1]
    assert [(d.desired, d.actual) for d in report.drift] == [(3, 1)]
    assert adapter.check_reload().failed  # still pending: retried on every check
    haproxy.cfg.write_text(config)
    haproxy.reload()
    assert [d.field for d in adapter.check_reload().reapplied] == ["weight"]
    assert haproxy.client.get_weight("be", "s1") == (3, 1)
    assert adapter.check_reload().reapplied == []  # done: nothing pending any more


def test_out_of_band_change_is_drift_not_fought(haproxy: HAProxy) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be", reapply=True)
    adapter.set_weight("s1", 3)
    assert adapter.check_reload().reapplied == []
    haproxy.client.set_weight("be", "s1", 7)  # someone with socat, no reload
    report = adapter.check_reload()
    assert not report.reloaded and report.reapplied == []
    assert [(d.field, d.desired, d.actual) for d in report.drift] == [("weight", 3, 7)]
    assert haproxy.client.get_weight("be", "s1") == (7, 1)


def test_tcp_runtime_socket(haproxy: HAProxy) -> None:
    tcp = RuntimeClient(f"ipv4@127.0.0.1:{haproxy.tcp}", timeout=2.0)
    tcp.set_weight("be", "s2", 7)
    assert haproxy.client.get_weight("be", "s2") == (7, 1)
    rows = tcp.show_stat()
    assert {(r["pxname"], r["svname"]) for r in rows} >= {("be", "s1"), ("be", "BACKEND")}


@pytest.mark.parametrize("weight", [9000, -1, "abc", 2.5, True, None, 257])
def test_bad_weight_is_refused_before_sending_and_nothing_changes(haproxy: HAProxy,
                                                                  weight: object) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be")
    with pytest.raises(InvalidInput, match="weight"):
        adapter.set_weight("s1", weight)
    assert haproxy.client.get_weight("be", "s1") == (1, 1)
    assert adapter.desired == {}


def test_haproxy_own_refusals_surface_as_clear_errors(haproxy: HAProxy) -> None:
    adapter = HAProxyAdapter(haproxy.client, "be")
    with pytest.raises(HAProxyRefused, match="No such server"):
        adapter.set_weight("nope", 2)
    with pytest.raises(HAProxyRefused, match="static LB algorithm"):
        haproxy.client.set_weight("bs", "s1", 3)
    with pytest.raises(HAProxyRefused, match="No such backend"):
        haproxy.client.set_weight("nobackend", "s1", 3)
    with pytest.raises(HAProxyRefused, match="no backend named"):
        HAProxyAdapter(haproxy.client, "nobackend").servers()
    assert haproxy.client.get_weight("bs", "s1") == (1, 1)
    assert adapter.desired == {}


@pytest.mark.parametrize("name", ["s1; set weight be/s2 0", "s1\nshutdown", "", "a b"])
def test_names_that_could_inject_commands_are_refused(haproxy: HAProxy, name: str) -> None:
    with pytest.raises(InvalidInput, match="server"):
        HAProxyAdapter(haproxy.client, "be").set_weight(name, 0)
    assert haproxy.client.get_weight("be", "s2") == (1, 1)
    with pytest.raises(InvalidInput, match="state"):
        haproxy.client.set_state("be", "s1", "bogus")


def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    adapter = HAProxyAdapter(RuntimeClient(str(tmp_path / "absent.sock"), timeout=1.0), "be")
    with pytest.raises(HAProxyUnavailable, match="absent.sock"):
        adapter.set_weight("s1", 2)
    with pytest.raises(HAProxyUnavailable):
        RuntimeClient(f"ipv4@127.0.0.1:{free_port()}", timeout=1.0).show_info()
    assert adapter.desired == {}


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_socket_that_accepts_but_never_answers_times_out(tmp_path: Path, family: str) -> None:
    # A listening socket nobody reads from: the kernel completes the connect, then silence.
    if family == "unix":
        path = str(tmp_path / "silent.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        address = path
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        address = f"ipv4@127.0.0.1:{listener.getsockname()[1]}"
    listener.listen(8)
    try:
        adapter = HAProxyAdapter(RuntimeClient(address, timeout=0.3), "be")
        with pytest.raises(HAProxyTimeout, match="no answer"):
            adapter.set_weight("s1", 2)
        with pytest.raises(HAProxyTimeout):
            adapter.servers()
        assert adapter.desired == {}
    finally:
        listener.close()
        if family == "unix":
            os.unlink(address)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by the master) no longer serves anything
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False
