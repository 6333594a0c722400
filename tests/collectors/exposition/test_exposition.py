"""The exposition parser: exact cases, equality with prometheus_client, differential fuzz.

prometheus_client's parsers are the reference on valid input. A small
normaliser maps both outputs to comparable sample lists: prometheus_client
returns dict labels, int values for integer text, ``Timestamp`` objects for
OpenMetrics timestamps, and renames a 0.0.4 counter sample ``x`` (declared as
``x``) to ``x_total``; trimtab returns exactly what the text says.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_om_reference,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text_reference
from prometheus_client.samples import Timestamp
from trimtab.agent.procs import free_port
from trimtab.collectors.exposition import (
    OPENMETRICS,
    TEXT,
    Exposition,
    ParseError,
    TargetParser,
    parse,
)

from tests.conftest import require_binary
from tests.support import haproxy_config

# every test twice: with the parser's C helpers, then with its Python paths alone (conftest)
pytestmark = pytest.mark.usefixtures("reader")

CORPUS = Path(__file__).parent / "corpus"
OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


# --- the normaliser ---------------------------------------------------------------------------

def _num(value: float) -> float | str:
    return "NaN" if math.isnan(value) else float(value)


def _ts(ts: object) -> float | None:
    if ts is None:
        return None
    if isinstance(ts, Timestamp):  # exact decimal, then one rounding, as float("123.456") does
        return float(Decimal(ts.sec) + Decimal(ts.nsec) / Decimal(10**9))
    return float(ts)  # type: ignore[arg-type]


def normalise_ours(expo: Exposition) -> list[tuple[object, ...]]:
    out = []
    for i, s in enumerate(expo.samples):
        ex = expo.exemplars.get(i)
        exemplar = None if ex is None else (ex.labels, _num(ex.value), ex.timestamp)
        out.append((s.name, s.labels, _num(s.value), s.timestamp, exemplar))
    return out


def normalise_reference(text: str, openmetrics: bool, declared: dict[str, str]) -> list[tuple[object, ...]]:
    out = []
    families = parse_om_reference(text) if openmetrics else parse_text_reference(text)
    for family in families:
        for s in family.samples:
            name = s.name
            if (not openmetrics and family.type == "counter" and declared.get(family.name) == "counter"
                    and name == family.name + "_total"):
                name = family.name  # the reference appended _total to a counter declared without it
            ex = s.exemplar
            exemplar = None if ex is None else (tuple(sorted(ex.labels.items())), _num(ex.value), _ts(ex.timestamp))
            out.append((name, tuple(sorted(s.labels.items())), _num(s.value), _ts(s.timestamp), exemplar))
    return out


def reference_metadata(text: str, openmetrics: bool, declared: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Declared family name → (type, help) as the reference sees them."""
    out = {}
    families = parse_om_reference(text) if openmetrics else parse_text_reference(text)
    for family in families:
        name = family.name
        if not openmetrics and family.type == "counter" and name + "_total" in declared:
            name += "_total"  # the reference strips _total from the family name
        if name in declared:
            out[name] = (family.type, family.documentation)
    return out


def assert_same_parse(got: Exposition, expected: Exposition) -> None:
    """Equal parses (NaN equal to NaN, which Sample equality would not grant)."""
    assert normalise_ours(got) == normalise_ours(expected)
    assert (got.types, got.helps, got.units, got.format) == (
        expected.types, expected.helps, expected.units, expected.format)


def assert_same_as_reference(text: str, content_type: str | None = None) -> Exposition:
    expo = parse(text, content_type)
    openmetrics = expo.format == OPENMETRICS
    assert normalise_ours(expo) == normalise_reference(text, openmetrics, expo.types)
    ours_meta = {n: (t, expo.helps.get(n, "")) for n, t in expo.types.items()}
    assert ours_meta == reference_metadata(text, openmetrics, expo.types)
    return expo


# --- a corpus of real expositions ------------------------------------------------------------

