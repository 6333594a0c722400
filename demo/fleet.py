"""The demo fleet: three API instances, the built-in balancer and a traffic generator."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from trimtab.agent.procs import free_port, spawn, stop_all, wait_http

from .app import DEMO_LIMIT_ENV

DEMO_COMMANDS = ("instance", "loadgen")  # python -m trimtab.demo; the rest is the agent's


def spawn_demo(args: Sequence[str], log_path: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m trimtab.demo <args>`` (an API instance or the traffic generator)."""
    return spawn(args, log_path, env, module="trimtab.demo")

INSTANCE_SLOWNESS = {"api-1": 1.0, "api-2": 1.0, "api-3": 2.5}


@dataclass
class Target:
    """Something the cockpit scrapes."""

    name: str
    url: str
    kind: str  # "instance" or "balancer"
    token: str = field(default="", repr=False)  # read token for /_trimtab/ (traces, config)


@dataclass
class DemoFleet:
    """Starts the demo processes on free loopback ports; ``stop()`` leaves none behind.

    Every agent gets the same two fresh tokens: ``read_token`` (the cockpit reads traces
    and config with it) and ``write_token`` (the operator's, for changes).

    Logs and agent state go to ``log_dir``; without one the fleet makes a temporary
    ``workdir`` and ``stop()`` removes it (a caller's ``log_dir`` is left alone).
    """

    rps: float = 100.0
    log_dir: str | None = None
    read_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    write_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    # One key-id secret for the fleet: the greedy client's API key has one id on every
    # instance, so the Limits page's top keys add its refusals up (TRIMTAB_KEYID_SECRET).
    keyid_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    balancer_url: str = ""
    workdir: str = ""  # logs, agent state (and the cockpit's history): log_dir or a temp dir
    owns_workdir: bool = False

    def __post_init__(self) -> None:
        if self.log_dir is None:
            self.workdir, self.owns_workdir = tempfile.mkdtemp(prefix="trimtab-demo-"), True
        else:
            self.workdir = self.log_dir

    def start(self) -> DemoFleet:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        backends = []
        for name, slowness in INSTANCE_SLOWNESS.items():
            port = free_port()
            proc = self._spawn(name, ["instance", "--name", name, "--port", str(port),
                                      "--slowness", str(slowness)])
            url = f"http://127.0.0.1:{port}"
            backends.append((name, url, proc))
            self.targets.append(Target(name, f"{url}/metrics", "instance", self.read_token))
        for _, url, proc in backends:
            wait_http(f"{url}/metrics", proc)
        port = free_port()
        spec = [f"{name}={url}" for name, url, _ in backends]
        proc = self._spawn("balancer", ["balance", "--port", str(port), *spec])
        self.balancer_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.balancer_url}/_trimtab/metrics", proc)
        self.targets.append(Target("balancer", f"{self.balancer_url}/_trimtab/metrics", "balancer",
                                   self.read_token))
        self._spawn("loadgen", ["loadgen", "--url", self.balancer_url, "--rps", str(self.rps)])

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = os.path.join(self.workdir, f"{name}.log")
        state = os.path.join(self.workdir, "state", name)
        os.makedirs(state, exist_ok=True)
        env = {"TRIMTAB_TOKENS": f"operator:write:{self.write_token},cockpit:read:{self.read_token}",
               "TRIMTAB_STATE_DIR": state, "TRIMTAB_KEYID_SECRET": self.keyid_secret}
        if args[0] == "instance":  # the instances start with the demo's shadow rate limit
            env[DEMO_LIMIT_ENV] = "1"
        proc = (spawn_demo if args[0] in DEMO_COMMANDS else spawn)(args, log, env)
        self.procs.append(proc)
        return proc

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def instance_url(self) -> str:
        """The first API instance's base URL (its control API is under /_trimtab/)."""
        first = next(t for t in self.targets if t.kind == "instance")
        return first.url.removesuffix("/metrics")

    def curl_example(self, base_url: str | None = None) -> str:
        """A ready-to-paste write with the demo's token: drop an instance's cached products."""
        url = f"{base_url or self.instance_url()}/_trimtab/cache/invalidate"
        body = '{"route": "/products/{id}", "reason": "tried from curl"}'
        return shlex.join(["curl", "-s", "-X", "POST", "-H",
                           f"Authorization: Bearer {self.write_token}", "-H",
                           "Content-Type: application/json", "-d", body, url])

    def token_lines(self) -> list[str]:
        """What the demo prints for the operator: the write token and a curl to try it.

        The token is fresh per run and valid only for this demo's loopback agents, so
        showing it is the point (a real fleet's tokens are never printed).
        """
        return [f"trimtab: demo write token (this run only): {self.write_token}",
                f"trimtab: try it: {self.curl_example()}"]

    def stop(self) -> None:
        """Stop every process; remove the temporary workdir when the fleet made it."""
        stop_all(self.procs)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DemoFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
