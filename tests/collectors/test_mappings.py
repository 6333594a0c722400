"""Mapping tables: loader validation, normalising semantics, and real instrumented apps."""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from trimtab.agent.balance.haproxy import RuntimeClient
from trimtab.agent.procs import free_port, stop_all, wait_http
from trimtab.collectors.exposition import Exemplar, Exposition, Sample, parse
from trimtab.collectors.mappings import (
    MappingError,
    Normaliser,
    builtin_tables,
    detect,
    for_exposition,
    load_file,
    load_tables,
    merge,
    normalise,
)
from trimtab.collectors.promql import histogram_quantile, le_value

from tests.conftest import require_binary
from tests.support import haproxy_config, start_uvicorn, uvicorn_server

ROOT = Path(__file__).resolve().parents[2]


def _doc(**rule: object) -> dict[str, object]:
    base: dict[str, object] = {"from": "a_total", "to": "trimtab_http_requests_total"}
    base.update(rule)
    return {"mapping": [{"source": "x", "detect": ["a_total"], "metric": [base]}]}


# ---------------------------------------------------------------- loader: bad input first

@pytest.mark.parametrize(("doc", "field"), [
    ({"mapping": {"source": "x"}}, "mapping"),
    ({"mapping": [{"detect": ["a"], "metric": []}]}, "mapping[0].source"),
    ({"mapping": [{"source": "x", "detect": [], "metric": []}]}, "mapping[0].detect"),
    ({"mapping": [{"source": "x", "detect": ["a-b"], "metric": []}]}, "mapping[0].detect[0]"),
    ({"mapping": [{"source": "x", "detect": ["a"]}]}, "mapping[0].metric"),
    ({"mapping": [{"source": "x", "detect": ["a"], "metric": [{}], "extra": 1}]},
     "mapping[0].extra"),
    (_doc(to="bad name"), "mapping[0].metric[0].to"),
    (_doc(**{"from": 3}), "mapping[0].metric[0].from"),
    (_doc(kind="summary"), "mapping[0].metric[0].kind"),
    (_doc(scale=0), "mapping[0].metric[0].scale"),
    (_doc(scale=True), "mapping[0].metric[0].scale"),
    (_doc(scale="ms"), "mapping[0].metric[0].scale"),
    (_doc(labels={"route": 1}), "mapping[0].metric[0].labels.route"),
    (_doc(labels={"bad-label": "{a}"}), "mapping[0].metric[0].labels.bad-label"),
    (_doc(labels={"route": "{a-b}"}), "mapping[0].metric[0].labels.route"),
    (_doc(labels={"route": "{a}}"}), "mapping[0].metric[0].labels.route"),
    (_doc(kind="histogram", labels={"le": "{le}"}), "mapping[0].metric[0].labels.le"),
    (_doc(match=["state"]), "mapping[0].metric[0].match"),
    (_doc(unit="ms"), "mapping[0].metric[0].unit"),
])
def test_invalid_tables_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(MappingError) as err:
        load_tables(doc, "cfg")
    assert err.value.field == f"cfg: {field}"
    assert str(err.value).startswith(f"cfg: {field}: ")


def test_duplicate_source_and_bad_file(tmp_path: Path) -> None:
    table = _doc()["mapping"][0]  # type: ignore[index]
    with pytest.raises(MappingError, match=r"mapping\[1\]\.source: 'x' is defined twice"):
        load_tables({"mapping": [table, table]})
    bad = tmp_path / "cfg.toml"
    bad.write_text("[[mapping]\n")
    with pytest.raises(MappingError, match="not valid TOML"):
        load_file(bad)