def _client_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("http_requests", 'Requests "served" \\ by route\nper method', ["route", "method"],
                       registry=registry)
    requests.labels("/users/{id}", "GET").inc(3)
    requests.labels('/q?a="b"&c=\\d', "POST").inc(1, exemplar={"trace_id": "4bf92f3577b34da6"})
    Gauge("temperature_celsius", "Room temperature", registry=registry).set(float("nan"))
    Gauge("headroom", "Unbounded", ["side"], registry=registry).labels("up").set(float("inf"))
    latency = Histogram("latency_seconds", "Latency", ["route"], registry=registry)
    for value in (0.003, 0.02, 0.02, 0.4, 7.5, 30.0):
        latency.labels("/orders/{id}").observe(value, exemplar={"trace_id": "abc"})
    size = Summary("payload_bytes", "Payload size", registry=registry)
    size.observe(512)
    Info("build", "Build information", registry=registry).info({"version": "1.2.3", "commit": "deadbeef"})
    Enum("phase", "Lifecycle", states=["starting", "serving"], registry=registry).state("serving")
    return registry


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text-0.0.4", "openmetrics"])
def test_prometheus_client_exposition_equals_reference(openmetrics: bool) -> None:
    registry = _client_registry()
    body = (generate_openmetrics if openmetrics else generate_latest)(registry).decode()
    expo = assert_same_as_reference(body)
    assert expo.format == (OPENMETRICS if openmetrics else TEXT)
    assert len(expo.samples) >= 30
    if openmetrics:
        assert len(expo.exemplars) >= 2
        assert any(s.name == "http_requests_created" for s in expo.samples)


@pytest.mark.parametrize("accept", ["text/plain;version=0.0.4", OM_TYPE])
def test_trimtab_agent_metrics_equal_reference(accept: str) -> None:
    from trimtab.demo.app import build_app

    async def scrape() -> httpx.Response:
        transport = httpx.ASGITransport(app=build_app("api-1", slowness=0.01, seed=3))
        async with httpx.AsyncClient(transport=transport, base_url="http://api-1") as client:
            for path in ("/products/7", "/products/8", "/search?q=x", "/nope"):
                await client.get(path)
            await client.post("/orders", content=b"{}")
            return await client.get("/metrics", headers={"accept": accept})

    response = asyncio.run(scrape())
    assert response.status_code == 200
    expo = assert_same_as_reference(response.text, response.headers["content-type"])
    assert any(s.name.startswith("trimtab_http_request_duration_seconds_bucket") for s in expo.samples)
    assert any(dict(s.labels).get("route") == "/products/{id}" for s in expo.samples)


@pytest.mark.parametrize("name", ["node_exporter.prom", "haproxy_exporter.prom"])
def test_corpus_file_equals_reference(name: str) -> None:
    text = (CORPUS / name).read_text()
    expo = assert_same_as_reference(text)
    assert len(expo.samples) > 40
    assert_same_parse(assert_same_as_reference(text.replace("\n", "\r\n")), expo)


def test_real_haproxy_prometheus_exporter_equals_reference(tmp_path: Path) -> None:
    haproxy = require_binary("haproxy")
    port, prom, backend = free_port(), free_port(), f"127.0.0.1:{free_port()}"
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(port, {"api-1": backend, "api-2": backend}, prom=prom))
    log = tmp_path / "haproxy.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        body = _poll_metrics(f"http://127.0.0.1:{prom}/metrics", proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    expo = assert_same_as_reference(body)
    assert len(expo.samples) > 100
    assert any(s.name == "haproxy_server_weight" and dict(s.labels)["server"] == "api-2" for s in expo.samples)


def _poll_metrics(url: str, proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"haproxy exited: {log.read_text()}"
        try:
            return httpx.get(url, timeout=1).raise_for_status().text
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("haproxy's prometheus exporter did not answer within 10 s")


# --- generated expositions ---------------------------------------------------------------------

_LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: not n.startswith("__") and n not in ("le", "quantile"))
_LABEL_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
    st.sampled_from(["/users/{id}", "}{", '"quoted"', "back\\slash", "two\nlines", '} # {a="b"} 1',
                     "a b  c", "\\n", "=,", "ünï©ødé", ""]))
_HELP = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), max_size=12).map(
    lambda s: s.replace("_", " ").strip())


def _escape(value: str, quote: bool) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value.replace('"', '\\"') if quote else value


