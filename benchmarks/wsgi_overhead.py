"""Per-request overhead of the trimtab WSGI agent vs. prometheus-flask-exporter, on Flask.

The same trivial Flask endpoint (``GET /items/<int:id>``) is called in process (the WSGI
callable with a prepared environ, no HTTP) as:

- bare Flask,
- trimtab's WSGI agent with the cache disabled (metrics + traces + route resolution),
- trimtab's WSGI agent with the cache on but no TTL on the route (adds what-if tracking),
- prometheus-flask-exporter (``PrometheusMetrics(app)``, its own registry).

Time is this process's CPU time (``time.process_time_ns``), so a busy shared machine
running someone else is not charged to a variant. Rounds are interleaved and each
variant's figure is its fastest round; the median is printed too. The last line is the
ratio of the µs trimtab (cache disabled) adds to what prometheus-flask-exporter adds.

Run: ``.venv/bin/python benchmarks/wsgi_overhead.py [--requests 3000] [--rounds 11]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics
from trimtab.agent.flask import instrument
from werkzeug.test import EnvironBuilder


def _flask() -> Flask:
    app = Flask("bench")

    @app.get("/items/<int:id>")
    def item(id: int) -> Any:  # noqa: A002 - the rule names it
        return jsonify({"id": id})

    return app


def _trimtab(cache: bool) -> Flask:
    app = _flask()
    agent = instrument(app, instance="bench", tokens="b:read:bench-token", state_dir="")
    if not cache:
        agent.config.apply({"cache": {"enabled": False}}, None)
    return app


def _exporter() -> Flask:
    app = _flask()
    PrometheusMetrics(app, registry=CollectorRegistry())
    return app


VARIANTS: dict[str, Callable[[], Flask]] = {
    "bare": _flask,
    "trimtab (cache disabled)": lambda: _trimtab(cache=False),
    "trimtab (cache on, no TTL: what-if)": lambda: _trimtab(cache=True),
    "prometheus-flask-exporter": _exporter,
}


def _environs() -> list[dict[str, Any]]:
    return [EnvironBuilder(path=f"/items/{i}", headers={"user-agent": "bench"}).get_environ()
            for i in range(50)]


def _one_round(app: Flask, requests: int, environs: list[dict[str, Any]]) -> float:
    """Mean CPU seconds per request over ``requests`` sequential in-process calls."""

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None
                       ) -> None:
        return None

    start = time.process_time_ns()
    for i in range(requests):
        body = app(dict(environs[i % 50]), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.process_time_ns() - start) / 1e9 / requests


def main(requests: int, rounds: int) -> None:
    apps = {name: make() for name, make in VARIANTS.items()}
    environs = _environs()
    for app in apps.values():
        _one_round(app, 500, environs)  # warm-up: imports, caches, lazy state
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            samples[name].append(_one_round(app, requests, environs))
    per_request = {name: min(values) * 1e6 for name, values in samples.items()}
    medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    bare = per_request["bare"]
    print(f"{'Flask endpoint, variant':40s} {'µs/req':>8s} {'added':>7s} {'median added':>13s}")
    for name, micros in per_request.items():
        print(f"{name:40s} {micros:8.1f} {micros - bare:7.1f} "
              f"{medians[name] - medians['bare']:13.1f}")
    added_trimtab = per_request["trimtab (cache disabled)"] - bare
    added_exporter = per_request["prometheus-flask-exporter"] - bare
    print(f"ratio trimtab WSGI / prometheus-flask-exporter (µs added per request): "
          f"{added_trimtab / added_exporter:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    main(args.requests, args.rounds)
