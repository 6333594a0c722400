"""HAProxy runtime API: a bounded-timeout client and an adapter that owns desired state.

The runtime API (``stats socket ... level admin``) is line based: in
non-interactive mode HAProxy reads one command, writes its answer and closes.
Weight and state changes are lost on reload, so :class:`HAProxyAdapter` keeps
the state it was asked for, notices a reload through ``show info`` (Pid and
uptime) and either re-applies that state or reports the drift.
"""

from __future__ import annotations

import asyncio
import csv
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from .policies import BackendError, InvalidInput, ServerStatus, check_state, check_weight

T = TypeVar("T")

__all__ = ["Desired", "Drift", "HAProxyAdapter", "HAProxyBackend", "HAProxyError", "HAProxyRefused",
           "HAProxyTimeout", "HAProxyUnavailable", "InvalidInput", "ReloadReport",
           "RuntimeClient", "build_app", "check_name", "main"]

# srv_admin_state bits (HAProxy src/server.h): forced/inherited/config/resolver/health maint.
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_BITS = 0x08 | 0x10
# Names travel inside a text command: anything that could end or split it is refused.
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_WEIGHT_ANSWER = re.compile(r"^(\d+) \(initial:? (\d+)\)")


class HAProxyError(Exception):
    """Base class: the runtime API could not do what was asked."""


class HAProxyUnavailable(HAProxyError):
    """The socket is missing or refuses connections."""


class HAProxyTimeout(HAProxyError):
    """The socket accepted but did not answer within the timeout."""


class HAProxyRefused(HAProxyError):
    """HAProxy answered with its own error text (e.g. a static algorithm's weight rule)."""

    def __init__(self, command: str, answer: str) -> None:
        super().__init__(f"HAProxy refused {command!r}: {answer}")
        self.command = command
        self.answer = answer


