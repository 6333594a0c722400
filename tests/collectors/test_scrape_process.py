"""The scrape engine in a process of its own (collectors/scrape_process.py), over real sockets.

A real child process scrapes real loopback HTTP servers; what reaches the sink must be what
the thread engine delivers, and the process must never outlive the cockpit or lose targets
when it dies.
"""

from __future__ import annotations

import http.server
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from trimtab.collectors import scrape_process
from trimtab.collectors.exposition import Exemplar
from trimtab.collectors.scrape import ScrapeEngine, ScrapeResult, ScrapeTarget
from trimtab.collectors.scrape_process import COLLECTOR_ENV, ScrapeProcess, collector_class

OPENMETRICS = b"""# TYPE req counter
# HELP req Requests with "quotes" and \\\\ back\\nslash.
req_total{route="/a\\"b",method="GET"} 7 # {trace_id="abc"} 0.25 1700000000.5
req_total{route="/c",method="POST"} 3.5e3
req_created{route="/c",method="POST"} 1700000000
# TYPE lat_seconds histogram
# UNIT lat_seconds seconds
lat_seconds_bucket{le="0.1"} 2 # {trace_id="t1"} 0.05
lat_seconds_bucket{le="+Inf"} 5
lat_seconds_count 5
lat_seconds_sum NaN
# TYPE temp gauge
temp -Inf
# EOF
"""


class _Farm:
    """Loopback HTTP servers serving ``body`` (replaceable while they run)."""

    def __init__(self, n: int, body: bytes, content_type: str) -> None:
        self.body, self.content_type = body, content_type
        farm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = farm.body
                self.send_response(200)
                self.send_header("Content-Type", farm.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
                        for _ in range(n)]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.urls = [f"http://127.0.0.1:{s.server_address[1]}/metrics" for s in self.servers]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def farm() -> Iterator[_Farm]:
    served = _Farm(3, OPENMETRICS, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    try:
        yield served
    finally:
        served.close()


def _wait(pred: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is gone) is not alive either.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


class _Sink:
    def __init__(self) -> None:
        self.results: list[ScrapeResult] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, result: ScrapeResult) -> None:
        with self.lock:
            self.results.append(result)
            self.threads.add(threading.current_thread().name)

    def ok(self, name: str) -> list[ScrapeResult]:
        with self.lock:
            return [r for r in self.results if r.up and r.target.name == name]


# ------------------------------------------------------------- bad input first


def test_a_bad_collector_setting_is_refused_by_name() -> None:
    for bad in ("fibre", "Process", "threads"):
        with pytest.raises(ValueError, match=f"{COLLECTOR_ENV} must be one of process, thread"):
            collector_class({COLLECTOR_ENV: bad})
    assert collector_class({}) is ScrapeProcess
    assert collector_class({COLLECTOR_ENV: "thread"}) is ScrapeEngine


def test_a_bad_target_is_refused_before_any_process_starts() -> None:
    bad = ScrapeTarget("slow", "http://127.0.0.1:9/metrics", interval=1.0, timeout=1.0)
    engine = ScrapeProcess([bad], lambda r: None)
    with pytest.raises(ValueError, match="timeout 1.0 must be below interval 1.0"):
        engine.start()
    assert engine.pid is None


# ------------------------------------------------------------- what reaches the sink


