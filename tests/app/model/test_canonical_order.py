"""A scrape's sums do not depend on the order its samples, or the fleet's targets, come in.

A live scrape and its replay from the store hold the same samples in other orders. Summed
in arrival order, the last bits differed, and a p50 whose rank fell exactly on a bucket
boundary moved by a whole bucket (tests/app/replay/test_replay.py failed now and then on a
loaded host). Values around 2**53 make the order show: (2**53 + 1) + 1 is 2**53, while
(1 + 1) + 2**53 is 2**53 + 2.
"""

from __future__ import annotations

import numpy as np
from trimtab.app.model.extract import extract
from trimtab.app.model.extractor import Extractor
from trimtab.app.model.fleet import FleetModel
from trimtab.collectors.exposition import parse
from trimtab.collectors.scrape import ScrapeResult, ScrapeTarget

BIG = float(2**53)


def _lines(counts: dict[str, float], reverse: bool) -> str:
    """One route's 0.1 s bucket and +Inf bucket per status; ``reverse`` prints the series
    (and each series' labels) the other way round."""
    out = []
    for status, count in counts.items():
        labels = [("method", "GET"), ("route", "/a"), ("status", status)]
        for le in ("0.1", "+Inf"):
            pairs = [*labels, ("le", le)]
            if reverse:
                pairs = pairs[::-1]
            text = ",".join(f'{k}="{v}"' for k, v in pairs)
            out.append(f"trimtab_http_request_duration_seconds_bucket{{{text}}} {count}")
    if reverse:
        out = out[::-1]
    return "# TYPE trimtab_http_request_duration_seconds histogram\n" + "\n".join(out) + "\n"


COUNTS = {"200": float(BIG), "404": 1.0, "500": 1.0}


def test_the_same_scrape_printed_in_another_order_gives_the_same_bits() -> None:
    assert (BIG + 1.0) + 1.0 != (1.0 + 1.0) + BIG  # the order shows in these values
    a, b = parse(_lines(COUNTS, False)), parse(_lines(COUNTS, True))
    for one, other in ((extract(a), extract(b)), (Extractor().extract(a), Extractor().extract(b))):
        assert one.buckets == other.buckets
        assert one.values.tobytes() == other.values.tobytes()
        assert one.layout.groups == other.layout.groups


def test_a_fleet_ingested_in_another_order_gives_the_same_bits() -> None:
    def fed(order: list[int]) -> FleetModel:
        model = FleetModel(rate_window=10.0)
        for t, scale in ((100.0, 0.0), (105.0, 1.0), (110.0, 2.0)):
            for i in order:  # instance 0: 2**53 requests per status a tick; the others 2
                # (0.4/s each: added one by one to ~5.4e15/s they vanish, added together
                # first they do not)
                grown = ({s: BIG * scale for s in COUNTS} if i == 0 else {"200": 2.0 * scale})
                target = ScrapeTarget(f"api-{i}", f"http://127.0.0.1:{9000 + i}/metrics")
                model.ingest(ScrapeResult(target, t, True, 0.01,
                                          parse(_lines(grown, reverse=i % 2 == 1)), ""))
            model.tick(t)
        return model

    one, other = fed([0, 1, 2]), fed([2, 1, 0])
    assert one._route_buckets == other._route_buckets
    for metric in ("p50", "p95", "rate"):
        for key, (t, v) in one.snapshot(metric).items():
            assert np.array_equal(other.snapshot(metric)[key][1], v, equal_nan=True), metric


def test_the_order_of_names_and_label_sets_of_any_sequence_types() -> None:
    from trimtab.app.model.extract import canonical_order

    names = ("b", "a", "a")
    labels = [(("x", "2"),), (("y", "1"), ("x", "1")), (("x", "0"),)]  # a list: no dict key
    assert canonical_order(names, labels) == [2, 1, 0]
    assert canonical_order(list(names), tuple(labels)) == [2, 1, 0]
    assert canonical_order(names, tuple(labels)) == [2, 1, 0]  # cached
    assert canonical_order(names, tuple(labels)) == [2, 1, 0]