def check_name(field_name: str, value: object) -> str:
    """``value`` if it is a safe backend/server name, else :class:`InvalidInput`."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(field_name, f"must match {_NAME.pattern}, got {value!r}")
    return value


@dataclass(frozen=True)
class RuntimeClient:
    """One connection per command to a UNIX socket path or ``ipv4@host:port``."""

    address: str
    timeout: float = 2.0

    def command(self, line: str) -> str:
        """Send one command, return HAProxy's whole answer; bounded by ``timeout`` in total."""
        if "\n" in line or "\r" in line or ";" in line:
            raise InvalidInput("command", "one command per call, no ';' or newlines")
        deadline = time.monotonic() + self.timeout
        try:
            with self._connect(deadline) as sock:
                sock.sendall(line.encode() + b"\n")
                return self._read_all(sock, deadline).decode(errors="replace")
        except TimeoutError as exc:
            raise HAProxyTimeout(f"{self.address}: no answer to {line.split()[0]!r} "
                                 f"within {self.timeout:g} s") from exc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise HAProxyUnavailable(f"{self.address}: {exc.strerror or exc}") from exc
        except OSError as exc:
            raise HAProxyUnavailable(f"{self.address}: {exc}") from exc

    def _connect(self, deadline: float) -> socket.socket:
        if self.address.startswith("ipv4@"):
            host, _, port = self.address[5:].rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target: object = (host, int(port))
        else:
            path = self.address.removeprefix("unix@")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = path
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(target)  # type: ignore[arg-type]
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _read_all(sock: socket.socket, deadline: float) -> bytes:
        chunks: list[bytes] = []
        while True:
            sock.settimeout(_remaining(deadline))
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def show_info(self) -> dict[str, str]:
        """``show info`` as a dict (``Pid``, ``Uptime_sec``, ``Version``, ...)."""
        answer = self.command("show info")
        info: dict[str, str] = {}
        for line in answer.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        if "Pid" not in info:
            raise HAProxyRefused("show info", answer.strip() or "empty answer")
        return info

    def show_stat(self) -> list[dict[str, str]]:
        """``show stat`` rows as dicts keyed by the CSV header names (never by position)."""
        answer = self.command("show stat")
        if not answer.startswith("# "):
            raise HAProxyRefused("show stat", answer.strip())
        lines = [ln for ln in answer[2:].splitlines() if ln.strip()]
        return [dict(row) for row in csv.DictReader(lines)]

    def show_servers_state(self, backend: str | None = None) -> list[dict[str, str]]:
        """``show servers state [B]`` rows keyed by the header's field names."""
        cmd = "show servers state" + (f" {check_name('backend', backend)}" if backend else "")
        answer = self.command(cmd)
        lines = answer.splitlines()
        header = next((ln for ln in lines if ln.startswith("# ")), None)
        if header is None:
            raise HAProxyRefused(cmd, answer.strip())
        names = header[2:].split()
        rows = [ln.split() for ln in lines if ln and not ln.startswith("#") and " " in ln]
        return [dict(zip(names, row)) for row in rows]

    def get_weight(self, backend: str, server: str) -> tuple[int, int]:
        """(current, initial) weight of ``backend/server``."""
        cmd = f"get weight {check_name('backend', backend)}/{check_name('server', server)}"
        answer = self.command(cmd).strip()
        match = _WEIGHT_ANSWER.match(answer)
        if match is None:
            raise HAProxyRefused(cmd, answer)
        return int(match.group(1)), int(match.group(2))

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        """``set weight B/S W``; HAProxy's refusal text becomes :class:`HAProxyRefused`."""
        w = check_weight(weight)
        self._set(f"set weight {check_name('backend', backend)}/{check_name('server', server)} {w}")

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``set server B/S state ready|drain|maint``."""
        st = check_state(state)
        self._set(f"set server {check_name('backend', backend)}/"
                  f"{check_name('server', server)} state {st}")

    def _set(self, cmd: str) -> None:
        # A successful set answers with an empty line; any text is HAProxy saying no.
        answer = self.command(cmd).strip()
        if answer:
            raise HAProxyRefused(cmd, answer)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


@dataclass(frozen=True)
class Drift:
    """A server whose live value differs from the desired one."""

    server: str
    field: str
    desired: object
    actual: object


@dataclass
class ReloadReport:
    """What :meth:`HAProxyAdapter.check_reload` found and did."""

    reloaded: bool
    old_pid: str | None
    new_pid: str | None
    drift: list[Drift] = field(default_factory=list)
    reapplied: list[Drift] = field(default_factory=list)
    failed: list[tuple[Drift, str]] = field(default_factory=list)


@dataclass
class Desired:
    """The weight/state the operator asked for; ``None`` means not managed."""

    weight: int | None = None
    state: str | None = None


class HAProxyAdapter:
    """One HAProxy backend seen as a list of servers with weight and state.

    ``desired`` holds what was asked through this adapter (seed it from the
    journal at start-up); after a reload it is re-applied when ``reapply`` is
    true, otherwise only reported as drift.
    """

    def __init__(self, client: RuntimeClient, backend: str, reapply: bool = True,
                 desired: dict[str, Desired] | None = None) -> None:
        self.client = client
        self.backend = check_name("backend", backend)
        self.reapply = reapply
        self.desired: dict[str, Desired] = dict(desired or {})
        self._identity: tuple[str, float] | None = None
        self._pending = False  # desired state still to be restored after a reload/start

    def servers(self) -> list[ServerStatus]:
        """Live weight, admin state, health and ``lbtot`` of every server in the backend."""
        stats = {r["svname"]: r for r in self.client.show_stat()
                 if r.get("pxname") == self.backend and r["svname"] not in ("FRONTEND", "BACKEND")}
        if not stats:
            raise HAProxyRefused("show stat", f"no backend named {self.backend!r}")
        states = {r["srv_name"]: r for r in self.client.show_servers_state(self.backend)}
        out = []
        for name, row in stats.items():
            st = states.get(name, {})
            admin = int(st.get("srv_admin_state", "0"))
            state = "maint" if admin & _MAINT_BITS else "drain" if admin & _DRAIN_BITS else "ready"
            status = row.get("status", "")
            out.append(ServerStatus(
                name=name, weight=int(st.get("srv_uweight") or row.get("weight") or 0),
                state=state, up=not status.startswith(("DOWN", "MAINT", "NOLB")),
                picks=int(row.get("lbtot") or 0), in_flight=int(row.get("scur") or 0),
                initial_weight=int(st["srv_iweight"]) if "srv_iweight" in st else None))
        return out

    def server_names(self) -> list[str]:
        """Names of the servers in the backend."""
        return [s.name for s in self.servers()]

    def set_weight(self, server: str, weight: int) -> None:
        """Apply and remember a weight (remembered only once HAProxy accepted it)."""
        self.client.set_weight(self.backend, check_name("server", server), weight)
        self.desired.setdefault(server, Desired()).weight = weight

    def set_state(self, server: str, state: str) -> None:
        """Apply and remember an admin state."""
        self.client.set_state(self.backend, check_name("server", server), state)
        self.desired.setdefault(server, Desired()).state = state

    def drift(self, live: Iterable[ServerStatus] | None = None) -> list[Drift]:
        """Differences between desired and live values."""
        by_name = {s.name: s for s in (live if live is not None else self.servers())}
        out = []
        for name, want in sorted(self.desired.items()):
            have = by_name.get(name)
            if have is None:
                out.append(Drift(name, "server", "present", "missing"))
                continue
            if want.weight is not None and want.weight != have.weight:
                out.append(Drift(name, "weight", want.weight, have.weight))
            if want.state is not None and want.state != have.state:
                out.append(Drift(name, "state", want.state, have.state))
        return out

    def check_reload(self) -> ReloadReport:
        """Detect a reload since the last call; re-apply desired state or report drift.

        Re-applies only after a reload, or on the first call (the agent just started
        and cannot know what happened while it was away). A change made behind
        the agent's back on a running HAProxy is reported as drift, never fought.
        """
        info = self.client.show_info()
        pid = info["Pid"]
        started = time.time() - float(info.get("Uptime_sec", "0"))
        old = self._identity
        # Same pid but a start time that moved means a restart that reused the pid.
        reloaded = old is not None and (old[0] != pid or abs(old[1] - started) > 5.0)
        if reloaded or old is None:
            self._pending = self.reapply
        self._identity = (pid, started)
        report = ReloadReport(reloaded, old[0] if old else None, pid, drift=self.drift())
        if self._pending and report.drift:
            report.reapplied, report.failed = self._reapply(report.drift)
            report.drift = self.drift()
        # A refused re-apply (e.g. the new config uses a static algorithm) is retried.
        self._pending = self._pending and bool(report.failed)
        return report

    def _reapply(self, drift: list[Drift]) -> tuple[list[Drift], list[tuple[Drift, str]]]:
        done: list[Drift] = []
        failed: list[tuple[Drift, str]] = []
        for d in drift:
            try:
                if d.field == "weight":
                    self.client.set_weight(self.backend, d.server, check_weight(d.desired))
                elif d.field == "state":
                    self.client.set_state(self.backend, d.server, check_state(d.desired))
                else:
                    continue  # a server that vanished from the config cannot be restored
            except (HAProxyRefused, InvalidInput) as err:
                failed.append((d, str(err)))
                continue
            done.append(d)
        return done, failed


async def runtime_call(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking runtime-API call off the event loop; its failures as the control
    API's answers (bad input or a refusal 422, no answer 504, anything else 503). Shared by
    the weights adapter and the rate-limit adapter (limits_haproxy.py)."""
    started = time.monotonic()
    try:
        return await asyncio.to_thread(fn, *args)
    except InvalidInput as err:
        raise BackendError(422, str(err)) from err
    except HAProxyRefused as err:
        raise BackendError(422, str(err)) from err
    except HAProxyTimeout as err:
        raise BackendError(504, f"{err} (after {time.monotonic() - started:.1f} s)") from err
    except HAProxyError as err:
        raise BackendError(503, str(err)) from err


