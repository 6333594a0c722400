"""OpenSLO v1 files: bad files first (refused whole, the document and field named), then
what trimtab writes reads back equal, and a file written by hand in the spec's own shape."""

from __future__ import annotations

import pytest
import yaml
from trimtab.app.slo.definition import SLO, SLOError
from trimtab.app.slo.openslo import dumps, loads

SLOS = [
    SLO("search-latency", "/search", "latency", 0.99, threshold_s=0.3,
        service="shop", description="Search feels instant"),
    SLO("orders-ok", "/orders", "availability", 0.999, window_s=30 * 86400.0,
        bad_statuses=("5xx", "429")),
    SLO("api-fast", "/api/*", "latency", 0.95, threshold_s=0.0596046),
    SLO("quoted", '/items/{id}', "latency", 0.9, threshold_s=2.5),
]

GOOD = dumps(SLOS[:1])


def test_what_trimtab_writes_reads_back_equal() -> None:
    text = dumps(SLOS)
    assert loads(text) == SLOS
    docs = list(yaml.safe_load_all(text))
    assert [d["apiVersion"] for d in docs] == ["openslo/v1"] * 4
    latency = docs[0]["spec"]
    assert latency["timeWindow"] == [{"duration": "28d", "isRolling": True}]
    assert latency["objectives"][0]["target"] == 0.99
    ratio = latency["indicator"]["spec"]["ratioMetric"]
    assert ratio["good"]["metricSource"]["spec"]["query"] == (
        'trimtab_http_request_duration_seconds_bucket{job="shop",route="/search",le="0.3"}')
    assert docs[1]["spec"]["indicator"]["spec"]["ratioMetric"]["bad"]["metricSource"][
        "spec"]["query"] == 'trimtab_http_requests_total{route="/orders",status=~"5..|429"}'
    assert docs[2]["spec"]["indicator"]["spec"]["ratioMetric"]["total"]["metricSource"][
        "spec"]["query"].startswith('trimtab_http_request_duration_seconds_bucket{route=~"/api/.*"')


def test_a_file_without_trimtab_annotations_is_read_from_its_queries() -> None:
    docs = list(yaml.safe_load_all(dumps(SLOS[:2])))
    for doc in docs:
        del doc["metadata"]["annotations"]
    text = yaml.safe_dump_all(docs) + "---\napiVersion: openslo/v1\nkind: Service\n" \
        "metadata: {name: shop}\nspec: {description: the shop}\n"
    assert loads(text) == SLOS[:2]


def _mutate(path: str, value: object) -> str:
    doc = yaml.safe_load(GOOD)
    node = doc
    *steps, last = path.split(" ")
    for step in steps:
        node = node[int(step)] if step.isdigit() else node[step]
    if value is KeyError:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return GOOD + "---\n" + yaml.safe_dump(doc).replace("search-latency", "second")


@pytest.mark.parametrize(("text", "message"), [
    ("a: [b", "not YAML"),
    ("[" * 10000 + "]" * 10000, "nested too deeply"),
    (_mutate("spec timeWindow 0", "28d"), "timeWindow entry"),
    ("- 1\n- 2\n", "mapping"),
    ("apiVersion: openslo/v1alpha\nkind: SLO\n", "only openslo/v1"),
    (_mutate("spec objectives 0 target", 1.5), "document 2: .*below 1"),
    (_mutate("spec objectives 0 target", "high"), "document 2: .*share"),
    (_mutate("spec objectives", []), "exactly one objective"),
    (_mutate("spec timeWindow 0 duration", "a month"), "duration"),
    (_mutate("spec timeWindow 0 isRolling", False), "calendar"),
    (_mutate("spec timeWindow", "28d"), "exactly one window"),
    (_mutate("spec budgetingMethod", "Timeslices"), "Occurrences"),
    (_mutate("metadata annotations trimtab.dev/kind", "speed"), "latency or availability"),
    (_mutate("metadata annotations trimtab.dev/threshold-seconds", "fast"), "seconds"),
    (_mutate("metadata annotations trimtab.dev/threshold-seconds", "-1"), "threshold"),
    (_mutate("metadata name", "Bad Name"), "lowercase"),
    (_mutate("metadata name", KeyError), "metadata.name is missing"),
    (GOOD + "---\n" + GOOD, "second SLO named"),
    ("x" * (2 << 20), "KiB"),
])
def test_a_bad_file_is_refused_whole_with_the_place_named(text: str, message: str) -> None:
    with pytest.raises(SLOError, match=message):
        loads(text)


def test_a_query_of_another_shape_is_refused_not_guessed() -> None:
    doc = yaml.safe_load(GOOD)
    del doc["metadata"]["annotations"]
    doc["spec"]["indicator"]["spec"]["ratioMetric"]["good"]["metricSource"]["spec"][
        "query"] = "sum(rate(http_server_duration_count[5m]))"
    with pytest.raises(SLOError, match="names no route"):
        loads(yaml.safe_dump(doc))
