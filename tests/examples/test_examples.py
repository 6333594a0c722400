"""README's "Instrument your API", run as written: the ASGI block on an existing FastAPI app,
the FastAPI example by its docstring command, and the Node.js service behind the sidecar.

Every command is taken from README.md (or the example's own docstring / comment, which must
say the same thing) and run as a real process; only the ports, the state directory and the
token are replaced by this test's. The cockpit's side is the README's targets block loaded
by the cockpit's own loader, a real ScrapeEngine feeding a FleetModel, and the cockpit's
ControlClient changing a TTL. (The Flask and Django examples run in
tests/agent/wsgi/test_gunicorn.py.)
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.app.control.client import ControlClient
from trimtab.app.control.types import APPLIED, REFUSED, Agent
from trimtab.app.model.fleet import FleetModel
from trimtab.app.targets import file as targets_file
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

from tests.conftest import require_binary
from tests.support import ROOT, poll

README = ROOT / "README.md"
FASTAPI = ROOT / "examples" / "fastapi_app.py"
NODE = ROOT / "examples" / "sidecar" / "server.js"
AGENT_PART = "from trimtab.agent.middleware import TrimtabMiddleware"
ITEMS = "/items/{id}"
SECRET = "w-secret-examples"  # stands in for the README's change-me
README_TOKEN = "change-me"


# --------------------------------------------------------------------- the README, read

def section() -> str:
    """The text of "## Instrument your API", up to the next top-level section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Instrument your API\n")
    return text[start:text.index("\n## ", start + 1)]


def blocks(lang: str, containing: str, under: str = "") -> list[str]:
    """The section's fenced ``lang`` blocks that contain ``containing`` (after the heading
    ``under`` when given)."""
    text = section()
    if under:
        text = text[text.index(f"\n{under}\n"):]
    found = re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)
    return [b for b in found if containing in b]


def command_lines(block: str) -> list[str]:
    """The block's commands, one per line, comments and ``pip install`` left out."""
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("pip ")]


def split_command(line: str) -> tuple[dict[str, str], list[str]]:
    """(leading VAR=value assignments, argv) of one shell command line."""
    words = shlex.split(line)
    env: dict[str, str] = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return env, words


def replaced(line: str, swaps: dict[str, str]) -> str:
    """``line`` with each key of ``swaps`` replaced; every key must occur (no silent no-op)."""
    for old, new in swaps.items():
        assert old in line, f"{old!r} not in {line!r}"
        line = line.replace(old, new)
    return line


def targets_from_readme(tmp: Path, port: int) -> list[ScrapeTarget]:
    """The README's targets block, pointed at ``port``, read by the cockpit's loader, with
    the token the cockpit takes from TRIMTAB_TOKEN."""
    [toml] = blocks("toml", "[[target]]", under="### Watch it from the cockpit")
    path = tmp / "api.toml"
    path.write_text(replaced(toml, {":8000/": f":{port}/"}), encoding="utf-8")
    return [dataclasses.replace(t, token=SECRET) for t in targets_file.load(path)]


# --------------------------------------------------------------------- processes

@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], cwd: Path, log: Path,
            ready: str) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in its own session until ``ready`` answers 200; stopped with its children."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(ready, proc, timeout=90)
        yield proc
    finally:
        stop_all([proc])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a uvicorn worker the parent left behind


def uvicorn_argv(words: list[str]) -> list[str]:
    """``uvicorn …`` as written, run by this interpreter (the venv the README installs into)."""
    assert words[0] == "uvicorn", words
    return [sys.executable, "-m", "uvicorn", *words[1:]]


def docstring_command(source: Path) -> str:
    """The one ``uvicorn`` line of the example's docstring."""
    doc = ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or ""
    lines = [line.strip() for line in doc.splitlines() if " uvicorn " in line]
    assert len(lines) == 1, lines
    return lines[0]


# --------------------------------------------------------------------- what the cockpit sees

def fresh_get(url: str) -> httpx.Response:
    """A GET on a new connection, so that any worker may take it."""
    with httpx.Client(timeout=10.0) as client:
        return client.get(url)


