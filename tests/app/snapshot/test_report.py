"""HTML report: self-contained, routes and journal in it, p95 as Prometheus computes it."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest
from trimtab.app.snapshot.export import export_snapshot, open_snapshot
from trimtab.app.snapshot.report import write_report
from trimtab.app.snapshot.stats import HIST, route_latencies
from trimtab.app.store.store import Store
from trimtab.app.ui.report_chart import png_chart

from tests.app.snapshot.test_snapshot import FIXTURE, T0, _planted, fill

EXTERNAL = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture
def snapshot_path(tmp_path: Path) -> Path:
    with Store(tmp_path / "h.db", chunk_cycles=64) as store:
        fill(store, 300, reset_at=150)
        planted = _planted()
        planted["journal"][0] = planted["journal"][0].__class__(
            **{**planted["journal"][0].__dict__, "who": "<script>alert(1)</script>"})
        return export_snapshot(store, tmp_path / "incident.trimtab", T0, T0 + 299,
                               **planted).path


def test_report_is_self_contained_with_routes_journal_and_charts(snapshot_path: Path,
                                                                 tmp_path: Path) -> None:
    out = write_report(snapshot_path, tmp_path / "report.html", png_chart)
    page = out.read_text(encoding="utf-8")
    assert not EXTERNAL.search(page)
    assert 'src="data:image/png;base64,' in page and "<link" not in page
    for route in ("/users/{id}", "/orders", "/health"):
        assert route in page
    slow = page[page.index("Slowest routes"):page.index("Charts")]
    assert slow.index("/orders") < slow.index("/users/{id}")  # the slow route leads
    assert "routes./users/{id}.ttl: 5 → 30" in page and "raise TTL" in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert "deploy with key=REDACTED" in page and "<td>all routes p95</td>" in page  # before/after
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_report_of_a_previous_version_snapshot(tmp_path: Path) -> None:
    page = write_report(FIXTURE, tmp_path / "r.html", png_chart).read_text(encoding="utf-8")
    assert "slow orders" in page and "v1 fixture" in page and not EXTERNAL.search(page)


def test_route_p95_matches_prometheus_check_values(tmp_path: Path) -> None:
    """Buckets 0.2/0.3/0.45; all at 0.22 s on one route, all at 0.32 s on another, two
    instances, one of which restarts: p95 = 0.295 and 0.4425 (Prometheus docs)."""
    les = ("0.2", "0.3", "0.45", "+Inf")
    with Store(tmp_path / "h.db") as store:
        counts = {("a", "/fast"): 0.0, ("b", "/fast"): 0.0, ("a", "/slow"): 0.0}
        for i in range(20):
            rows = []
            for (target, route), n in counts.items():
                n = 0.0 if (i == 10 and target == "b") else n + 10  # b restarts at cycle 10
                counts[(target, route)] = n
                at = 0.22 if route == "/fast" else 0.32
                rows += [(target, HIST, (("le", le), ("route", route)),
                          n if float(le.replace("+Inf", "inf")) >= at else 0.0) for le in les]
            store.write_cycle(T0 + i, rows)
        snap_path = export_snapshot(store, tmp_path / "s.trimtab", T0, T0 + 19).path
    with open_snapshot(snap_path) as snap:
        found = {r.route: r for r in route_latencies(snap, T0, T0 + 19)}
    assert math.isclose(found["/fast"].quantile.value, 0.295)
    assert math.isclose(found["/slow"].quantile.value, 0.4425)
    assert (found["/slow"].quantile.lower, found["/slow"].quantile.upper) == (0.3, 0.45)
    assert found["/fast"].requests == 19 * 10 + 18 * 10  # a: 19 steps; b: 18 (the reset adds its new value, 0)
