"""The scrape engine in a process of its own, so fetching and parsing never take the cockpit's GIL.

:class:`ScrapeProcess` has :class:`~.scrape.ScrapeEngine`'s interface (``start``, ``stop``,
``add_target``, ``remove_target`` and the same callbacks). A child Python process
(``python -m trimtab.collectors.scrape_child``) runs a ``ScrapeEngine``; what it scrapes comes
back over a pipe and the callbacks run on this process's ``trimtab-scrape`` thread, as the
thread engine's do, so a model sees no difference.

Why (issue 16): at 200 targets x 2,000 samples a second, fetching and parsing cost ~0.35 s of
CPU each second. In one process that is 0.35 s of the GIL the GUI thread waits behind: the
window stalled over 100 ms and the targets got fewer than one scrape a second. In a child
they run on the other core.

What crosses the pipe is small: a target's layout (sample names, label sets, TYPE/HELP/UNIT)
when it changes, and per scrape only its values, timestamps and exemplars. The layout is
rebuilt here once and every later exposition shares its ``names`` and ``labels`` lists, so
the model's extractor keeps its fast path (it checks them by identity).

If the child dies (killed, out of memory), it is started again with the current targets
after a pause that doubles up to 30 s; the scrapes in between are lost, as in a restart of
Prometheus, and the log says why. The cycle (``on_cycle``, the model's tick) is timed here,
not in the child, so it goes on meanwhile. The child ignores Ctrl-C (the terminal sends it
to the whole process group): it ends when told to or when this process is gone.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .exposition import Exposition
from .mappings import MappingTable
from .scrape import ScrapeEngine, ScrapeResult, ScrapeTarget, _check

_log = logging.getLogger(__name__)
CHILD_MODULE = "trimtab.collectors.scrape_child"
_RESTART_FIRST_S, _RESTART_MAX_S = 0.5, 30.0
_READY_TIMEOUT_S = 60.0  # a cold start on a busy machine imports httpx and the parser
class _Stopping(Exception):
    """stop() came while a child was being started: it is not used."""


_IDLE_S = 1.0  # how long the reader waits for a message when it has no cycle to keep
# Messages that go to a callback as they come: kind -> the callback's attribute.
_CALLBACKS = {"traces": "on_traces", "config": "on_config", "limits": "on_balancer_limits"}


@dataclass
class _Layout:
    """What a target's expositions share until its layout changes (rebuilt from the pipe)."""

    names: list[str]
    labels: list[Any]
    types: dict[str, str]
    helps: dict[str, str]
    units: dict[str, str]
    fmt: str


