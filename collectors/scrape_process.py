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
Prometheus, and the log says why.
"""

from __future__ import annotations

import logging
import os
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
# Messages that go to a callback as they come: kind -> the callback's attribute.
_CALLBACKS = {"cycle": "on_cycle", "traces": "on_traces", "config": "on_config",
              "limits": "on_balancer_limits"}


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
    """Scrapes ``targets`` in a child process and hands each result to ``sink`` (see module)."""

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
    # How many times the child was started again after it died (tests and the log read it).
    restarts: int = 0
    _active: dict[str, ScrapeTarget] = field(default_factory=dict)  # scraped now, by name
    # Every target a result may still name: removed ones stay until the child confirms.
    _known: dict[str, ScrapeTarget] = field(default_factory=dict)
    _layouts: dict[str, _Layout] = field(default_factory=dict)
    _then: dict[int, tuple[str, ScrapeTarget | None, Callable[[], object] | None]] = field(
        default_factory=dict)
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)  # commands and the child
    _child: subprocess.Popen[bytes] | None = None
    _commands: Connection | None = None
    _reader: threading.Thread | None = None
    _stopping: bool = False
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> ScrapeProcess:
        """Check every target, start the child and the ``trimtab-scrape`` thread; returns self.

        Raises RuntimeError (with the child's exit status) if the child cannot start.
        """
        for target in self.targets:
            _check(target)
        for target in self.targets:
            if target.name in self._active:
                raise ValueError(f"target {target.name}: already scraped")
            self._active[target.name] = self._known[target.name] = target
        results = self._spawn()
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
        scrapes in flight and exits, killed if it has not after ``timeout`` s."""
        with self._lock:
            self._stopping = True
            self._send(("stop",))
            child = self._child
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                _log.warning("the scrape process did not stop within %g s; killing it", timeout)
                child.kill()
                child.wait()
        self._stopped.set()  # a reader pausing before a restart gives up
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)
        with self._lock:
            if self._commands is not None:
                self._commands.close()
                self._commands = None

    def add_target(self, target: ScrapeTarget) -> None:
        """Start scraping ``target`` (any thread); its name must be new."""
        _check(target)
        with self._lock:
            if target.name in self._active:
                raise ValueError(f"target {target.name}: already scraped")
            self._active[target.name] = self._known[target.name] = target
            self._send(("add", target))

    def remove_target(self, name: str, then: Callable[[], object] | None = None) -> None:
        """Stop scraping the target called ``name`` (any thread); ``then()`` runs on the
        ``trimtab-scrape`` thread once it is stopped: no result of it reaches the sink after."""
        with self._lock:
            self._active.pop(name, None)
            self._seq += 1
            self._then[self._seq] = (name, self._known.get(name), then)
            self._send(("remove", name, self._seq))

    # -------------------------------------------------------------------- the child

    def _spawn(self) -> Connection:
        """Start a child scraping the active targets (under no lock; the caller holds none)."""
        results_r, results_w = os.pipe()
        commands_r, commands_w = os.pipe()
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", CHILD_MODULE, str(commands_r), str(results_w)],
                pass_fds=(commands_r, results_w), stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (results_r, results_w, commands_r, commands_w):
                os.close(fd)
            raise
        os.close(commands_r)
        os.close(results_w)
        results = Connection(results_r, writable=False)
        commands = Connection(commands_w, readable=False)
        with self._lock:
            self._child, self._commands = child, commands
            self._layouts.clear()
            config = {"targets": list(self._active.values()), "cycle": self.on_cycle is not None,
                      "traces": self.on_traces is not None, "config": self.on_config is not None,
                      "limits": self.on_balancer_limits is not None,
                      "traces_interval": self.traces_interval,
                      "cycle_interval": self.cycle_interval,
                      "max_body_bytes": self.max_body_bytes,
                      "mappings": None if self.mappings is None else list(self.mappings)}
            self._send(("config", config))
        if not results.poll(_READY_TIMEOUT_S):
            child.kill()
            child.wait()
            results.close()
            raise RuntimeError(f"the scrape process did not start within {_READY_TIMEOUT_S:g} s")
        try:
            first = results.recv()
        except EOFError:
            results.close()
            raise RuntimeError(f"the scrape process exited at start (status {child.wait()}); "
                               "its error is on stderr") from None
        if first != ("ready",):
            raise RuntimeError(f"the scrape process started with {first!r}, not ready")
        return results

    def _send(self, message: tuple[Any, ...]) -> None:
        """Send a command (caller holds the lock); a dead child is the reader's to restart."""
        if self._commands is None:
            return
        try:
            self._commands.send(message)
        except OSError:  # BrokenPipeError: it died; the reader sees EOF and starts a new one
            pass

    def _read(self, results: Connection) -> None:
        """The ``trimtab-scrape`` thread: what the child sends, to the callbacks, until stop."""
        pause = _RESTART_FIRST_S
        while True:
            started = time.monotonic()
            try:
                while True:
                    self._dispatch(results.recv())
            except EOFError:
                pass
            except Exception:  # noqa: BLE001 - a garbled message: start over, never go silent
                _log.exception("the scrape process sent what could not be read")
            results.close()
            with self._lock:
                child, self._child = self._child, None
                if self._commands is not None:
                    self._commands.close()
                    self._commands = None
                stopping = self._stopping
            if child is not None and child.poll() is None:
                child.kill()
            status = child.wait() if child is not None else None
            self._release_removed()  # their targets are not in the new child's config
            if stopping:
                return
            if time.monotonic() - started > 60.0:
                pause = _RESTART_FIRST_S  # it had run a good while: a new failure, not a loop
            _log.error("the scrape process ended (status %s); starting it again in %g s",
                       status, pause)
            if self._stopped.wait(pause):
                return
            pause = min(pause * 2, _RESTART_MAX_S)
            try:
                results = self._spawn()
            except (OSError, RuntimeError) as exc:
                _log.error("the scrape process could not start again: %s", exc)
                results = _closed_connection()
            self.restarts += 1

    def _release_removed(self) -> None:
        """Run every pending ``then``: a dead child scrapes nothing more of those targets."""
        with self._lock:
            pending, self._then = self._then, {}
        for seq in sorted(pending):
            self._removed(*pending[seq])

    def _removed(self, name: str, target: ScrapeTarget | None,
                 then: Callable[[], object] | None) -> None:
        with self._lock:
            if self._known.get(name) is target and name not in self._active:
                self._known.pop(name, None)
                self._layouts.pop(name, None)
        if then is not None:
            try:
                then()
            except Exception:  # noqa: BLE001 - as the thread engine: logged, scraping goes on
                _log.exception("a remove_target callback failed for %s", name)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        """One message: a malformed one raises (the reader starts the child again); a
        callback's error is logged and the next message is read, as the thread engine does."""
        kind = message[0]
        call: Callable[[], object] | None = None
        if kind == "values" or kind == "down":
            result = self._result(message)
            if result is not None:
                call = lambda: self.sink(result)  # noqa: E731
        elif kind == "layout":
            _, name, names, labels, types, helps, units, fmt = message
            self._layouts[name] = _Layout(names, labels, types, helps, units, fmt)
        elif kind == "removed":
            with self._lock:
                entry = self._then.pop(message[1], None)
            if entry is not None:
                call = lambda: self._removed(*entry)  # noqa: E731
        elif kind in _CALLBACKS:
            callback = getattr(self, _CALLBACKS[kind])
            if callback is not None:
                call = lambda: callback(*message[1:])  # noqa: E731
        else:
            raise ValueError(f"unknown message {kind!r} from the scrape process")
        if call is None:
            return
        try:
            call()
        except Exception:  # noqa: BLE001 - a callback's bug must not stop every later scrape
            _log.exception("scrape callback failed on %r; scraping goes on", kind)

    def _result(self, message: tuple[Any, ...]) -> ScrapeResult | None:
        """The result a "values" or "down" message carries (None: its target has left)."""
        if message[0] == "down":
            _, name, timestamp, duration, error, next_attempt = message
            expo, up = None, False
        else:
            _, name, timestamp, duration, next_attempt, values, stamps, exemplars = message
            layout = self._layouts[name]  # a KeyError is a malformed stream: start over
            expo = Exposition.from_columns((layout.names, layout.labels, values, stamps),
                                           layout.types, layout.helps, layout.units,
                                           exemplars, layout.fmt)
            up, error = True, ""
        target = self._known.get(name)
        if target is None:
            return None  # removed and confirmed: a result already on its way is dropped
        return ScrapeResult(target, timestamp, up, duration, expo, error, next_attempt)


def _closed_connection() -> Connection:
    """A connection whose first read is EOF: the reader's loop then tries again later."""
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    return Connection(read_fd, writable=False)


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
