"""The HAProxy control agent (a uvicorn process) in front of a real haproxy's runtime API."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.agent.balance.haproxy import HAProxyAdapter
from trimtab.agent.journal import Journal
from trimtab.agent.procs import free_port, stop_all

from tests.agent.balance.test_haproxy import HAProxy, backends, haproxy, send  # noqa: F401 - fixtures
from tests.support import wait_for

TOKENS = "admin:write:w-secret-2,viewer:read:r-secret-2"
WRITE = {"authorization": "Bearer w-secret-2"}
READ = {"authorization": "Bearer r-secret-2"}
API = "/_trimtab/balancer"
Starter = Callable[..., str]


@pytest.fixture
def start_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Starter]:
    """``haproxy.main`` in uvicorn subprocesses (what ``trimtab agent haproxy`` runs)."""
    monkeypatch.setenv("TRIMTAB_TOKENS", TOKENS)
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        port = free_port()
        code = "import sys; from trimtab.agent.balance.haproxy import main; main(sys.argv[1:])"
        proc = subprocess.Popen([sys.executable, "-c", code, "--port", str(port),
                                 "--interval", "0.2", *args], stdin=subprocess.DEVNULL)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_listening(port, proc)
        return url

    try:
        yield start
    finally:
        stop_all(procs)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}{API}/journal", headers=READ, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError("agent did not listen")


def change(url: str, changes: dict[str, Any], **extra: Any) -> httpx.Response:
    doc = httpx.get(f"{url}{API}", headers=READ)
    tag = doc.headers.get("etag", '"none"')
    return httpx.patch(f"{url}{API}", headers={**WRITE, "if-match": tag},
                       json={"servers": changes, "reason": "test", **extra}, timeout=10.0)


def journal(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}{API}/journal", headers=READ).json()["entries"]


def test_weight_change_through_the_agent_shows_in_haproxy_and_traffic(
        haproxy: HAProxy, start_agent: Starter) -> None:  # noqa: F811
    url = start_agent("--socket", haproxy.sock, "--backend", "be")
    resp = change(url, {"s1": {"weight": 3}})
    assert resp.status_code == 200, resp.text
    assert haproxy.client.get_weight("be", "s1") == (3, 1)
    counts = send(haproxy.url, 400)  # the 2,000-request split is in test_haproxy.py
    assert 0.70 <= counts["s1"] / 400 <= 0.80, counts
    doc = httpx.get(f"{url}{API}", headers=READ, params={"window": "60"}).json()
    rows = {s["name"]: s for s in doc["servers"]}
    assert rows["s1"]["expected_share"] == 0.75 and rows["s1"]["weight"] == 3
    assert 0.70 <= rows["s1"]["observed_share"] <= 0.80
    assert doc["target"] == "haproxy/be" and doc["drift"] == []
    assert [(e["who"], e["what"], e["old"], e["new"]) for e in journal(url)] == [
        ("admin", "servers.s1.weight", 1, 3)]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"s1": {"weight": 9000}}, "servers.s1.weight"),
    ({"s1": {"weight": -1}}, "servers.s1.weight"),
    ({"s1": {"weight": "abc"}}, "servers.s1.weight"),
    ({"nope": {"weight": 2}}, "servers.nope"),
]


def test_bad_input_changes_nothing_in_haproxy(haproxy: HAProxy,  # noqa: F811
                                              start_agent: Starter) -> None:
    # One agent for all cases (each start costs a uvicorn process); each case stands alone.
    url = start_agent("--socket", haproxy.sock, "--backend", "be")
    for changes, field in BAD:
        resp = change(url, changes)
        assert resp.status_code == 422 and resp.json()["field"] == field, (changes, resp.text)
        assert haproxy.client.get_weight("be", "s1") == (1, 1)
    assert [e["result"] for e in journal(url)] == ["refused"] * len(BAD)
    body = {"servers": {"s1": {"weight": 2}}}
    for headers, status in [({**READ}, 403), ({}, 401), ({"authorization": "Bearer wrong"}, 401)]:
        resp = httpx.patch(f"{url}{API}", json=body, headers={**headers, "if-match": "*"})
        assert resp.status_code == status
    assert haproxy.client.get_weight("be", "s1") == (1, 1)
    # The read-only caller's attempt is journaled; anonymous ones (401) are not.
    assert [e["who"] for e in journal(url)][len(BAD):] == ["viewer"]


def test_haproxy_refusal_is_a_clear_error_and_nothing_is_applied(
        haproxy: HAProxy, start_agent: Starter) -> None:  # noqa: F811
    url = start_agent("--socket", haproxy.sock, "--backend", "bs")
    resp = change(url, {"s1": {"weight": 3}})
    assert resp.status_code == 422 and "static LB algorithm" in resp.json()["message"]
    assert haproxy.client.get_weight("bs", "s1") == (1, 1)
    entry = journal(url)[-1]
    assert entry["result"] == "refused" and entry["detail"].startswith("nothing applied")


def test_midway_refusal_rolls_back_what_was_applied(haproxy: HAProxy,  # noqa: F811
                                                   start_agent: Starter) -> None:
    url = start_agent("--socket", haproxy.sock, "--backend", "bs")
    resp = change(url, {"s1": {"state": "drain"}, "s2": {"weight": 3}})
    assert resp.status_code == 422 and "static LB algorithm" in resp.json()["message"]
    states = {s.name: (s.weight, s.state) for s in HAProxyAdapter(haproxy.client, "bs").servers()}
    assert states == {"s1": (1, "ready"), "s2": (1, "ready")}  # s1's drain was undone
    assert [(e["what"], e["result"]) for e in journal(url)] == [
        ("servers.s1.state", "refused"), ("servers.s2.weight", "refused")]


def test_reload_is_detected_and_the_agent_restores_weights(
        haproxy: HAProxy, start_agent: Starter, tmp_path: Path) -> None:  # noqa: F811
    log = str(tmp_path / "journal.jsonl")
    url = start_agent("--socket", haproxy.sock, "--backend", "be", "--journal", log)
    assert change(url, {"s1": {"weight": 3}}).status_code == 200
    haproxy.reload()
    wait_for(lambda: haproxy.client.get_weight("be", "s1") == (3, 1))
    restored = [e for e in journal(url) if e["who"] == "trimtab-agent"]
    assert [(e["what"], e["old"], e["new"]) for e in restored] == [("servers.s1.weight", 1, 3)]
    assert "reloaded" in restored[0]["reason"]
    assert httpx.get(f"{url}{API}", headers=READ).json()["reloads_seen"] >= 1


def test_a_new_agent_restores_desired_state_from_the_journal(
        haproxy: HAProxy, start_agent: Starter, tmp_path: Path) -> None:  # noqa: F811
    log = tmp_path / "journal.jsonl"
    Journal(log).record(who="alice", target="haproxy/be", what="servers.s2.state", old="ready",
                        new="drain", reason="earlier run")
    start_agent("--socket", haproxy.sock, "--backend", "be", "--journal", str(log))
    wait_for(lambda: {s.name: s.state for s in _servers(haproxy)}["s2"] == "drain")


def test_no_reapply_reports_drift(haproxy: HAProxy, start_agent: Starter) -> None:  # noqa: F811
    url = start_agent("--socket", haproxy.sock, "--backend", "be", "--no-reapply")
    assert change(url, {"s1": {"weight": 5}}).status_code == 200
    haproxy.reload()

    def drift() -> list[dict[str, Any]]:
        return list(httpx.get(f"{url}{API}", headers=READ).json()["drift"])

    wait_for(lambda: bool(drift()))
    assert drift() == [{"server": "s1", "field": "weight", "desired": 5, "actual": 1}]
    assert haproxy.client.get_weight("be", "s1") == (1, 1)


def test_silent_socket_times_out_and_the_journal_says_so(tmp_path: Path,
                                                         start_agent: Starter) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(64)
        url = start_agent("--socket", path, "--backend", "be", "--timeout", "0.3")
        resp = httpx.patch(f"{url}{API}", headers={**WRITE, "if-match": "*"},
                           json={"servers": {"s1": {"weight": 2}}, "reason": "r"}, timeout=10)
        assert resp.status_code == 504 and "no answer" in resp.json()["message"]
        assert resp.json()["error"] == "backend_timeout"
        entry = journal(url)[-1]
        assert entry["result"] == "refused" and "nothing applied" in entry["detail"]
    missing = start_agent("--socket", str(tmp_path / "absent.sock"), "--backend", "be")
    assert httpx.get(f"{missing}{API}", headers=READ).status_code == 503


def _servers(hp: HAProxy) -> list[Any]:
    return HAProxyAdapter(hp.client, "be").servers()
