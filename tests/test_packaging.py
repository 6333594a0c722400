"""The two distributions: ``trimtab-agent`` (servers, no GUI stack) and ``trimtab`` (the cockpit).

The slow tests build both wheels from a copy of this checkout with ``pip wheel --no-deps``, install
them into fresh virtual environments (dependencies from the package index) and run real code there:
a Starlette app under uvicorn with the agent's middleware, scraped over HTTP, in the agent-only
environment; the cockpit and the agent imported side by side in the other. Both environments' sizes
are printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from trimtab.agent.procs import free_port, stop_all, wait_http

ROOT = Path(__file__).resolve().parent.parent
AGENT_PROJECT = ROOT / "packaging" / "agent"
GUI_STACK = ("PySide6", "pyqtgraph", "numpy")
# Building and installing (PySide6 alone is ~400 MB) takes minutes on a cold pip cache.
SLOW_TIMEOUT = 1200


def _project(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def _packages_under(folder: Path, name: str) -> set[str]:
    """Every package (directory with ``__init__.py``) in ``folder``, named under ``name``."""
    found = set()
    for init in folder.rglob("__init__.py"):
        rel = init.parent.relative_to(folder)
        if "__pycache__" in rel.parts or "build" in rel.parts:
            continue
        found.add(".".join((name, *rel.parts)))
    return found


# --- the two pyprojects agree (fast) ---------------------------------------------------------


def test_versions_agree_and_the_cockpit_pins_the_agent() -> None:
    cockpit, agent = _project(ROOT)["project"], _project(AGENT_PROJECT)["project"]
    assert agent["name"] == "trimtab-agent"
    assert agent["version"] == cockpit["version"]
    pins = [d for d in cockpit["dependencies"] if d.startswith("trimtab-agent")]
    assert pins == [f"trimtab-agent=={cockpit['version']}"]


def test_each_distribution_lists_every_package_of_its_folders_and_none_twice() -> None:
    cockpit, agent = _project(ROOT)["tool"]["setuptools"], _project(AGENT_PROJECT)["tool"]["setuptools"]
    for config, base in ((cockpit, ROOT), (agent, AGENT_PROJECT)):
        on_disk = set()
        for name, folder in config["package-dir"].items():
            on_disk |= _packages_under((base / folder).resolve(), name)
        assert set(config["packages"]) == on_disk
    assert not set(cockpit["packages"]) & set(agent["packages"])
    # A namespace package: neither ships trimtab/__init__.py, so neither can clobber the other.
    assert "trimtab" not in cockpit["packages"] + agent["packages"]
    assert {p.split(".")[1] for p in agent["packages"]} == {"agent"}


def test_the_agent_distribution_needs_nothing_of_the_gui_stack() -> None:
    deps = " ".join(_project(AGENT_PROJECT)["project"]["dependencies"]).lower()
    for name in (*GUI_STACK, "pyside6-essentials", "sqlite-utils", "tomlkit"):
        assert name.lower() not in deps


# --- real wheels in fresh environments (slow) ------------------------------------------------


def _run(args: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run ``args``; on failure raise with its output (pip's reasons are in it)."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def _clean_env() -> dict[str, str]:
    """This environment minus what would let a child see the development install."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONUSERBASE"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _venv(path: Path, *wheels: Path) -> Path:
    """A fresh virtual environment at ``path`` with ``wheels`` installed; its python."""
    _run([sys.executable, "-m", "venv", path], env=_clean_env())
    python = path / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *wheels],
         env=_clean_env())
    return python


def _size_mb(path: Path) -> float:
    return int(_run(["du", "-sk", path]).stdout.split()[0]) / 1024