def check_cockpit(base: str, tmp: Path) -> None:
    """The cockpit, on the README's targets file, sees the app's routes by template and its
    config; a TTL change through the control API caches /items/{id}; a bad TTL changes
    nothing."""
    port = int(base.rsplit(":", 1)[1])
    targets = targets_from_readme(tmp, port)
    assert [t.name for t in targets] == ["api-1"]
    model = FleetModel()
    engine = ScrapeEngine(targets, model.ingest, on_cycle=model.tick,
                          on_traces=model.ingest_traces, on_config=model.ingest_config,
                          traces_interval=0.5).start()
    try:
        def seen() -> tuple[bool, bool, bool, bool]:
            for n in range(5):
                fresh_get(f"{base}/items/{n}")
            fresh_get(f"{base}/search?q=lamp")
            return model.read(lambda m: (
                ITEMS in m.routes and m.routes[ITEMS].rate > 0,
                "/search" in m.routes and m.routes["/search"].rate > 0,
                ITEMS in m.configs.get("api-1", {}).get("routes", {}),
                any(t.get("route") == ITEMS for t in m.traces)))

        assert poll(seen, all, timeout=90, interval=0.2) == (True, True, True, True)
        assert model.read(lambda m: m.health["api-1"].up)
        # One row per template, whatever ids were requested.
        assert not model.read(lambda m: [r for r in m.routes if "/items/" in r and r != ITEMS])

        agent = Agent.from_target(targets[0])
        assert agent.base_url == base
        with ControlClient(SECRET, timeout=10.0) as client:
            read = client.read_config(agent)
            assert read.ttl(ITEMS) == 0.0
            done = client.set_ttl([agent], ITEMS, 30, "examples test", {agent: read.etag})
            assert done.outcomes[agent].status == APPLIED, done.outcomes[agent]
            assert poll(lambda: model.ttls(ITEMS), lambda t: t == {"api-1": 30.0},
                        timeout=30) == {"api-1": 30.0}

            def hit() -> httpx.Response:
                return fresh_get(f"{base}/items/1")

            cached = poll(hit, lambda r: r.headers.get("x-trimtab-cache") == "hit", timeout=60,
                          interval=0.05)
            assert cached.headers.get("x-trimtab-cache") == "hit" and cached.json()["id"] == 1

            etag = client.read_config(agent).etag
            bad = client.set_ttl([agent], ITEMS, -5, "typo", {agent: etag})
            assert bad.outcomes[agent].status == REFUSED, bad.outcomes[agent]
            after = client.read_config(agent)
            assert (after.etag, after.ttl(ITEMS)) == (etag, 30.0)
    finally:
        engine.stop()


# --------------------------------------------------------------------- ASGI


def asgi_command(line: str, port: int, state: Path) -> tuple[dict[str, str], list[str]]:
    """A uvicorn line of the README or the example with this test's port, state dir, token."""
    env, words = split_command(line)
    assert env.get("TRIMTAB_TOKENS", "").endswith(f":write:{README_TOKEN}"), env
    assert "TRIMTAB_STATE_DIR" in env, env
    env = {**env, "TRIMTAB_TOKENS": env["TRIMTAB_TOKENS"].replace(README_TOKEN, SECRET),
           "TRIMTAB_STATE_DIR": str(state)}
    words[words.index("--port") + 1] = str(port)
    return env, uvicorn_argv(words)


def existing_app() -> str:
    """examples/fastapi_app.py without its agent part: a plain FastAPI app named ``api``."""
    source = FASTAPI.read_text(encoding="utf-8")
    plain = source[:source.index(AGENT_PART)]
    assert "trimtab" not in plain.split('"""', 2)[2], "the app part must not know trimtab"
    return plain


@pytest.mark.slow
def test_the_readme_asgi_block_on_an_existing_fastapi_app(tmp_path: Path) -> None:
    """Copy the README's python block under a plain FastAPI app, start it with the README's
    uvicorn command: the cockpit sees /items/{id} and changes its TTL."""
    [code] = blocks("python", AGENT_PART)
    (tmp_path / "main.py").write_text(existing_app() + "\n" + code, encoding="utf-8")
    [line] = [x for b in blocks("sh", " uvicorn ") for x in command_lines(b)]
    port = free_port()
    env, argv = asgi_command(line, port, tmp_path / "state")
    base = f"http://127.0.0.1:{port}"
    with running(argv, env, tmp_path, tmp_path / "uvicorn.log", base + "/metrics"):
        # Before any request reaches the app, its routes are configurable (wrapped whole).
        with httpx.Client(timeout=10.0) as client:
            doc = client.get(f"{base}/_trimtab/config",
                             headers={"authorization": f"Bearer {SECRET}"}).json()
        assert ITEMS in doc["routes"] and "/search" in doc["routes"], doc
        check_cockpit(base, tmp_path)