@dataclass
class ScrapeProcess:
    """Scrapes ``targets`` in a child process and hands each result to ``sink`` (see module).

    Each target added gets a generation number that the child's messages carry: a result of
    a removed target still in the pipe when a target of the same name is added again names
    the target it was scraped for, as the thread engine's results do. ``on_cycle`` is called
    from this process's ``trimtab-scrape`` thread every ``cycle_interval`` s, also while the
    child is being started again, so the model keeps ticking (and Prometheus sources with it).
    """

    targets: Sequence[ScrapeTarget]
    sink: Callable[[ScrapeResult], None]
    on_cycle: Callable[[float], None] | None = None
    on_traces: Callable[[str, list[dict[str, Any]], str], None] | None = None
    on_config: Callable[[str, dict[str, Any] | None, str], None] | None = None
    on_balancer_limits: Callable[[str, dict[str, Any] | None, str], None] | None = None
    traces_interval: float = 2.0
    cycle_interval: float = 1.0
    max_body_bytes: int = 16 * 1024 * 1024
    mappings: Sequence[MappingTable] | None = None
    # Why no scrape arrives, for the operator ("scrape process killed by SIGKILL; ..."), and
    # "" once a new child is ready; called on the ``trimtab-scrape`` thread.
    on_status: Callable[[str], None] | None = None
    # How many times the child was started again after it died (tests and the log read it).
    restarts: int = 0
    _active: dict[str, tuple[int, ScrapeTarget]] = field(default_factory=dict)  # name -> (gen, t)
    _known: dict[int, ScrapeTarget] = field(default_factory=dict)  # every gen a message may name
    _layouts: dict[int, _Layout] = field(default_factory=dict)
    # remove_target's acknowledgements awaited: seq -> (gen removed or None, then, whether
    # the command went to a running child)
    _then: dict[int, tuple[int | None, Callable[[], object] | None, bool]] = field(
        default_factory=dict)
    _seq: int = 0  # generations and acknowledgements alike
    _lock: threading.Lock = field(default_factory=threading.Lock)  # commands and the child
    _child: subprocess.Popen[bytes] | None = None
    _commands: Connection | None = None
    _reader: threading.Thread | None = None
    _stopping: bool = False
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> ScrapeProcess:
        """Check every target, start the child and the ``trimtab-scrape`` thread; returns self.

        Waits until the child is ready. Raises ValueError for a bad target or interval and
        RuntimeError (with the child's exit status) if the child cannot start; either way
        nothing is left running.
        """
        if self._reader is not None:
            raise RuntimeError("the scrape process was started already")
        if not self.cycle_interval > 0:
            raise ValueError(f"cycle_interval must be a positive number of seconds, "
                             f"not {self.cycle_interval!r}")
        names = [t.name for t in self.targets]
        for target in self.targets:
            _check(target)
        if len(set(names)) != len(names):
            raise ValueError(f"targets: a name twice among {names}")
        for target in self.targets:
            gen = self._next()
            self._active[target.name] = (gen, target)
            self._known[gen] = target
        try:
            results = self._spawn()
            if results is not None:
                self._ready(results)
        except BaseException:
            self._active.clear()
            self._known.clear()
            raise
        assert results is not None  # only a stop() racing a restart gets None
        self._reader = threading.Thread(target=self._read, args=(results,), name="trimtab-scrape",
                                        daemon=True)
        self._reader.start()
        return self

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start or while it is being restarted)."""
        child = self._child
        return child.pid if child is not None else None

    @property
    def _thread(self) -> threading.Thread | None:
        # The thread that runs the callbacks (benchmarks/fanout.py measures its CPU time).
        return self._reader

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scraping (any thread; harmless before start and twice): the child ends its
        scrapes in flight and exits, killed if it has not after ``timeout`` s; then the
        ``trimtab-scrape`` thread gets ``timeout`` s more to deliver what it sent."""
        if self._reader is None:
            return  # never started: nothing runs, and a later start() works as usual
        with self._lock:
            self._stopping = True
            self._send(("stop",))
            child = self._child
        self._stopped.set()  # a reader pausing before a restart gives up
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                _log.warning("the scrape process did not stop within %g s; killing it", timeout)
                child.kill()
                child.wait()
        reader = self._reader
        if reader is not threading.current_thread():
            reader.join(timeout)
        with self._lock:
            if self._commands is not None:
                self._commands.close()
                self._commands = None

    def add_target(self, target: ScrapeTarget) -> None:
        """Start scraping ``target`` (any thread); its name must be new."""
        _check(target)
        self._started()
        with self._lock:
            if target.name in self._active:
                raise ValueError(f"target {target.name}: already scraped")
            gen = self._next()
            self._active[target.name] = (gen, target)
            self._known[gen] = target
            self._send(("add", target, gen))

    def remove_target(self, name: str, then: Callable[[], object] | None = None) -> None:
        """Stop scraping the target called ``name`` (any thread); ``then()`` runs on the
        ``trimtab-scrape`` thread once it is stopped: no result of it reaches the sink after."""
        self._started()
        with self._lock:
            gen, _ = self._active.pop(name, (None, None))
            seq = self._next()
            # With no child (it died and is being started again) the command goes nowhere:
            # the next child never has the target, and the reader settles it (_settle).
            self._then[seq] = (gen, then, self._commands is not None)
            self._send(("remove", name, seq))

    def _started(self) -> None:
        if self._reader is None:  # as the thread engine: targets change once it runs
            raise RuntimeError("start() the scrape process first")

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # -------------------------------------------------------------------- the child

    def _spawn(self) -> Connection | None:
        """Start a child scraping the active targets (the caller holds no lock) and send it
        its config; returns its results connection, None if stop() came first (no child is
        left). Does not wait for the child: see :meth:`_ready`."""
        results_r, results_w = os.pipe()
        try:
            commands_r, commands_w = os.pipe()
        except BaseException:
            os.close(results_r)
            os.close(results_w)
            raise
        for fd in (results_w, commands_w):
            _widen(fd)
        try:
            # -P: the cockpit's working directory is not on the child's import path (a stray
            # httpx.py there would run in the process that holds the tokens).
            child = subprocess.Popen(
                [sys.executable, "-P", "-m", CHILD_MODULE, str(commands_r), str(results_w)],
                pass_fds=(commands_r, results_w), stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (results_r, results_w, commands_r, commands_w):
                os.close(fd)
            raise
        os.close(commands_r)
        os.close(results_w)
        results = Connection(results_r, writable=False)
        commands = Connection(commands_w, readable=False)
        try:
            with self._lock:
                if self._stopping:
                    raise _Stopping
                self._child, self._commands = child, commands
                self._layouts.clear()
                config = {"targets": list(self._active.values()),
                          "traces": self.on_traces is not None,
                          "config": self.on_config is not None,
                          "limits": self.on_balancer_limits is not None,
                          "traces_interval": self.traces_interval,
                          "max_body_bytes": self.max_body_bytes,
                          "mappings": None if self.mappings is None else list(self.mappings)}
                commands.send(("config", config))
        except BaseException as exc:  # stop() came first, a config that would not pickle, ...
            self._abandon(child, results, commands)
            if isinstance(exc, _Stopping):
                return None
            raise
        return results

    def _ready(self, results: Connection) -> None:
        """Wait (start() only) for the child's first message, which says it is ready."""
        try:
            first = results.recv() if results.poll(_READY_TIMEOUT_S) else None
        except EOFError:
            first = None
        except BaseException:  # Ctrl-C while waiting: nothing is left running
            self._abandon(self._child, results, self._commands)
            raise
        if first != ("ready",):
            child = self._child
            self._abandon(child, results, self._commands)
            status = child.returncode if child is not None else None
            raise RuntimeError(f"the scrape process did not start (status {status}, "
                               f"sent {first!r}); its error is on stderr")

    def _abandon(self, child: subprocess.Popen[bytes] | None, results: Connection,
                 commands: Connection | None) -> None:
        """Kill and reap a child that will not be used, and close its pipes."""
        with self._lock:
            if self._child is child:
                self._child = None
            if self._commands is commands:
                self._commands = None
        if child is not None:
            if child.poll() is None:
                child.kill()
            child.wait()
        results.close()
        if commands is not None:
            commands.close()

    def _send(self, message: tuple[Any, ...]) -> None:
        """Send a command (caller holds the lock); a dead child is the reader's to restart."""
        if self._commands is None:
            return
        try:
            self._commands.send(message)
        except OSError:  # BrokenPipeError: it died; the reader sees EOF and starts a new one
            pass

    def _read(self, results: Connection) -> None:
        """The ``trimtab-scrape`` thread: what the child sends goes to the callbacks, a cycle
        every ``cycle_interval`` s, a dead child is started again; until stop()."""
        pause = _RESTART_FIRST_S
        started = time.monotonic()
        next_cycle = started + self.cycle_interval
        current: Connection | None = results
        restart_at = math.inf
        ready_by = math.inf  # a new child must say it is ready by then
        while True:
            now = time.monotonic()
            if self.on_cycle is not None and now >= next_cycle:
                self._call("cycle", self.on_cycle, time.time())
                # From the end of the tick, as the thread engine sleeps after each: a tick
                # slower than the interval must not starve the reading below.
                next_cycle = time.monotonic() + self.cycle_interval
            wait = max(0.0, next_cycle - now) if self.on_cycle is not None else _IDLE_S
            if current is None:  # the child is down
                self._settle()  # removals meanwhile: no child has their targets
                if self._stopping:
                    return
                if now < restart_at:
                    self._stopped.wait(min(wait, restart_at - now))
                    continue
                current = self._respawn()
                if current is None:
                    restart_at = time.monotonic() + pause
                    pause = min(pause * 2, _RESTART_MAX_S)
                else:
                    started = time.monotonic()
                    ready_by = started + _READY_TIMEOUT_S
                continue
            try:
                if current.poll(min(wait, max(0.0, ready_by - now))):
                    message = current.recv()
                    if message == ("ready",):
                        ready_by = math.inf
                        self._status("")
                    else:
                        self._dispatch(message)
                    continue
                if time.monotonic() < ready_by:
                    continue
                self._status(f"scrape process did not start within {_READY_TIMEOUT_S:g} s")
            except EOFError:  # the child exited: told to stop (all it sent is read), or died
                pass
            except Exception:  # noqa: BLE001 - a garbled message: start over, never go silent
                _log.exception("the scrape process sent what could not be read")
            current.close()
            current, ready_by = None, math.inf
            status = self._bury()
            if self._stopping:
                self._settle()
                return
            if time.monotonic() - started > 60.0:
                pause = _RESTART_FIRST_S  # it had run a good while: a new failure, not a loop
            self._status(f"scrape process {_how_it_ended(status)}; "
                         f"starting it again in {pause:g} s")
            restart_at = time.monotonic() + pause
            pause = min(pause * 2, _RESTART_MAX_S)

    def _status(self, text: str) -> None:
        """Log a problem and tell ``on_status`` (``""``: scraping again)."""
        if text:
            _log.error("%s", text)
        if self.on_status is not None:
            self._call("status", self.on_status, text)

    def _bury(self) -> int | None:
        """Reap the child (killed if still running): its exit status, None if there was none."""
        with self._lock:
            child, self._child = self._child, None
            if self._commands is not None:
                self._commands.close()
                self._commands = None
        if child is None:
            return None
        if child.poll() is None:
            child.kill()
        return child.wait()

    def _respawn(self) -> Connection | None:
        """A new child, its targets the active ones (ready or not: the loop waits for it);
        None if it could not start (or stop came)."""
        try:
            results = self._spawn()
        except Exception as exc:  # noqa: BLE001 - the reader must live on to try again
            self._status(f"scrape process could not start again: {exc}")
            return None
        if results is not None:
            self.restarts += 1
            self._settle(only_unsent=True)  # removed until the new child got its config
        return results

    def _settle(self, only_unsent: bool = False) -> None:
        """Run the ``then`` of removals no child will acknowledge. With no child running:
        all of them (the last one's messages are all read). Right after a child started
        (``only_unsent``): those whose command went to no child (its target was not in the
        new one's config)."""
        with self._lock:
            pending = {seq: entry for seq, entry in self._then.items()
                       if not (only_unsent and entry[2])}
            for seq in pending:
                del self._then[seq]
        for seq in sorted(pending):
            gen, then, _ = pending[seq]
            self._removed(gen, then)

    def _removed(self, gen: int | None, then: Callable[[], object] | None) -> None:
        if gen is not None:
            self._known.pop(gen, None)
            self._layouts.pop(gen, None)
        if then is not None:
            self._call("remove_target then", then)

    @staticmethod
    def _call(what: str, callback: Callable[..., object], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a callback's bug must not stop every later scrape
            _log.exception("scrape callback failed on %s; scraping goes on", what)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        """One message: a malformed one raises (the reader starts the child again); a
        callback's error is logged and the next message is read, as the thread engine does."""
        kind = message[0]
        if kind == "values" or kind == "down":
            result = self._result(message)
            if result is not None:
                self._call("sink", self.sink, result)
        elif kind == "layout":
            _, gen, names, labels, types, helps, units, fmt = message
            self._layouts[gen] = _Layout(names, labels, types, helps, units, fmt)
        elif kind == "removed":
            with self._lock:
                entry = self._then.pop(message[1], None)
            if entry is not None:
                self._removed(entry[0], entry[1])
        elif kind in _CALLBACKS:
            callback = getattr(self, _CALLBACKS[kind])
            if callback is not None:
                self._call(kind, callback, *message[1:])
        else:
            raise ValueError(f"unknown message {kind!r} from the scrape process")

    def _result(self, message: tuple[Any, ...]) -> ScrapeResult | None:
        """The result a "values" or "down" message carries (None: its target has left)."""
        if message[0] == "down":
            _, gen, timestamp, duration, error, next_attempt = message
            expo, up = None, False
        else:
            _, gen, timestamp, duration, next_attempt, values, stamps, exemplars = message
            layout = self._layouts[gen]  # a KeyError is a malformed stream: start over
            expo = Exposition.from_columns((layout.names, layout.labels, values, stamps),
                                           layout.types, layout.helps, layout.units,
                                           exemplars, layout.fmt)
            up, error = True, ""
        target = self._known.get(gen)
        if target is None:
            return None  # removed and confirmed: a result already on its way is dropped
        return ScrapeResult(target, timestamp, up, duration, expo, error, next_attempt)


def _how_it_ended(status: int | None) -> str:
    """``killed by SIGKILL``, ``exited with status 1``: as an operator reads it."""
    if status is not None and status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def _widen(fd: int) -> None:
    """A 1 MiB pipe (Linux; the default 64 KiB): a config of thousands of targets must not
    block the caller of start() while the child is still importing."""
    try:
        import fcntl  # POSIX only

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):  # not Linux, or over fs/pipe-max-size
        pass


Scraper = ScrapeEngine | ScrapeProcess  # what the cockpit scrapes with: the same interface
COLLECTOR_ENV = "TRIMTAB_COLLECTOR"
COLLECTORS: dict[str, type[ScrapeEngine] | type[ScrapeProcess]] = {
    "process": ScrapeProcess, "thread": ScrapeEngine}


def collector_class(environ: Mapping[str, str]) -> type[ScrapeEngine] | type[ScrapeProcess]:
    """Where the cockpit scrapes: ``TRIMTAB_COLLECTOR`` = ``process`` (the default: a process
    of its own) or ``thread`` (in the cockpit's process). Anything else is a ValueError."""
    kind = environ.get(COLLECTOR_ENV, "process").strip() or "process"
    if kind not in COLLECTORS:
        raise ValueError(f"{COLLECTOR_ENV} must be one of {', '.join(COLLECTORS)}, not {kind!r}")
    return COLLECTORS[kind]
