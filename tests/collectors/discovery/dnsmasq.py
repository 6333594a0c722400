"""A real dnsmasq on a loopback port chosen at run time, serving records a test writes.

Unprivileged: ``--port``, no daemon, no config file, no /etc/hosts, no upstream servers.
A records come from ``--addn-hosts`` (re-read on SIGHUP: :meth:`Dnsmasq.reload`), SRV
records from ``--srv-host`` (fixed for the process's life); ``--local=/test/`` makes it
answer NXDOMAIN for other ``.test`` names (it has no upstream and would answer REFUSED).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver
import pytest
from trimtab.agent.procs import free_port, stop_all

from tests.support import wait_for


@dataclass
class Dnsmasq:
    proc: subprocess.Popen[bytes]
    port: int
    hosts: Path

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def write_hosts(self, entries: Sequence[tuple[str, str]]) -> None:
        """Replace the hosts file with ``(ip, name)`` lines (call :meth:`reload` after)."""
        tmp = self.hosts.with_suffix(".tmp")
        tmp.write_text("".join(f"{ip} {name}\n" for ip, name in entries))
        tmp.replace(self.hosts)

    def reload(self) -> None:
        """SIGHUP: dnsmasq re-reads its addn-hosts files and clears its cache."""
        self.proc.send_signal(signal.SIGHUP)

    def resolve(self, name: str, kind: str = "A") -> list[str]:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], self.port, 2.0
        try:
            return sorted(r.to_text() for r in resolver.resolve(name, kind, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []


@contextlib.contextmanager
def dnsmasq(tmp: Path, hosts: Sequence[tuple[str, str]] = (), srv: Sequence[str] = (),
            probe: str = "ready.test") -> Iterator[Dnsmasq]:
    """Start dnsmasq serving ``hosts`` and ``srv`` (``--srv-host`` values); stop it after."""
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(binary).exists():
        pytest.fail("dnsmasq is not installed (run.sh installs dnsmasq-base for the tests)")
    path = tmp / "dns-hosts"
    port = free_port()
    server = Dnsmasq(None, port, path)  # type: ignore[arg-type]
    server.write_hosts([*hosts, ("127.0.0.1", probe)])
    log = (tmp / "dnsmasq.log").open("wb")
    cmd = [binary, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
           "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
           "--no-negcache", "--local-ttl=0", "--local=/test/", f"--addn-hosts={path}", "--pid-file=",
           "--user=", *(f"--srv-host={s}" for s in srv)]
    server.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_for(lambda: _answers(server, probe), timeout=30, what="dnsmasq answering")
        yield server
    finally:
        stop_all([server.proc])


def _answers(server: Dnsmasq, probe: str) -> bool:
    if server.proc.poll() is not None:
        raise RuntimeError(f"dnsmasq exited with {server.proc.returncode}; see its log")
    try:
        return bool(server.resolve(probe))
    except dns.exception.DNSException:
        return False