def _render_value(draw: st.DrawFn, value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return draw(st.sampled_from(["+Inf", "Inf"] if value > 0 else ["-Inf"]))
    if value == int(value) and abs(value) < 1e15:
        return draw(st.sampled_from([str(int(value)), repr(float(value)), f"{value:e}"]))
    return repr(value)


def _label_text(draw: st.DrawFn, labels: list[tuple[str, str]], openmetrics: bool) -> str:
    if not labels and draw(st.booleans()):
        return ""
    body = ",".join(f'{n}="{_escape(v, True)}"' for n, v in labels)
    comma = "," if labels and not openmetrics and draw(st.booleans()) else ""
    return "{" + body + comma + "}"


def _timestamp(draw: st.DrawFn, openmetrics: bool) -> str:
    if openmetrics:
        whole = draw(st.integers(0, 2 * 10**9))
        digits = draw(st.integers(0, 9))
        return str(whole) if digits == 0 else f"{whole}.{draw(st.integers(0, 10**digits - 1)):0{digits}d}"
    return str(draw(st.integers(-10**6, 2 * 10**12)))


@st.composite
def _family(draw: st.DrawFn, index: int, openmetrics: bool, with_ts: bool) -> list[str]:
    kinds = ["counter", "gauge", "histogram", "summary", "untyped"] + (["info", "unknown"] if openmetrics else [])
    kind = draw(st.sampled_from(kinds))
    name = f"m{index}_" + draw(st.from_regex(r"[a-z:][a-z0-9_:]{0,8}", fullmatch=True).filter(
        lambda n: not n.endswith(("_total", "_bucket", "_count", "_sum", "_created", "_info", "_"))))
    declared = name + "_total" if kind == "counter" and not openmetrics and draw(st.booleans()) else name
    lines = []
    if draw(st.booleans()):
        lines.append(f"# HELP {declared} {_escape(draw(_HELP), openmetrics)}")
    if kind != "untyped" and (kind != "unknown" or draw(st.booleans())):
        lines.append(f"# TYPE {declared} {kind}")
    names = draw(st.lists(_LABEL_NAMES, max_size=3, unique=True))
    groups = draw(st.lists(st.tuples(*[_LABEL_VALUES] * len(names)), min_size=1, max_size=3, unique=True))
    for values in groups:
        labels = draw(st.permutations(list(zip(names, values))))
        ts = f" {_timestamp(draw, openmetrics)}" if with_ts else ""
        for sample_name, extra, value in _group(draw, kind, name, declared, openmetrics):
            full = labels + extra
            if extra:
                full.insert(draw(st.integers(0, len(labels))), full.pop())
            lines.append(f"{sample_name}{_label_text(draw, full, openmetrics)} {_render_value(draw, value)}"
                         + ts + _exemplar(draw, sample_name, kind, openmetrics))
    return lines


def _exemplar(draw: st.DrawFn, sample_name: str, kind: str, openmetrics: bool) -> str:
    fits = (kind == "counter" and sample_name.endswith("_total")) or (
        kind == "histogram" and sample_name.endswith("_bucket"))
    if not openmetrics or not fits or not draw(st.booleans()):
        return ""
    trace = draw(st.from_regex(r"[0-9a-f]{1,32}", fullmatch=True))
    ts = f" {_timestamp(draw, True)}" if draw(st.booleans()) else ""
    return f' # {{trace_id="{trace}"}} {_render_value(draw, draw(st.floats(0, 100)))}{ts}'


def _group(draw: st.DrawFn, kind: str, name: str, declared: str,
           openmetrics: bool) -> list[tuple[str, list[tuple[str, str]], float]]:
    """The samples of one label set of one family, valid for both reference parsers."""
    count = float(draw(st.integers(0, 10**6)))
    anything = st.floats(allow_nan=True, allow_infinity=True)
    if kind == "counter":
        return [(declared if not openmetrics else name + "_total", [], count)]
    if kind == "info":
        return [(name + "_info", [], 1.0)]
    if kind == "histogram":
        low = 0.0 if openmetrics else -1e3  # OpenMetrics: no _sum beside negative buckets
        bounds = sorted(draw(st.lists(st.floats(low, 1e3), min_size=0, max_size=4, unique=True)))
        cumulative = sorted(float(draw(st.integers(0, int(count)))) for _ in bounds)
        out = [(name + "_bucket", [("le", _render_value(draw, b) if not openmetrics else repr(b))], c)
               for b, c in zip(bounds, cumulative)]
        out.append((name + "_bucket", [("le", "+Inf")], count))
        return out + [(name + "_count", [], count), (name + "_sum", [], float(draw(st.integers(0, 10**6))))]
    if kind == "summary":
        qs = sorted(draw(st.lists(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]), max_size=3, unique=True)))
        out = [(name, [("quantile", repr(q))], draw(st.floats(0, 1e6))) for q in qs]
        return out + [(name + "_count", [], count), (name + "_sum", [], draw(st.floats(0, 1e9)))]
    return [(name, [], draw(anything))]


