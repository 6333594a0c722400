"""The parser against prometheus_client on the real corpus ``benchmarks/parse.py`` measures.

``benchmarks.corpus`` scrapes the apt Prometheus server, HAProxy's exporter, a
prometheus_client process (escapes, exemplars, NaN/Inf) and a demo instance, in 0.0.4 and
OpenMetrics where offered, several times each. Every scrape of every body is compared sample
by sample with prometheus_client's parser, cold (a fresh parser) and steady (one parser per
target fed the scrapes in turn, so the value-only path runs); 0 mismatches.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from trimtab.collectors.exposition import OPENMETRICS, TEXT, TargetParser

from benchmarks.corpus import Body, scrape_corpus
from tests.collectors.exposition.test_exposition import (
    assert_same_as_reference,
    normalise_ours,
    normalise_reference,
)
from tests.conftest import require_binary

# four real programs, several scrapes each; each body parsed with the parser's C helpers and without
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("reader")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Body]:
    require_binary("prometheus")
    require_binary("haproxy")
    return scrape_corpus(Path(tmp_path_factory.mktemp("corpus")), scrapes=4)


def test_corpus_holds_every_program_and_format(corpus: list[Body]) -> None:
    names = {body.name for body in corpus}
    assert {"prometheus text", "haproxy text", "client_python text", "client_python openmetrics",
            "demo text", "demo openmetrics"} <= names
    client_om = next(b for b in corpus if b.name == "client_python openmetrics")
    assert " # {trace_id=" in client_om.scrapes[-1]  # exemplars really are in it
    assert '\\"' in client_om.scrapes[-1] and "\\n" in client_om.scrapes[-1]  # escapes too
    haproxy = next(b for b in corpus if b.name == "haproxy text")
    assert 'proxy="search"' in haproxy.scrapes[0] and 'server="api-4"' in haproxy.scrapes[0]
    assert all(len(set(b.scrapes)) > 1 for b in corpus)  # values move between scrapes


def test_every_real_body_parses_as_prometheus_client_does_cold_and_steady(corpus: list[Body]) -> None:
    compared = 0
    for body in corpus:
        steady = TargetParser()
        for text in body.scrapes:
            cold = assert_same_as_reference(text, body.content_type)
            assert cold.format == (OPENMETRICS if body.openmetrics else TEXT)
            warm = steady.parse(text, body.content_type)
            assert normalise_ours(warm) == normalise_reference(text, body.openmetrics, warm.types), body.name
            assert (warm.types, warm.helps, warm.units) == (cold.types, cold.helps, cold.units)
            assert warm.exemplars == cold.exemplars
            compared += len(cold.samples)
    assert compared > 5000