def test_results_equal_the_thread_engines_and_share_their_layout(farm: _Farm) -> None:
    targets = [ScrapeTarget(f"t{i}", url) for i, url in enumerate(farm.urls)]
    by_process, by_thread = _Sink(), _Sink()
    cycles: list[float] = []
    process = ScrapeProcess(targets, by_process, on_cycle=cycles.append,
                            cycle_interval=0.3).start()
    thread = ScrapeEngine(targets, by_thread).start()
    try:
        _wait(lambda: all(len(by_process.ok(t.name)) >= 3 and by_thread.ok(t.name)
                          for t in targets))
    finally:
        process.stop()
        thread.stop()
    assert by_process.threads == {"trimtab-scrape"}  # as the thread engine's callbacks
    assert cycles and all(isinstance(c, float) for c in cycles)
    for target in targets:
        ours, theirs = by_process.ok(target.name), by_thread.ok(target.name)
        got, want = ours[-1].exposition, theirs[-1].exposition
        assert got is not None and want is not None
        # Successive scrapes share the layout (read before .samples builds new lists): the
        # model's extractor checks it by identity.
        before = ours[-2].exposition
        assert before is not None
        assert before.columns()[0] is got.columns()[0] and before.columns()[1] is got.columns()[1]
        assert ours[-1].target is target
        assert repr(got.samples) == repr(want.samples)  # repr: NaN != NaN
        assert (got.types, got.helps, got.units, got.format) == (
            want.types, want.helps, want.units, want.format)
        assert got.exemplars == want.exemplars
        assert Exemplar((("trace_id", "abc"),), 0.25, 1700000000.5) in got.exemplars.values()


def test_a_changed_layout_and_a_failed_scrape_reach_the_sink(farm: _Farm) -> None:
    target = ScrapeTarget("t", farm.urls[0])
    sink = _Sink()
    engine = ScrapeProcess([target], sink).start()
    try:
        _wait(lambda: len(sink.ok("t")) >= 1)
        farm.body = OPENMETRICS.replace(b"temp -Inf", b'temp{room="b"} 21.5')
        _wait(lambda: any(r.exposition is not None and
                          ("temp", (("room", "b"),), 21.5, None) in r.exposition.samples
                          for r in sink.ok("t")))
        farm.body = b"not an exposition {\n"
        _wait(lambda: any(not r.up and r.target.name == "t" for r in list(sink.results)))
    finally:
        engine.stop()
    failed = [r for r in sink.results if not r.up]
    assert failed[0].exposition is None and failed[0].error
    assert failed[0].next_attempt > failed[0].timestamp


def test_a_sink_that_raises_does_not_stop_scraping(farm: _Farm) -> None:
    calls: list[int] = []

    def sink(result: ScrapeResult) -> None:
        calls.append(1)
        raise RuntimeError("a bug in the model")

    engine = ScrapeProcess([ScrapeTarget("t", farm.urls[0])], sink).start()
    try:
        _wait(lambda: len(calls) >= 3)
        assert engine.restarts == 0
    finally:
        engine.stop()


# ------------------------------------------------------------- targets come and go


def test_add_and_remove_then_no_result_after_then(farm: _Farm) -> None:
    sink = _Sink()
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], sink).start()
    removed = threading.Event()
    seen_at_then: list[int] = []
    try:
        engine.add_target(ScrapeTarget("b", farm.urls[1]))
        with pytest.raises(ValueError, match="already scraped"):
            engine.add_target(ScrapeTarget("b", farm.urls[2]))
        with pytest.raises(ValueError, match="must be below interval"):
            engine.add_target(ScrapeTarget("c", farm.urls[2], interval=1.0, timeout=2.0))
        _wait(lambda: len(sink.ok("b")) >= 2)

        def then() -> None:
            seen_at_then.append(len(sink.ok("b")))
            removed.set()

        engine.remove_target("b", then=then)
        assert removed.wait(10)
        time.sleep(1.5)  # a scrape of b after then() would have arrived by now
        assert len(sink.ok("b")) == seen_at_then[0]
        assert len(sink.ok("a")) >= 2
        engine.add_target(ScrapeTarget("b", farm.urls[2]))  # the name again, a new URL
        _wait(lambda: any(r.target.url == farm.urls[2] for r in sink.ok("b")))
    finally:
        engine.stop()


# ------------------------------------------------------------- the process's life