@st.composite
def expositions(draw: st.DrawFn, openmetrics: bool) -> str:
    """A valid exposition: families of every type, hostile label values, odd numbers, timestamps."""
    with_ts = draw(st.booleans())
    lines: list[str] = []
    for index in range(draw(st.integers(0, 5))):
        lines += draw(_family(index, openmetrics, with_ts))
    if openmetrics:
        lines.append("# EOF")
    ending = draw(st.sampled_from(["\n", "\r\n"] if not openmetrics else ["\n"]))
    return ending.join(lines) + (ending if draw(st.booleans()) else "")


# --- differential fuzz -----------------------------------------------------------------------

@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow
@given(expositions(openmetrics=False))
def test_fuzz_text_format_equals_reference(text: str) -> None:
    assert_same_as_reference(text, "text/plain; version=0.0.4")


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(expositions(openmetrics=True))
def test_fuzz_openmetrics_equals_reference(text: str) -> None:
    assert_same_as_reference(text, OM_TYPE)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.booleans())
def test_fuzz_warm_parser_equals_fresh_parse(data: st.DataObject, openmetrics: bool) -> None:
    """A target's parser, fed scrape after scrape (some changed in any way), answers as a fresh one."""
    content_type = OM_TYPE if openmetrics else None
    target = TargetParser()
    first = data.draw(expositions(openmetrics=openmetrics))
    target.parse(first, content_type)
    for _ in range(3):
        body = data.draw(st.one_of(expositions(openmetrics=openmetrics), _mutations(first)))
        try:
            expected = parse(body, content_type)
        except ParseError as exc:
            with pytest.raises(ParseError) as raised:
                target.parse(body, content_type)
            assert raised.value.line_no == exc.line_no
            continue
        assert_same_parse(target.parse(body, content_type), expected)


@st.composite
def _mutations(draw: st.DrawFn, text: str) -> str:
    """One character of a valid body replaced, inserted or deleted: values, labels, names alike."""
    if not text:
        return text
    at = draw(st.integers(0, len(text) - 1))
    char = draw(st.sampled_from(list('0123456789.e+-" {},=#\\\tazN_') + ["\n"]))
    how = draw(st.sampled_from(["replace", "insert", "delete"]))
    if how == "replace":
        return text[:at] + char + text[at + 1:]
    return text[:at] + char + text[at:] if how == "insert" else text[:at] + text[at + 1:]


# --- exact cases -----------------------------------------------------------------------------

def test_label_values_with_braces_escapes_and_trailing_comma() -> None:
    text = 'req_total{route="/users/{id}",q="say \\"hi\\"\\\\n\\n",x="\\t",} 3\n'
    (sample,) = parse(text).samples
    assert sample.labels == (("q", 'say "hi"\\n\n'), ("route", "/users/{id}"), ("x", "\\t"))


def test_special_values_and_text_timestamps_in_milliseconds() -> None:
    expo = parse("a NaN\nb +Inf 1700000000123\nc -Inf\nd 1e+09 -5\n")
    values = [s.value for s in expo.samples]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1e9]
    assert [s.timestamp for s in expo.samples] == [None, 1700000000.123, None, -0.005]


def test_openmetrics_timestamps_in_seconds_exemplars_and_created() -> None:
    text = ("# TYPE rpc counter\n"
            'rpc_total{code="200"} 17 1700000000.5 # {trace_id="abc"} 0.21 1700000000.1\n'
            'rpc_created{code="200"} 1699990000.25\n'
            "# EOF\n")
    expo = parse(text)
    assert expo.format == OPENMETRICS
    assert expo.samples[0].timestamp == 1700000000.5
    assert expo.exemplars[0].labels == (("trace_id", "abc"),)
    assert (expo.exemplars[0].value, expo.exemplars[0].timestamp) == (0.21, 1700000000.1)
    assert expo.created() == {("rpc", (("code", "200"),)): 1699990000.25}
    assert expo.type_of("rpc_total") == "counter" and expo.type_of("other") == "untyped"