class HAProxyBackend:
    """The control API's view of an :class:`HAProxyAdapter`; socket calls run in a thread."""

    def __init__(self, adapter: HAProxyAdapter) -> None:
        self.adapter = adapter
        self.target = f"haproxy/{adapter.backend}"
        self.policy = "haproxy"
        self.last_report: ReloadReport | None = None
        self.reloads = 0

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await runtime_call(fn, *args)

    async def servers(self) -> list[ServerStatus]:
        """Live servers from ``show stat`` and ``show servers state``."""
        return await self._call(self.adapter.servers)

    async def apply(self, server: str, field: str, value: Any) -> None:
        """``set weight`` or ``set server ... state``."""
        fn = self.adapter.set_weight if field == "weight" else self.adapter.set_state
        await self._call(fn, server, value)

    async def reconcile(self) -> list[dict[str, Any]]:
        """Detect a reload; journal-ready events for what was re-applied."""
        report = await self._call(self.adapter.check_reload)
        self.last_report = report
        self.reloads += report.reloaded
        if report.reloaded:
            why = (f"haproxy reloaded (pid {report.old_pid} -> {report.new_pid}); "
                   "restoring desired state")
        else:
            why = "agent start: restoring desired state from the journal"
        events = [{"who": "trimtab-agent", "what": f"servers.{d.server}.{d.field}",
                   "old": d.actual, "new": d.desired, "reason": why, "result": "accepted"}
                  for d in report.reapplied]
        if report.reloaded:  # journal a failed restore once, not on every retry
            events += [{"who": "trimtab-agent", "what": f"servers.{d.server}.{d.field}",
                        "old": d.actual, "new": d.desired, "reason": why, "result": "refused",
                        "detail": f"re-apply failed, will retry: {error}"}
                       for d, error in report.failed]
        return events

    def extra(self) -> dict[str, Any]:
        """Drift (desired vs live) and the last reload seen."""
        rep = self.last_report
        return {"reapply": self.adapter.reapply, "reloads_seen": self.reloads,
                "desired": {k: asdict(v) for k, v in sorted(self.adapter.desired.items())},
                "drift": [asdict(d) for d in rep.drift] if rep else [],
                "reapply_failed": [{**asdict(d), "error": e} for d, e in rep.failed] if rep else [],
                "haproxy_pid": rep.new_pid if rep else None}