def test_user_file_replaces_a_builtin_and_adds_its_own(tmp_path: Path) -> None:
    cfg = tmp_path / "trimtab.toml"
    cfg.write_text('[[target]]\nname = "a"\n\n'
                   '[[mapping]]\nsource = "haproxy"\ndetect = ["haproxy_server_weight"]\n'
                   '[[mapping.metric]]\nfrom = "haproxy_server_weight"\n'
                   'to = "trimtab_balancer_server_weight"\nlabels = { server = "{server}" }\n\n'
                   '[[mapping]]\nsource = "mine"\ndetect = ["my_hits_total{page}"]\n'
                   '[[mapping.metric]]\nfrom = "my_hits_total"\nto = "trimtab_http_requests_total"\n'
                   'labels = { route = "{page}" }\n')
    tables = merge(builtin_tables(), load_file(cfg))
    assert [t.source for t in tables][-2:] == ["haproxy", "mine"]
    assert len(tables[-2].metrics) == 1
    expo = parse('my_hits_total{page="/a"} 3\nmy_other 1\n')
    assert detect(expo, tables) == "mine"
    assert detect(parse('my_hits_total 3\n'), tables) is None  # the {page} label is required
    out = normalise(expo, tables)
    assert out.samples[-1] == Sample("trimtab_http_requests_total", (("route", "/a"),), 3.0)


# ---------------------------------------------------------------- normalising semantics

def _tables(*rules: dict[str, object]) -> Normaliser:
    return Normaliser(load_tables({"mapping": [{"source": "t", "detect": ["x"],
                                                "metric": list(rules)}]}))


def test_dropped_labels_sum_and_fallback_templates() -> None:
    norm = _tables({"from": "req_total", "to": "trimtab_http_requests_total",
                    "labels": {"route": "{route|target}", "server": "{proxy}/{server}",
                               "kind": "static"}})
    expo = parse('req_total{target="/a",code="200"} 2\nreq_total{target="/a",code="500"} 3\n'
                 'req_total{route="/b",target="/x",proxy="p",server="s"} 1\n')
    got = {s.labels: s.value for s in norm.normalise(expo).samples
           if s.name == "trimtab_http_requests_total"}
    assert got == {(("kind", "static"), ("route", "/a"), ("server", "/")): 5.0,
                   (("kind", "static"), ("route", "/b"), ("server", "p/s")): 1.0}


