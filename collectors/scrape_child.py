"""The scrape process's own side (``python -m trimtab.collectors.scrape_child IN_FD OUT_FD``).

Reads commands from ``IN_FD`` (a config first, then ``add``, ``remove`` and ``stop``), runs a
:class:`~.scrape.ScrapeEngine` with them and writes what it scrapes to ``OUT_FD`` in the
messages :mod:`.scrape_process` reads. It exits when told to stop or when the cockpit is gone
(its end of the command pipe closes, even if the cockpit was killed).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from .scrape import ScrapeEngine, ScrapeResult, ScrapeTarget

_log = logging.getLogger("trimtab.collectors.scrape_child")


class Sender:
    """Writes the engine's results and callbacks to the pipe (the engine's thread, and the
    command thread's acknowledgements: one lock). A target's layout goes only when it changed."""

    def __init__(self, out: Connection) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._sent: dict[int, tuple[Any, ...]] = {}  # generation -> the layout last sent
        # id(target) -> its generation (the cockpit's number for this add of the target); the
        # target is kept so its id is not reused while the entry lives.
        self._gens: dict[int, tuple[int, ScrapeTarget]] = {}
        self.broken = threading.Event()  # the cockpit is gone

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            if self.broken.is_set():
                return
            try:
                self._out.send(message)
            except OSError:  # the cockpit closed its end: stop scraping for nobody
                self.broken.set()

    def track(self, target: ScrapeTarget, gen: int) -> ScrapeTarget:
        """Tag the results of ``target`` (this object: an add) with ``gen``; returns it."""
        self._gens[id(target)] = (gen, target)
        return target

    def result(self, result: ScrapeResult) -> None:
        gen = self._gens[id(result.target)][0]
        expo = result.exposition
        if expo is None:
            self.send(("down", gen, result.timestamp, result.duration, result.error,
                       result.next_attempt))
            return
        names, labels, values, stamps = expo.columns()
        # Tuples: a full parse hands out lists, the value-only parses after it tuples; equal
        # layouts must compare equal either way (or every full parse would resend twice).
        names, labels = tuple(names), tuple(labels)
        last = self._sent.get(gen)
        if (last is None or not _same(last[0], names) or not _same(last[1], labels)
                or last[2] != expo.types or last[3] != expo.helps or last[4] != expo.units
                or last[5] != expo.format):
            layout = (names, labels, expo.types, expo.helps, expo.units, expo.format)
            self._sent[gen] = layout
            self.send(("layout", gen, *layout))
        self.send(("values", gen, result.timestamp, result.duration, result.next_attempt,
                   values, stamps, expo.exemplars))

    def forget(self, target: ScrapeTarget | None, seq: int) -> None:
        """``target`` has stopped (None: there was none of that name): its entries go; the
        cockpit hears ``seq``."""
        if target is not None:
            gen, _ = self._gens.pop(id(target), (None, None))
            self._sent.pop(gen, None)  # type: ignore[arg-type]
        self.send(("removed", seq))


def _same(last: Any, now: Any) -> bool:
    # The parser hands out the same lists while a target's layout repeats: usually `is`.
    return last is now or last == now


def main(argv: list[str]) -> int:
    # Ctrl-C in the terminal reaches the whole process group: the cockpit stops this process
    # itself (a "stop" command, or its end of the pipe closing), after its own shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="trimtab scrape process: %(message)s")
    commands = Connection(int(argv[1]), writable=False)
    sender = Sender(Connection(int(argv[2]), readable=False))
    kind, config = commands.recv()
    if kind != "config":
        raise SystemExit(f"expected the config first, got {kind!r}")

    def forward(what: str) -> Any:
        return lambda *args: sender.send((what, *args))

    by_name = {target.name: sender.track(target, gen) for gen, target in config["targets"]}
    sender.send(("ready",))  # first: the engine's results may come as soon as it starts
    engine = ScrapeEngine(
        list(by_name.values()), sender.result,
        on_traces=forward("traces") if config["traces"] else None,
        on_config=forward("config") if config["config"] else None,
        on_balancer_limits=forward("limits") if config["limits"] else None,
        traces_interval=config["traces_interval"], max_body_bytes=config["max_body_bytes"],
        mappings=config["mappings"]).start()
    try:
        while not sender.broken.is_set():
            message = commands.recv()  # EOFError once the cockpit is gone
            if message[0] == "add":
                _, target, gen = message
                by_name[target.name] = sender.track(target, gen)
                engine.add_target(target)
            elif message[0] == "remove":
                _, name, seq = message
                gone = by_name.pop(name, None)
                engine.remove_target(name, then=lambda t=gone, s=seq: sender.forget(t, s))
            elif message[0] == "stop":
                break
            else:
                _log.error("unknown command %r", message[0])
    except EOFError:
        pass
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