def build_app(socket_path: str, backend: str, journal_path: str | None, reapply: bool = True,
              timeout: float = 2.0, interval: float = 1.0, limits_map: str | None = None,
              limits_counts: str | None = None) -> Any:
    """The HAProxy control agent as an ASGI app; desired state is seeded from the journal.

    ``limits_map`` (and ``limits_counts``, the counts table): rate limits under
    ``/_trimtab/balancer/limits`` (:mod:`.limits_haproxy`), their decisions on ``/metrics``.
    """
    from ..auth import TokenAuth
    from ..journal import Journal
    from .control import ControlApp, desired_from_journal
    from .limits import LimitsApi
    from .limits_haproxy import HAProxyLimits, desired_limits_from_journal

    journal = Journal(journal_path)
    target = f"haproxy/{backend}"
    desired = {name: Desired(weight=v.get("weight"), state=v.get("state"))
               for name, v in desired_from_journal(journal, target).items()}
    adapter = HAProxyAdapter(RuntimeClient(socket_path, timeout), backend, reapply, desired)
    limits = None
    if limits_map:
        limits = LimitsApi(HAProxyLimits(RuntimeClient(socket_path, timeout), limits_map, target,
                                         limits_counts, desired_limits_from_journal(journal,
                                                                                    target),
                                         reapply))
    return ControlApp(HAProxyBackend(adapter), TokenAuth.from_env(), journal,
                      interval=interval, limits=limits, metrics_path="/metrics")


def main(argv: list[str] | None = None) -> None:
    """``python -m trimtab.agent.balance.haproxy --socket PATH --backend B --port P [...]``.

    The same process as ``python -m trimtab.agent haproxy`` (one parser, one way to serve:
    bind guard, read timeouts, connection cap).
    """
    import sys

    from ..__main__ import main as agent_main

    agent_main(["haproxy", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