def test_histogram_scale_match_and_keep_source() -> None:
    norm = _tables({"from": "lat_ms", "kind": "histogram", "scale": 0.001,
                    "to": "trimtab_http_request_duration_seconds", "labels": {"route": "{r}"},
                    "match": {"job": "api"}})
    text = ('# TYPE lat_ms histogram\n'
            'lat_ms_bucket{job="api",r="/a",le="75"} 1\nlat_ms_bucket{job="api",r="/a",le="+Inf"} 2\n'
            'lat_ms_count{job="api",r="/a"} 2\nlat_ms_sum{job="api",r="/a"} 300\n'
            'lat_ms_bucket{job="db",r="/a",le="75"} 9\nother 1\n')
    expo = parse(text)
    out = norm.normalise(expo)
    assert out.samples[: len(expo.samples)] == expo.samples
    canon = {(s.name, s.labels): s.value for s in out.samples[len(expo.samples):]}
    assert canon == {
        ("trimtab_http_request_duration_seconds_bucket", (("le", "0.075"), ("route", "/a"))): 1.0,
        ("trimtab_http_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "/a"))): 2.0,
        ("trimtab_http_request_duration_seconds_count", (("route", "/a"),)): 2.0,
        ("trimtab_http_request_duration_seconds_sum", (("route", "/a"),)): 0.3}
    assert out.type_of("trimtab_http_request_duration_seconds_bucket") == "histogram"
    slim = norm.normalise(expo, keep_source=False)
    assert [s.name for s in slim.samples if not s.name.startswith("trimtab_")] == [
        "lat_ms_bucket", "other"]  # the job="db" series matched no rule: kept
    assert norm.normalise(parse("other 1\n")).samples == [Sample("other", (), 1.0)]


def test_memo_limit_only_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = {"from": "req_total", "to": "trimtab_http_requests_total",
            "labels": {"route": "{route}"}}
    text = "".join(f'req_total{{route="/r{i % 4}",code="{i}"}} {i}\n' for i in range(12))
    expected = _tables(rule).normalise(parse(text)).samples
    monkeypatch.setattr("trimtab.collectors.mappings._MEMO_LIMIT", 3)
    small = _tables(rule)
    for _ in range(3):  # the memo overflows inside the first scrape and is cleared after it
        assert small.normalise(parse(text)).samples == expected
    assert sorted(s.value for s in expected[12:]) == [12.0, 15.0, 18.0, 21.0]


def test_exemplars_follow_their_samples() -> None:
    norm = _tables({"from": "lat_ms", "kind": "histogram", "scale": 0.001,
                    "to": "trimtab_http_request_duration_seconds"})
    expo = Exposition(samples=[Sample("a", (), 1.0),
                               Sample("lat_ms_bucket", (("le", "+Inf"),), 1.0)],
                      exemplars={1: Exemplar((("trace_id", "abc"),), 250.0)})
    out = norm.normalise(expo, keep_source=False)
    assert out.samples[1].name == "trimtab_http_request_duration_seconds_bucket"
    assert out.exemplars == {1: Exemplar((("trace_id", "abc"),), 0.25)}


def test_native_trimtab_exposition_is_not_detected() -> None:
    expo = parse('trimtab_http_requests_total{route="/a"} 1\nhttp_requests_total{handler="/a"} 1\n')
    assert detect(expo) is None and for_exposition(expo) is None
    assert detect(parse('http_requests_total{handler="/a",method="GET",status="2xx"} 1\n')) == (
        "prometheus-fastapi-instrumentator")


# ---------------------------------------------------------------- real instrumented apps

APPS = {  # module, metrics path, extra environment, expected source
    "instrumentator": ("instrumentator_app", "/metrics", {}, "prometheus-fastapi-instrumentator"),
    "starlette": ("starlette_app", "/metrics", {}, "starlette_exporter"),
    "otel-stable": ("otel_app", "/metrics/", {"OTEL_SEMCONV_STABILITY_OPT_IN": "http"},
                    "opentelemetry"),
    "otel-old-ms": ("otel_app", "/metrics/", {"OTEL_SEMCONV_STABILITY_OPT_IN": ""},
                    "opentelemetry"),
}
SLOW_MS = 30


@pytest.fixture(params=sorted(APPS))
def served_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """One uvicorn subprocess serving the app; yields (base url, metrics url, source)."""
    module, path, extra, source = APPS[request.param]
    with uvicorn_server(f"tests.collectors.apps.{module}:app", tmp_path / "uvicorn.log",
                        ready=path, env={**os.environ, **extra}) as base:
        yield base, base + path, source


def _canonical(expo: Exposition, name: str, by: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in expo.samples:
        if s.name == name:
            key = dict(s.labels).get(by, "?")
            out[key] = out.get(key, 0.0) + s.value
    return out


def test_real_app_is_recognised_and_normalised(served_app: tuple[str, str, str]) -> None:
    base, metrics_url, source = served_app
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for i in range(6):
            assert client.get(f"/users/{i}", params={"ms": SLOW_MS}).status_code == 200
        for _ in range(2):
            assert client.get("/fail").status_code == 503
        reply = client.get(metrics_url)
    expo = parse(reply.text, reply.headers.get("content-type"))
    assert detect(expo) == source
    normaliser = for_exposition(expo)
    assert normaliser is not None and normaliser.sources == (source,)
    out = normalise(expo, normaliser)
    assert out.samples[: len(expo.samples)] == expo.samples
    requests = _canonical(out, "trimtab_http_requests_total", "route")
    assert requests["/users/{uid}"] == 6 and requests["/fail"] == 2
    errors = sum(s.value for s in out.samples if s.name == "trimtab_http_requests_total"
                 and dict(s.labels)["status"].startswith("5"))
    assert errors == 2
    counts = _canonical(out, "trimtab_http_request_duration_seconds_count", "route")
    assert counts["/users/{uid}"] == 6
    buckets = [(le_value(dict(s.labels)["le"]), s.value) for s in out.samples
               if s.name == "trimtab_http_request_duration_seconds_bucket"
               and dict(s.labels).get("route") == "/users/{uid}"]
    q = histogram_quantile(0.5, buckets)
    assert q is not None and not q.in_inf_bucket
    # Every request slept SLOW_MS, so the median's bucket reaches past it; in seconds, not ms.
    assert q.upper >= SLOW_MS / 1000 and 0 < q.value < 5.0
    mean = (_canonical(out, "trimtab_http_request_duration_seconds_sum", "route")["/users/{uid}"]
            / counts["/users/{uid}"])
    assert SLOW_MS / 1000 <= mean < 5.0
    assert not math.isnan(q.value)


@pytest.fixture
def haproxy_fleet(tmp_path: Path) -> Iterator[tuple[str, str, RuntimeClient]]:
    """HAProxy with its Prometheus exporter before two uvicorn backends: (front, metrics, client)."""
    binary = require_binary("haproxy")
    ports = {k: free_port() for k in ("port", "prom", "s1", "s2")}
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(ports["port"], {s: f"127.0.0.1:{ports[s]}" for s in ("s1", "s2")},
                                  sock=tmp_path / "admin.sock", prom=ports["prom"],
                                  weights={"s1": 3, "s2": 1}))
    log = open(tmp_path / "fleet.log", "wb")  # noqa: SIM115 - closed below
    procs = [start_uvicorn("tests.collectors.apps.starlette_app:app", tmp_path / f"{s}.log",
                           port=ports[s])[0] for s in ("s1", "s2")]
    try:
        for s, proc in zip(("s1", "s2"), procs, strict=True):
            wait_http(f"http://127.0.0.1:{ports[s]}/metrics", proc)
        procs.append(subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log,
                                      stderr=subprocess.STDOUT))
        metrics = f"http://127.0.0.1:{ports['prom']}/metrics"
        wait_http(metrics, procs[-1])
        yield (f"http://127.0.0.1:{ports['port']}", metrics,
               RuntimeClient(str(tmp_path / "admin.sock"), timeout=2.0))
    finally:
        stop_all(procs)
        log.close()


