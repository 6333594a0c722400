"""The README's OpenTelemetry snippet, run as written against a real agent process.

The ```python block (and the ```sh environment variant) of "Traces from other services"
is taken from README.md, only the example address replaced by the agent's, and run in
a fresh interpreter (the SDK's global tracer provider must not leak into this one).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.agent.test_trace_intake import agent, traces  # noqa: F401 - the real agent fixture

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE = "http://10.0.0.5:8000"  # the address the README uses


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _snippet() -> str:
    [code] = [b for b in _blocks("python") if "OTLPSpanExporter(" in b]
    assert f"{EXAMPLE}/_trimtab/v1/traces" in code
    return code


def _run(code: str, base: str, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", code.replace(EXAMPLE, base)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _new_records(base: str, since: int, wait: float) -> list[Any]:
    deadline = time.monotonic() + wait
    while True:
        found = [t for t in traces(base, since=since)[0] if t["route"] == "/orders/{id}"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_readme_snippet_sends_a_trace(agent: str) -> None:  # noqa: F811 - fixture
    _, since = traces(agent)
    _run(_snippet(), agent, {"TRIMTAB_WRITE_TOKEN": "W-secret"})
    [record] = _new_records(agent, since, 20.0)
    assert (record["instance"], record["source"], record["parent_id"]) == (
        "checkout", "otlp", None)


def test_readme_environment_variant_sends_a_trace(agent: str) -> None:  # noqa: F811 - fixture
    [sh] = [b for b in _blocks("sh") if "OTEL_EXPORTER_OTLP_TRACES_HEADERS" in b]
    env = dict(re.findall(r"^export (OTEL_\w+)=(.*)$", sh, flags=re.M))
    assert sorted(env) == ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                           "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
    env = {k: v.strip('"').replace(EXAMPLE, agent).replace("$TRIMTAB_WRITE_TOKEN", "W-secret")
           for k, v in env.items()}
    code, n = re.subn(r"OTLPSpanExporter\(\n.*?\n\)\)\)", "OTLPSpanExporter()))", _snippet(),
                      flags=re.S)
    assert n == 1
    _, since = traces(agent)
    _run(code, agent, env)
    [record] = _new_records(agent, since, 20.0)
    assert record["instance"] == "checkout"


def test_readme_snippet_with_a_read_token_stores_nothing(agent: str) -> None:  # noqa: F811
    _, since = traces(agent)
    _run(_snippet(), agent, {"TRIMTAB_WRITE_TOKEN": "R-secret"})  # exporter logs the 403
    assert _new_records(agent, since, 2.0) == []
