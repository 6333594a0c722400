"""Several services in one cockpit (issue 21 item 1): two real services that share route
names stay apart on every page, in a snapshot and its replay, and in a TTL change.

The fleet: ``shop-1`` (FastAPI + prometheus-fastapi-instrumentator, service ``shop``),
``api-1`` (the demo app with its trimtab agent, service ``api``) and ``cat-1`` (a second
demo app, service ``catalog``). All three serve ``/products/{id}`` and ``/search``.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from trimtab.agent.procs import stop_all, wait_http
from trimtab.app.cli.main import make_tuning
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.keys import route_key
from trimtab.app.replay.change_markers import card
from trimtab.app.replay.session import snapshot_session
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.store.store import Store
from trimtab.collectors.scrape import ScrapeEngine, ScrapeTarget

from ..support import poll, start_uvicorn
from .ui.test_tuning_gui import DialogDriver, ttl_answer

pytestmark = pytest.mark.slow

PRODUCTS = "/products/{id}"
SHOP, API, CATALOG = (route_key(s, PRODUCTS) for s in ("shop", "api", "catalog"))
SEARCHES = {route_key(s, "/search") for s in ("shop", "api", "catalog")}


class Fleet:
    """Three real services, a scrape engine into a model with a history store, and traffic."""

    def __init__(self, tmp: Path) -> None:
        self.read_token, self.write_token = (secrets.token_urlsafe(16) for _ in range(2))
        env = {**os.environ, "TRIMTAB_TOKENS": f"op:write:{self.write_token},"
                                               f"cockpit:read:{self.read_token}"}
        self.procs = []
        shop, shop_port = start_uvicorn("tests.app.services_shop_app:app", tmp / "shop.log")
        self.procs.append(shop)
        ports = {"shop-1": shop_port}
        for name in ("api-1", "cat-1"):
            proc, ports[name] = start_uvicorn("trimtab.demo.app:app_from_env", tmp / f"{name}.log",
                                              factory=True,
                                              env={**env, "TRIMTAB_INSTANCE": name})
            self.procs.append(proc)
        self.bases = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
        for name, base in self.bases.items():
            wait_http(base + "/metrics", self.procs[list(ports).index(name)])
        self.targets = [
            ScrapeTarget("shop-1", self.bases["shop-1"] + "/metrics", service="shop"),
            ScrapeTarget("api-1", self.bases["api-1"] + "/metrics", token=self.read_token,
                         service="api"),
            ScrapeTarget("cat-1", self.bases["cat-1"] + "/metrics", token=self.read_token,
                         service="catalog"),
        ]
        self.store = Store(tmp / "history.db")
        self.model = FleetModel(store=self.store)
        self.engine = ScrapeEngine(self.targets, self.model.ingest, on_cycle=self.model.tick,
                                   on_traces=self.model.ingest_traces,
                                   on_config=self.model.ingest_config).start()
        self._stop = threading.Event()
        self._traffic = threading.Thread(target=self._send, daemon=True)
        self._traffic.start()

    def _send(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            i = 0
            while not self._stop.is_set():
                for base in self.bases.values():
                    for path in (f"/products/{i % 5}", "/search?q=x"):
                        try:
                            client.get(base + path)
                        except httpx.HTTPError:
                            pass  # a server stopping at the end of the module
                i += 1
                self._stop.wait(0.02)

    def ttls(self) -> dict[str, float]:
        auth = {"authorization": f"Bearer {self.read_token}"}
        return {n: httpx.get(self.bases[n] + "/_trimtab/config", headers=auth,
                             timeout=5.0).json()["routes"][PRODUCTS]["ttl"]
                for n in ("api-1", "cat-1")}

    def stop(self) -> None:
        self._stop.set()
        self._traffic.join(timeout=10)
        self.engine.stop()
        stop_all(self.procs)
        self.store.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("services"))
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture()
def window(qtbot, fleet: Fleet):
    from trimtab.app.ui.window import MainWindow

    seen = poll(lambda: set(fleet.model.read(lambda m: list(m.routes))),
                lambda keys: {SHOP, API, CATALOG} | SEARCHES <= keys, timeout=60.0)
    assert {SHOP, API, CATALOG} | SEARCHES <= seen, (seen, fleet.model.health)
    window = MainWindow(fleet.model, tuning=make_tuning(fleet.write_token, fleet.targets))
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    yield window
    window.close()


def test_two_services_sharing_route_names_stay_apart_everywhere(qtbot, fleet: Fleet, window,
                                                                tmp_path: Path) -> None:
    model = fleet.model
    # The model: one row per service, each with its own latency (shop sleeps 300 ms).
    routes = model.read(lambda m: dict(m.routes))
    assert "/products/{id}" not in routes  # never merged by name
    assert routes[SHOP].quantiles[0.5].value > 0.1 > routes[API].quantiles[0.5].value
    assert f'{{job="shop",route="{PRODUCTS}"}}[' in model.promql("p95", SHOP)
    # Routes page
    window.tabs.setCurrentWidget(window.routes)

    def routes_listed() -> None:
        window._force_refresh()
        assert {SHOP, API, CATALOG} | SEARCHES <= set(window.routes.table.column_texts(0))

    qtbot.waitUntil(routes_listed, timeout=15_000)
    # Cache page: the agents' cached route per service, each with its own TTL
    window.tabs.setCurrentWidget(window.cache)

    def cache_listed() -> None:
        window._force_refresh()
        ttl = dict(zip(window.cache.table.column_texts(0), window.cache.table.column_texts(1),
                       strict=True))
        assert ttl.get(API) == ttl.get(CATALOG) == "10 s"

    qtbot.waitUntil(cache_listed, timeout=15_000)
    assert PRODUCTS not in window.cache.table.column_texts(0)
    # Overview: legend and headline name the service's route
    window.tabs.setCurrentWidget(window.overview)

    def overview_shown() -> None:
        window._force_refresh()
        assert {SHOP, API} <= set(window.overview.latency.curves)
        facts = window.overview.headline_facts()
        assert facts.route is not None and facts.route.route == SHOP  # the slow one

    qtbot.waitUntil(overview_shown, timeout=15_000)
    assert f"Slowest route: {SHOP}" in window.overview.headline.text()
    # A snapshot keeps each target's service; reopened, the replay keys the routes the same.
    # Enough stored cycles that the replay has rates at its end (two scrapes in its window):
    # the window starts at the store's first cycle. It ends at a tick whose routes are all
    # six (on a loaded host a demo app can miss scrapes long enough to go stale for a tick)
    # and the replay at that tick must list exactly the live model's routes.
    first = poll(fleet.store.first_time, lambda t: t is not None and time.time() - t > 8.0,
                 timeout=30.0)
    assert first is not None and time.time() - first > 8.0
    all_six = {SHOP, API, CATALOG} | SEARCHES

    def last_tick() -> tuple[float, set[str]]:  # the rate ring gets a point every tick
        return model.read(lambda m: (float(m.series[("rate", SHOP)].arrays()[0][-1]),
                                     set(m.routes)))

    end, live = poll(last_tick, lambda tick: all_six <= tick[1], timeout=30.0)
    assert all_six <= live and PRODUCTS not in live, (live, model.health)
    stored = poll(fleet.store.last_cycle, lambda c: c is not None and c[1] >= end)
    assert stored is not None and stored[1] >= end  # the tick's cycle is on disk
    info = export_snapshot(fleet.store, tmp_path / "services.trimtab", first, end,
                           targets=fleet.targets, health=dict(model.health),
                           traces=list(model.traces))
    session = snapshot_session(info.path)
    try:
        assert {t.name: t.service for t in session.source.target_info()} == {
            "shop-1": "shop", "api-1": "api", "cat-1": "catalog"}
        session.replayer.seek(session.replayer.end)
        assert set(session.replayer.model.routes) == live
        traced = {t.get("route") for t in session.replayer.model.traces}
        assert traced and traced <= {API, CATALOG} | SEARCHES  # the agents' traces, keyed
    finally:
        session.close()


def test_a_ttl_change_on_one_services_route_reaches_only_its_instances(qtbot, fleet: Fleet,
                                                                       window) -> None:
    assert fleet.ttls() == {"api-1": 10.0, "cat-1": 10.0}
    window.tabs.setCurrentWidget(window.cache)
    qtbot.waitUntil(lambda: window.cache.can_write, timeout=15_000)
    driver = DialogDriver()
    try:
        driver.expect(ttl_answer(30, "catalog only"))
        driver.expect(driver.click("OK"))
        window.cache.ttl_requested.emit(CATALOG)
        driver.wait_done(qtbot)
        assert "applied" in driver.texts[-1] and "api-1" not in driver.texts[-1]
        assert fleet.ttls() == {"api-1": 10.0, "cat-1": 30.0}
        # the model reads each service's own agents for its key
        qtbot.waitUntil(lambda: fleet.model.ttls(CATALOG) == {"cat-1": 30.0}, timeout=15_000)
        assert fleet.model.ttls(API) == {"api-1": 10.0}
        assert fleet.model.ttls(PRODUCTS) == {}  # no agent of the unnamed service
        # The change's card reads the service's own series (the journal names the plain route).
        qtbot.waitUntil(lambda: any(r.reason == "catalog only"
                                    for r in window.journal_rows.values()), timeout=15_000)
        row = next(r for r in window.journal_rows.values() if r.reason == "catalog only")
        content = card(fleet.model, row, journal=window.journal_rows.values())
        assert f"{CATALOG} p95" in [name for name, *_ in content.rows]
    finally:
        driver.stop()
        auth = {"authorization": f"Bearer {fleet.write_token}"}
        base = fleet.bases["cat-1"]
        etag = httpx.get(f"{base}/_trimtab/config", headers=auth).headers["etag"]
        httpx.patch(f"{base}/_trimtab/config", headers={**auth, "if-match": etag},
                    json={"routes": {PRODUCTS: {"ttl": 10}}, "reason": "test cleanup"})