def _balancer(metrics_url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    reply = httpx.get(metrics_url, timeout=10.0)
    expo = parse(reply.text, reply.headers.get("content-type"))
    assert detect(expo) == "haproxy"
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for s in normalise(expo, builtin_tables(), keep_source=False).samples:
        if s.name.startswith("trimtab_balancer_"):
            out.setdefault(s.name[len("trimtab_balancer_"):], {})[s.labels] = s.value
    return out


def _srv(name: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"server": f"be/{name}", **extra}.items()))


def test_real_haproxy_exporter_gives_balancer_share_and_weights(
        haproxy_fleet: tuple[str, str, RuntimeClient]) -> None:
    front, metrics_url, admin = haproxy_fleet
    with httpx.Client(base_url=front, timeout=10.0) as client:
        for i in range(40):
            assert client.get(f"/users/{i}").status_code == 200
    lb = _balancer(metrics_url)
    assert lb["requests_total"] == {_srv("s1"): 30.0, _srv("s2"): 10.0}  # weights 3:1
    assert lb["server_weight"] == {_srv("s1"): 3.0, _srv("s2"): 1.0}
    assert lb["server_up"] == {_srv("s1"): 1.0, _srv("s2"): 1.0}
    assert lb["errors_total"] == {_srv("s1"): 0.0, _srv("s2"): 0.0}
    assert set(lb["in_flight"]) == {_srv("s1"), _srv("s2")}
    assert lb["server_state"][_srv("s1", state="ready")] == 1.0
    admin.set_weight("be", "s2", 3)
    admin.set_state("be", "s1", "drain")
    lb = _balancer(metrics_url)
    # HAProxy 2.6 reports the user weight while draining: drain shows in the state only.
    assert lb["server_weight"] == {_srv("s1"): 3.0, _srv("s2"): 3.0}
    assert lb["server_state"][_srv("s1", state="drain")] == 1.0
    assert lb["server_state"][_srv("s1", state="ready")] == 0.0
    assert lb["server_up"][_srv("s1")] == 1.0  # draining, still healthy
    admin.set_state("be", "s1", "maint")
    lb = _balancer(metrics_url)
    assert lb["server_state"][_srv("s1", state="maint")] == 1.0
    assert lb["server_up"][_srv("s1")] == 0.0