def _import_error(python: Path, module: str) -> str:
    """The error ``import module`` raises in that interpreter ('' when it imports)."""
    probe = (f"try:\n import {module}\nexcept ImportError as e:\n print(type(e).__name__, e)")
    return _run([python, "-I", "-c", probe], env=_clean_env()).stdout.strip()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(agent wheel, cockpit wheel), built from a copy of this checkout.

    A copy, so the in-tree build's build/ and egg-info never land in the working tree.
    """
    tmp = tmp_path_factory.mktemp("wheels")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".hypothesis", "__pycache__", "*.egg-info", "build", "dist", "tests",
        "benchmarks", "*.so"))  # the C helpers are built from their source by the wheel build
    out = tmp / "dist"
    for project in (src / "packaging" / "agent", src):
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
              "--disable-pip-version-check", "-w", out, project], env=_clean_env())
    agent = list(out.glob("trimtab_agent-*.whl"))
    cockpit = list(out.glob("trimtab-*.whl"))
    assert len(agent) == 1 and len(cockpit) == 1, sorted(p.name for p in out.iterdir())
    return agent[0], cockpit[0]


APP = '''
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from trimtab.agent.middleware import TrimtabMiddleware


async def item(request):
    return PlainTextResponse("item " + request.path_params["item_id"])


app = TrimtabMiddleware(Starlette(routes=[Route("/items/{item_id}", item)]), instance="wheel")
'''


@pytest.fixture
def agent_app(wheels: tuple[Path, Path], tmp_path: Path,
              capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Path, int]]:
    """(python of the agent-only venv, port of a running app instrumented by the agent)."""
    python = _venv(tmp_path / "venv-agent", wheels[0])
    with capsys.disabled():
        print(f"\nagent-only venv: {_size_mb(tmp_path / 'venv-agent'):.0f} MB")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "server_app.py").write_text(APP)
    port = free_port()
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(python), "-m", "uvicorn", "server_app:app", "--host",
                             "127.0.0.1", "--port", str(port), "--app-dir", str(tmp_path / "app")],
                            cwd=tmp_path / "app", env=_clean_env(), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/items/1", proc)
        yield python, port
    finally:
        stop_all([proc])
        log.close()


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_the_agent_wheel_alone_serves_metrics_without_the_gui_stack(
        agent_app: tuple[Path, int]) -> None:
    python, port = agent_app
    base = f"http://127.0.0.1:{port}"
    for item in ("2", "3", "4"):
        assert httpx.get(f"{base}/items/{item}", timeout=10).text == f"item {item}"
    metrics = httpx.get(f"{base}/metrics", timeout=10)
    assert metrics.status_code == 200
    counts = {tuple(sorted(s.labels.items())): s.value
              for family in text_string_to_metric_families(metrics.text)
              for s in family.samples if s.name == "trimtab_http_requests_total"}
    # wait_http's probe plus the three above, all on one route template.
    assert counts == {(("method", "GET"), ("route", "/items/{item_id}"), ("status", "200")): 4.0}
    # The agent came from the wheel in that venv, not from this checkout.
    where = _run([python, "-I", "-c", "import trimtab.agent as a; print(a.__file__)"],
                 env=_clean_env()).stdout.strip()
    assert where.startswith(str(python.parent.parent)), where
    for module in (*GUI_STACK, "trimtab.app", "trimtab.collectors", "trimtab.demo"):
        assert _import_error(python, module).startswith("ModuleNotFoundError"), module
    # The console script the wheel installs runs the agent's command line.
    usage = _run([python.parent / "trimtab-agent", "--help"], env=_clean_env()).stdout
    assert "balance" in usage and "haproxy" in usage


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_both_wheels_install_together_without_a_file_in_common(
        wheels: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent, cockpit = wheels
    agent_files, cockpit_files = (set(zipfile.ZipFile(w).namelist()) for w in wheels)
    shipped = {f for f in agent_files | cockpit_files if ".dist-info/" not in f}
    assert not agent_files & cockpit_files
    assert "trimtab/__init__.py" not in shipped
    assert {f.split("/")[1] for f in agent_files if f.startswith("trimtab/")} == {"agent"}
    assert not [f for f in cockpit_files if f.startswith("trimtab/agent/")]
    metadata = zipfile.ZipFile(cockpit).read(
        next(f for f in cockpit_files if f.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: trimtab-agent==" in metadata

    python = _venv(tmp_path / "venv-both", agent, cockpit)
    with capsys.disabled():
        print(f"\ncockpit + agent venv: {_size_mb(tmp_path / 'venv-both'):.0f} MB")
    # the parser's C helpers were compiled into the cockpit's wheel, and the parser uses them
    assert [f for f in cockpit_files if f.startswith("trimtab/collectors/exposition/_native.")
            and f.endswith(".so")], sorted(cockpit_files)
    probe = ("import trimtab.app, trimtab.agent, trimtab.app.model.fleet, "
             "trimtab.agent.middleware, trimtab.demo.app, pyqtgraph, numpy, PySide6.QtCore\n"
             "from trimtab.collectors.exposition import native\n"
             "assert native.ENABLED, 'C helpers not importable'\n"
             "print(trimtab.agent.__file__)")
    where = _run([python, "-I", "-c", probe], env=_clean_env()).stdout.strip()
    assert where.startswith(str(tmp_path / "venv-both")), where