def test_crlf_and_missing_final_newline_parse_alike() -> None:
    text = '# TYPE a gauge\na{x="1"} 1\na{x="2"} 2'
    expected = parse(text + "\n")
    for variant in (text, text.replace("\n", "\r\n"), text.replace("\n", "\r\n") + "\r\n"):
        assert_same_parse(parse(variant), expected)


@pytest.mark.parametrize(("text", "content_type", "line_no", "reason"), [
    ("a 1\nb{x=\"1\"}\n", None, 2, "malformed sample line"),
    ("a 1\nb{x=\"1\"} one\n", None, 2, "invalid value"),
    ("a 1\nb{x=\"1} 2\n", None, 2, "malformed sample line"),
    ('a{x="1",y="2"} 1\na{y="2",x="1"} 2\n', None, 2, "duplicate series (first at line 1)"),
    ('a{x="1",x="2"} 1\n', None, 1, "appears twice"),
    ("a 1 1.5\n", None, 1, "invalid timestamp"),
    ("# TYPE a gauge\n# TYPE a counter\na 1\n", None, 2, "second TYPE"),
    ("a 1\n# TYPE a gauge\n", None, 2, "after its samples"),
    ("# TYPE a histogram\na_bucket{x=\"1\"} 1\n", None, 2, "needs a numeric 'le'"),
    ("# TYPE a gauge\na 1\n", OM_TYPE, 3, "missing # EOF"),
    ("a 1\n# EOF\nb 2\n", OM_TYPE, 3, "content after # EOF"),
    ("a 1\n# EOF\n\n", OM_TYPE, 3, "content after # EOF"),
    ('a{x="1",} 1\n# EOF\n', None, 1, "trailing comma"),
    ("a 1\n\nb 2\n# EOF\n", None, 2, "blank line"),
    ("a  1\n# EOF\n", None, 1, "malformed sample line"),
    ("a 1\nb 2\na 3\n# EOF\n", None, 3, "appears twice"),
    ("# TYPE a counter\na_total 1 # {t=\"x\"} 1\n# EOF\n", None, 2, None),
    ("# TYPE a gauge\na 1 # {t=\"x\"} 1\n# EOF\n", None, 2, "exemplar"),
    ("# FOO a b\n# EOF\n", None, 1, "invalid comment line"),
])
def test_bad_input_names_the_line(text: str, content_type: str | None, line_no: int, reason: str | None) -> None:
    if reason is None:  # the control case: the same shape, valid
        parse(text, content_type)
        return
    with pytest.raises(ParseError) as raised:
        parse(text, content_type)
    assert raised.value.line_no == line_no
    assert reason in str(raised.value)


def test_text_format_tolerates_blanks_and_comments() -> None:
    expo = parse("\n  # just a comment\n\t a{ x = \"1\" , }\t 2 \n\n# HELP a  the help \n")
    assert expo.samples == [("a", (("x", "1"),), 2.0, None)]
    assert expo.helps == {"a": "the help"}


def test_format_detection() -> None:
    assert parse("a 1\n# EOF\n").format == OPENMETRICS
    assert parse("a 1\n# EOF\n", "text/plain; version=0.0.4").format == TEXT  # a mere comment there
    assert parse("a 1 1000\n").samples[0].timestamp == 1.0
    assert parse("a 1 1000\n# EOF\n").samples[0].timestamp == 1000.0


# --- the per-target parser ---------------------------------------------------------------------

def _histogram_bodies(n: int) -> list[str]:
    registry = CollectorRegistry()
    latency = Histogram("latency_seconds", "Latency", ["route"], registry=registry)
    bodies = []
    for i in range(n):
        for route in ("/a/{id}", "/b"):
            latency.labels(route).observe(0.01 * (i + 1))
        bodies.append(generate_latest(registry).decode())
    return bodies


