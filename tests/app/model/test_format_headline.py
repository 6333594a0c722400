"""The headline's words and numbers without a window: mean latency from buckets, empty states."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.headline import Headline, _medians_without_each, headline, mean_latency
from trimtab.collectors.promql import Quantile

INF = math.inf


@pytest.mark.parametrize(("buckets", "mean"), [
    ([(0.1, 10.0), (0.2, 20.0), (INF, 20.0)], 0.1),  # 10 at 0.05, 10 at 0.15
    ([(0.1, 0.0), (0.2, 0.0), (INF, 4.0)], 0.2),  # all overflow: the lower bound (a floor)
    ([(0.005, 2.0), (INF, 2.0)], 0.0025),
    ([(0.1, 0.0), (INF, 0.0)], math.nan),  # no requests
    ([], math.nan),
])
def test_mean_latency_from_cumulative_bucket_rates(buckets, mean) -> None:
    got = mean_latency(buckets)
    assert (math.isnan(got) and math.isnan(mean)) or got == pytest.approx(mean)


def test_an_empty_model_says_it_waits() -> None:
    facts = headline(FleetModel())
    assert facts.route is None and facts.backend is None and facts.backends == 0
    text = facts.text()
    assert "no latency data yet" in text and "no per-instance latency yet" in text
    assert "Errors: – of 0.0/s" in text and "429s: not reported" in text


def test_one_instance_has_nothing_to_compare() -> None:
    facts = Headline(None, None, 1, 10.0, 0.0)
    assert "1 instance reporting latency, nothing to compare" in facts.text()


def test_the_route_sentence_uses_the_one_format_rule() -> None:
    from trimtab.app.model.headline import RouteFact

    fact = RouteFact("/search", Quantile(0.000807, 0.0, 0.001), 24.94, 0.635)
    assert Headline(fact, None, 0, 30.0, 0.001).sentences()[0] == (
        "Slowest route: /search — p95 807 µs, 24.9/s, 63.5 % of the time spent in handlers.")


def test_each_instances_peer_median_is_statistics_median_of_the_others() -> None:
    """The standout backend's peers from one sorted copy: the very floats of
    statistics.median over the others, with ties, even and odd counts, 2 to 300 instances."""
    rng = random.Random(2)
    for _ in range(400):
        n = rng.randint(2, 300)
        values = [rng.choice([0.1, 0.25, rng.uniform(0.001, 3.0), rng.lognormvariate(-3, 1)])
                  for _ in range(n)]
        want = [statistics.median(values[:i] + values[i + 1:]) for i in range(n)]
        assert _medians_without_each(values) == want
