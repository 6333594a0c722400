"""Prometheus rules from SLOs: ``promtool check rules`` accepts them (the real apt binary),
and each expression is the one the cockpit evaluates."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from trimtab.app.slo.burn import WORKBOOK_ALERTS
from trimtab.app.slo.definition import SLO, SLOError
from trimtab.app.slo.rules import dumps, error_ratio_expr, rule_groups

from tests.conftest import require_binary

SLOS = [
    SLO("search-latency", "/search", "latency", 0.99, threshold_s=0.1),  # between two bounds
    SLO("search-exact", "/search", "latency", 0.99, threshold_s=0.0555112),  # a bound
    SLO("search-first", "/search", "latency", 0.99, threshold_s=0.0005),  # below the first
    SLO("orders-ok", "/orders", "availability", 0.999, bad_statuses=("5xx", "429")),
    SLO("api-any", "/api/*", "latency", 0.95, threshold_s=0.25),
]


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    path = tmp_path / "slo-rules.yml"
    path.write_text(dumps(SLOS))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # 7 windows recorded + 4 alerts, per SLO
    assert f"SUCCESS: {len(SLOS) * 11} rules found" in done.stdout


def test_a_broken_rule_would_be_caught(tmp_path: Path) -> None:
    """The check above can fail: promtool refuses a rule file with a bad expression."""
    promtool = require_binary("promtool")
    path = tmp_path / "bad.yml"
    doc = rule_groups(SLOS[:1])
    doc["groups"][0]["rules"][0]["expr"] = "sum(rate(x[5m]"
    path.write_text(yaml.safe_dump(doc))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0


def test_expressions() -> None:
    exact = error_ratio_expr(SLOS[1], 300)
    assert exact == (
        '1 - clamp_max(sum(rate(trimtab_http_request_duration_seconds_bucket{route="/search",'
        'le="0.0555112"}[5m])) / sum(rate(trimtab_http_request_duration_seconds_bucket{'
        'route="/search",le="+Inf"}[5m])), 1)')
    between = error_ratio_expr(SLOS[0], 3600)
    assert 'le="0.0867362"' in between and 'le="0.10842"' in between and "[1h]" in between
    assert "0.61169" in between  # (0.1 - 0.0867362) / (0.10842 - 0.0867362)
    assert 'status=~"5..|429"' in error_ratio_expr(SLOS[3], 1800)
    assert 'route=~"/api/.*"' in error_ratio_expr(SLOS[4], 300)
    alerts = [r for r in rule_groups(SLOS[:1])["groups"][0]["rules"] if "alert" in r]
    assert [a["labels"]["severity"] for a in alerts] == ["page", "page", "ticket", "ticket"]
    assert alerts[0]["expr"].startswith(
        'trimtab_slo:error_ratio:rate1h{slo="search-latency"} > (14.4 * 0.010000000000000009)')
    assert len(alerts) == len(WORKBOOK_ALERTS)


def test_a_threshold_beyond_every_bucket_cannot_be_exported() -> None:
    slow = SLO("slow", "/search", "latency", 0.99, threshold_s=60.0)
    with pytest.raises(SLOError, match="beyond the largest bucket"):
        dumps([slow])


def test_an_slo_of_one_service_matches_its_job() -> None:
    shop = SLO("shop-fast", "/search", "latency", 0.99, threshold_s=0.0555112, service="shop")
    assert 'job="shop",route="/search"' in error_ratio_expr(shop, 300)
    assert 'job=' not in error_ratio_expr(SLOS[1], 300)