def _spy_fast_path(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per parse that tried it, whether the value-only path answered (the C reader,
    ``_fast_c``, or the Python one, ``_fast``, which runs when C declines or is off)."""
    answered: list[bool] = []
    tried: list[bool] = []
    for name in ("_fast_c", "_fast"):
        def spy(self: TargetParser, *args: object, _original=getattr(TargetParser, name)) -> Exposition | None:
            result = _original(self, *args)
            tried.append(result is not None)
            return result

        monkeypatch.setattr(TargetParser, name, spy)
    parse_once = TargetParser.parse

    def parse_spied(self: TargetParser, *args: object) -> Exposition:
        tried.clear()
        try:
            return parse_once(self, *args)  # type: ignore[arg-type]
        finally:
            if tried:
                answered.append(any(tried))

    monkeypatch.setattr(TargetParser, "parse", parse_spied)
    return answered


def test_target_parser_takes_the_value_only_path_when_only_values_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = _histogram_bodies(3)
    target = TargetParser()
    target.parse(first)
    answered = _spy_fast_path(monkeypatch)
    for body in (second, third):
        assert_same_parse(target.parse(body), parse(body))
    assert answered == [True, True]


def test_value_only_path_reads_exemplars_and_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's OpenMetrics output carries exemplars on whichever bucket saw the last request."""
    from trimtab.demo.app import build_app

    async def scrapes() -> list[tuple[str, str]]:
        transport = httpx.ASGITransport(app=build_app("api-1", slowness=0.01, seed=5))
        out = []
        async with httpx.AsyncClient(transport=transport, base_url="http://api-1") as client:
            for n in range(4):
                for _ in range(n + 1):
                    await client.get(f"/products/{n}")
                    await client.get("/search?q=x")
                response = await client.get("/metrics", headers={"accept": OM_TYPE})
                out.append((response.text, response.headers["content-type"]))
        return out

    bodies = asyncio.run(scrapes())
    target = TargetParser()
    target.parse(*bodies[0])
    target.parse(*bodies[1])  # the first request of a kind adds series; after that only values change
    answered = _spy_fast_path(monkeypatch)
    for body, content_type in bodies[2:]:
        got, expected = target.parse(body, content_type), parse(body, content_type)
        assert_same_parse(got, expected)
        assert got.exemplars == expected.exemplars and expected.exemplars
    stamped = [("a", "b 1 1700000000000\n"), ("a", "b 2 1700000001000\n")]
    target = TargetParser()
    target.parse(stamped[0][1])
    assert target.parse(stamped[1][1]).samples == [("b", (), 2.0, 1700000001.0)]
    assert answered == [True, True, True]


@pytest.mark.parametrize("change", [
    ('route="/b"', 'route="/c"'),      # a label value
    ("latency_seconds_count", "latency_seconds_sum2"),  # a name
    ('le="0.005"', 'le="0.0050"'),    # the same bucket, spelled differently
    (' 0.0\n', ' 0.0 1700000000000\n'),  # a timestamp appears
    ("# HELP latency_seconds Latency", "# HELP latency_seconds Latency, in seconds"),
])
def test_target_parser_never_returns_stale_labels(change: tuple[str, str]) -> None:
    first, second = _histogram_bodies(2)
    assert change[0] in second
    changed = second.replace(change[0], change[1], 1)
    target = TargetParser()
    target.parse(first)
    assert_same_parse(target.parse(changed), parse(changed))


def test_target_parser_reports_the_bad_line_after_a_good_scrape() -> None:
    first, second = _histogram_bodies(2)
    target = TargetParser()
    target.parse(first)
    lines = second.split("\n")
    bad_at = next(i for i, line in enumerate(lines) if line.startswith("latency_seconds_count"))
    lines[bad_at] = lines[bad_at].rsplit(" ", 1)[0] + " 1_000"  # Python's float() would take it
    with pytest.raises(ParseError) as raised:
        target.parse("\n".join(lines))
    assert raised.value.line_no == bad_at + 1
    assert_same_parse(target.parse(second), parse(second))


def test_target_parser_does_not_carry_label_sets_across_formats() -> None:
    """Text checked under 0.0.4's rules must be checked again when the target switches to OpenMetrics."""
    om = "application/openmetrics-text; version=1.0.0"
    body = '# TYPE m gauge\nm{a="b",} 1\n# EOF\n'
    parser = TargetParser()
    assert parser.parse('m{a="b",} 1\n', "text/plain; version=0.0.4").samples[0].value == 1.0
    with pytest.raises(ParseError, match="trailing comma"):
        parser.parse(body, om)