@pytest.mark.slow
def test_the_fastapi_example_by_its_docstring_command(tmp_path: Path) -> None:
    source = FASTAPI.read_text(encoding="utf-8")
    # The example's agent part is the README's block (one text, two places).
    [code] = blocks("python", AGENT_PART)
    agent_part = re.sub(r"\s+# noqa[^\n]*", "", source[source.index(AGENT_PART):])
    assert agent_part.strip() == code.strip()
    port = free_port()
    env, argv = asgi_command(docstring_command(FASTAPI), port, tmp_path / "state")
    base = f"http://127.0.0.1:{port}"
    with running(argv, env, ROOT, tmp_path / "uvicorn.log", base + "/metrics"):
        check_cockpit(base, tmp_path)


def test_without_a_state_dir_the_readme_workers_refuse_to_start(tmp_path: Path) -> None:
    """The README says so: `--workers 2` without TRIMTAB_STATE_DIR serves nothing, and the
    log names the variable."""
    [code] = blocks("python", AGENT_PART)
    (tmp_path / "main.py").write_text(existing_app() + "\n" + code, encoding="utf-8")
    [line] = [x for b in blocks("sh", " uvicorn ") for x in command_lines(b)]
    port = free_port()
    env, argv = asgi_command(line, port, tmp_path / "state")
    del env["TRIMTAB_STATE_DIR"]
    log = tmp_path / "uvicorn.log"
    clean = {k: v for k, v in os.environ.items() if k != "TRIMTAB_STATE_DIR"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp_path, env={**clean, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        said = poll(lambda: log.read_text(errors="replace"),
                    lambda text: text.count("Set TRIMTAB_STATE_DIR") >= 2, timeout=90)
        assert said.count("Set TRIMTAB_STATE_DIR") >= 2, said  # both workers refused
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/items/1", timeout=2.0)
    finally:
        stop_all([proc])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------- sidecar


def node_comment_commands() -> list[str]:
    """The two commands in server.js's opening comment."""
    head = NODE.read_text(encoding="utf-8").split('"use strict"', 1)[0]
    return [line[2:].strip() for line in head.splitlines()
            if line.startswith("//   ") and line[2:].strip()]


@pytest.mark.slow
def test_the_node_service_behind_the_sidecar_as_the_readme_runs_it(tmp_path: Path) -> None:
    node = require_binary("node")
    [block] = blocks("sh", " sidecar ")
    serve_line, sidecar_line = command_lines(block)
    assert node_comment_commands() == [serve_line, sidecar_line]  # one text, two places
    up, port = free_port(), free_port()
    swaps = {"8080": str(up), "--port 8000": f"--port {port}",
             "/tmp/trimtab-sidecar": str(tmp_path / "state"), README_TOKEN: SECRET}
    env, words = split_command(replaced(serve_line, {"8080": str(up)}))
    assert words[0] == "node"
    with running([node, *words[1:]], env, ROOT, tmp_path / "node.log",
                 f"http://127.0.0.1:{up}/health"):
        env, words = split_command(replaced(sidecar_line, swaps))
        assert words[0] == "trimtab-agent"
        script = Path(sys.executable).parent / "trimtab-agent"  # the console script pip made
        base = f"http://127.0.0.1:{port}"
        with running([str(script), *words[1:]], env, ROOT, tmp_path / "sidecar.log",
                     base + "/metrics"):
            check_cockpit(base, tmp_path)
            # Unknown paths fold; the upstream's own answer passes through.
            assert fresh_get(f"{base}/nowhere/7").status_code == 404
            metrics = fresh_get(f"{base}/metrics").text
            assert 'route="<unmatched>"' in metrics and 'route="/nowhere/7"' not in metrics
            # A hit is the sidecar's: the Node process counted one answer for both.
            first, second = fresh_get(f"{base}/items/42"), fresh_get(f"{base}/items/42")
            assert (first.headers["x-trimtab-cache"], second.headers["x-trimtab-cache"]) == (
                "miss", "hit")
            assert second.json() == first.json()