def test_a_killed_process_is_started_again_with_the_current_targets(farm: _Farm) -> None:
    sink = _Sink()
    said: list[str] = []
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], sink, on_status=said.append).start()
    try:
        engine.add_target(ScrapeTarget("b", farm.urls[1]))
        _wait(lambda: len(sink.ok("b")) >= 1)
        first = engine.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _wait(lambda: engine.restarts == 1 and engine.pid not in (None, first))
        before = {name: len(sink.ok(name)) for name in "ab"}
        _wait(lambda: all(len(sink.ok(name)) >= before[name] + 2 for name in "ab"))
        assert not _alive(first)
        assert said == ["scrape process killed by SIGKILL; starting it again in 0.5 s", ""]
    finally:
        engine.stop()


def test_stop_leaves_no_process_and_a_second_stop_is_harmless(farm: _Farm) -> None:
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], _Sink()).start()
    pid = engine.pid
    assert pid is not None and _alive(pid)
    engine.stop()
    assert not _alive(pid)
    engine.stop()
    assert engine._thread is not None and not engine._thread.is_alive()


def test_the_process_exits_when_the_cockpit_is_killed(farm: _Farm, tmp_path: object) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from trimtab.collectors.scrape import ScrapeTarget
        from trimtab.collectors.scrape_process import ScrapeProcess
        engine = ScrapeProcess([ScrapeTarget("a", {farm.urls[0]!r})], lambda r: None).start()
        print(engine.pid, flush=True)
        time.sleep(600)
    """)
    cockpit = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert cockpit.stdout is not None
        child = int(cockpit.stdout.readline())
        assert _alive(child)
        cockpit.kill()
        cockpit.wait()
        _wait(lambda: not _alive(child), 10)
    finally:
        cockpit.kill()
        cockpit.wait()


# ------------------------------------------------------------- found in review (each failed before)


def test_a_target_removed_while_the_process_is_down_is_settled(farm: _Farm) -> None:
    sink = _Sink()
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0]), ScrapeTarget("b", farm.urls[1])],
                           sink).start()
    removed = threading.Event()
    try:
        _wait(lambda: len(sink.ok("a")) >= 1)
        first = engine.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _wait(lambda: engine.pid is None, 10)  # buried, not yet started again
        engine.remove_target("a", then=removed.set)
        assert removed.wait(10)  # the new child never had it: settled when it starts
        count = len(sink.ok("a"))
        _wait(lambda: len(sink.ok("b")) >= 3)
        assert len(sink.ok("a")) == count
        assert engine._known.keys() == {engine._active["b"][0]}
    finally:
        engine.stop()


def test_a_result_names_the_target_it_was_scraped_for_when_the_name_comes_back() -> None:
    old = _Farm(1, b"# TYPE which gauge\nwhich 1\n", "text/plain; version=0.0.4")
    new = _Farm(1, b"# TYPE which gauge\nwhich 2\n", "text/plain; version=0.0.4")
    got: list[ScrapeResult] = []

    def slow(result: ScrapeResult) -> None:  # results queue in the pipe behind it
        got.append(result)
        time.sleep(0.2)

    engine = ScrapeProcess([ScrapeTarget("n", old.urls[0], interval=0.1, timeout=0.05,
                                         service="old")], slow).start()
    try:
        _wait(lambda: len(got) >= 2)
        engine.remove_target("n")
        engine.add_target(ScrapeTarget("n", new.urls[0], service="new"))
        _wait(lambda: any(r.target.service == "new" and r.up for r in list(got)))
    finally:
        engine.stop()
        old.close()
        new.close()
    for result in got:
        if result.up:
            assert result.exposition is not None
            which = result.exposition.samples[0].value
            assert (result.target.url, result.target.service) == (
                (old.urls[0], "old") if which == 1 else (new.urls[0], "new"))


def test_the_cockpits_working_directory_is_not_on_the_childs_import_path(
        farm: _Farm, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "planted-ran"
    (tmp_path / "httpx.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    sink = _Sink()
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], sink).start()
    try:
        _wait(lambda: len(sink.ok("a")) >= 1)
    finally:
        engine.stop()
    assert not marker.exists()


def test_the_cycle_goes_on_while_the_process_is_started_again(farm: _Farm) -> None:
    cycles: list[float] = []
    sink = _Sink()
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], sink, on_cycle=cycles.append,
                           cycle_interval=0.05).start()
    try:
        _wait(lambda: len(sink.ok("a")) >= 1)
        first = engine.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _wait(lambda: engine.pid is None, 10)
        down = time.time()
        _wait(lambda: engine.pid is not None, 10)  # after the 0.5 s pause
        up = time.time()
        _wait(lambda: len(sink.ok("a")) >= 3)
        # Ticks came while no child ran (from the child, none could).
        assert any(down < t < up for t in cycles), (down, up, cycles[-20:])
    finally:
        engine.stop()


def test_a_tick_slower_than_the_interval_starves_nothing(farm: _Farm) -> None:
    sink = _Sink()
    ticks: list[float] = []

    def slow_tick(now: float) -> None:
        ticks.append(now)
        time.sleep(0.25)

    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0], interval=0.2, timeout=0.1)], sink,
                           on_cycle=slow_tick, cycle_interval=0.2).start()
    try:
        _wait(lambda: len(sink.ok("a")) >= 4 and len(ticks) >= 3)
    finally:
        engine.stop()
    assert engine._thread is not None and not engine._thread.is_alive()
    after = len(ticks)
    time.sleep(0.6)
    assert len(ticks) == after  # no tick after stop()


def test_removals_are_settled_and_ticks_go_on_while_no_process_can_start(
        farm: _Farm, monkeypatch: pytest.MonkeyPatch) -> None:
    cycles: list[float] = []
    sink = _Sink()
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], sink, on_cycle=cycles.append,
                           cycle_interval=0.05).start()
    settled: list[str] = []
    try:
        _wait(lambda: len(sink.ok("a")) >= 1)
        # The install changed under a running cockpit: no new child can start.
        monkeypatch.setattr(scrape_process, "CHILD_MODULE", "trimtab.collectors.no_such_module")
        first = engine.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _wait(lambda: engine.restarts >= 2, 10)  # two children started and died at once
        for i in range(20):  # discovery churn meanwhile
            engine.add_target(ScrapeTarget(f"c{i}", farm.urls[1]))
            engine.remove_target(f"c{i}", then=lambda i=i: settled.append(f"c{i}"))
        _wait(lambda: len(settled) == 20, 10)
        assert engine._then == {} and set(engine._known.values()) == {engine._active["a"][1]}
        count = len(cycles)
        _wait(lambda: len(cycles) >= count + 5, 10)
    finally:
        engine.stop()


def test_ctrl_c_in_the_terminal_leaves_scraping_to_the_cockpit(farm: _Farm) -> None:
    sink = _Sink()
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], sink).start()
    try:
        _wait(lambda: len(sink.ok("a")) >= 1)
        pid = engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGINT)
        count = len(sink.ok("a"))
        _wait(lambda: len(sink.ok("a")) >= count + 2)
        assert engine.pid == pid and engine.restarts == 0
    finally:
        engine.stop()


def test_stop_before_start_and_a_failed_start_leave_it_usable(
        farm: _Farm, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = _Sink()
    engine = ScrapeProcess([ScrapeTarget("a", farm.urls[0])], sink)
    engine.stop()  # before start: nothing to stop, and start still works
    monkeypatch.setattr(scrape_process, "CHILD_MODULE", "trimtab.collectors.no_such_module")
    with pytest.raises(RuntimeError, match="did not start"):
        engine.start()
    assert engine.pid is None and engine._active == {}
    monkeypatch.undo()
    engine.start()
    try:
        _wait(lambda: len(sink.ok("a")) >= 1)
        first = engine.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # the one stop() before start did not stop restarts
        _wait(lambda: engine.restarts == 1)
    finally:
        engine.stop()
