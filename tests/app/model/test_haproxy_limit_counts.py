"""An HAProxy limit's decisions reach the cockpit's model through the agent's /metrics (issue 18).

HAProxy counts allowed / limited / would-be-limited requests in a stick-table the adapter
reads (``show table``); its own exporter does not carry them. The HAProxy agent serves them
on ``/metrics`` (no token, like an instance's), so a scrape target on it charts the limit
like an instance's. Real HAProxy 2.6, real agent process, real scrape engine.
"""

from __future__ import annotations

import subprocess

import httpx
from prometheus_client.parser import text_string_to_metric_families
from trimtab.app.model.fleet import FleetModel, LimitRow
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

from tests.agent.balance.test_balancer_limits import upstreams  # noqa: F401  (the fixtures)
from tests.agent.balance.test_haproxy_limits import READ, Fleet, codes, fleet, patch  # noqa: F401
from tests.conftest import require_binary
from tests.support import poll


def decisions(text: str) -> dict[tuple[str, str, str], float]:
    return {(s.labels["route"], s.labels["limit"], s.labels["result"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "trimtab_ratelimit_requests_total"}


def test_the_agents_metrics_carry_the_counts_table_without_a_token(fleet: Fleet) -> None:  # noqa: F811
    agent = fleet.agent()
    empty = httpx.get(agent + "/metrics", timeout=10)
    assert empty.status_code == 200 and decisions(empty.text) == {}
    assert codes(fleet.url, 5) == [200, 200, 200, 429, 429]
    answer = httpx.get(agent + "/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert decisions(answer.text) == {("*", "per-ip", "allowed"): 3.0,
                                      ("*", "per-ip", "limited"): 2.0}
    check = subprocess.run([require_binary("promtool"), "check", "metrics"],
                           input=answer.content, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    # Shadow: would-be-limited, counted on the same series family.
    assert patch(agent, {"per-ip": {"mode": "shadow"}}).status_code == 200
    assert codes(fleet.url, 2) == [200, 200]
    shadow = decisions(httpx.get(agent + "/metrics", timeout=10).text)
    assert shadow[("*", "per-ip", "shadow_limited")] == 2.0
    om = httpx.get(agent + "/metrics", timeout=10,
                   headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    # The rest of the agent's API still wants a token.
    assert httpx.get(agent + "/_trimtab/balancer/limits", timeout=10).status_code == 401


def test_haproxy_going_away_fails_the_scrape_with_the_reason(fleet: Fleet) -> None:  # noqa: F811
    agent = fleet.agent()
    fleet.haproxy.kill()
    fleet.haproxy.wait(timeout=10)
    answer = httpx.get(agent + "/metrics", timeout=30)
    assert answer.status_code in (503, 504), answer.text
    assert "limits' counts unavailable" in answer.text


def test_a_misspelt_counts_table_is_an_error_not_zero_counts(fleet: Fleet) -> None:  # noqa: F811
    agent = fleet.agent("--limits-counts", "st_cuonts")  # the last one given wins
    assert codes(fleet.url, 4) == [200, 200, 200, 429]
    answer = httpx.get(agent + "/metrics", timeout=10)
    assert answer.status_code == 503 and "st_cuonts" in answer.text, answer.text
    doc = httpx.get(agent + "/_trimtab/balancer/limits", headers=READ, timeout=10)
    assert doc.status_code == 200  # the limits still read and change; the counts say why not
    assert "st_cuonts" in doc.json()["counts_error"]
    assert doc.json()["limits"]["per-ip"]["counts"] == {}


def test_a_target_on_the_agent_charts_the_haproxy_limit(fleet: Fleet) -> None:  # noqa: F811
    agent = fleet.agent()
    model = FleetModel()
    target = ScrapeTarget("haproxy-limits", agent + "/metrics", "balancer",
                          interval=0.5, timeout=0.4)
    engine = ScrapeEngine([target], model.ingest, on_cycle=model.tick).start()

    def row() -> LimitRow | None:
        # Keep refused traffic flowing so each scrape sees the counters grow.
        codes(fleet.url, 2)
        return model.read(lambda m: next((r for r in m.limits if r.limit == "per-ip"), None))

    try:
        seen = poll(row, lambda r: r is not None and r.limited > 0, timeout=30.0,
                    interval=0.2)
    finally:
        engine.stop()
    assert seen is not None and seen.limited > 0, (seen, model.health)
    assert (seen.route, seen.target, seen.shadow_limited) == ("*", "haproxy-limits", 0.0)
