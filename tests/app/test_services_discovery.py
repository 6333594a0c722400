"""A discovered target's service comes from its labels (``job`` here, as Prometheus' file_sd
users write it): scraped for real, its routes are keyed by that service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from trimtab.app.model.fleet import FleetModel
from trimtab.app.model.keys import route_key
from trimtab.app.targets import file as targets_file
from trimtab.app.targets.discovery import DiscoveryApplier
from trimtab.collectors.scrape import ScrapeEngine

from ..support import poll, uvicorn_server


def test_file_sd_job_label_names_the_service(tmp_path: Path) -> None:
    with uvicorn_server("tests.app.services_shop_app:app", tmp_path / "shop.log") as base:
        httpx.get(base + "/search?q=a", timeout=5.0)
        address = base.removeprefix("http://")
        (tmp_path / "fleet.json").write_text(json.dumps(
            [{"targets": [address], "labels": {"job": "shop"}}]), encoding="utf-8")
        path = tmp_path / "targets.toml"
        path.write_text('[[discovery]]\nkind = "file_sd"\nfiles = ["fleet.json"]\n',
                        encoding="utf-8")
        [config] = targets_file.load_discovery(path)
        found = asyncio.run(config.source.discover())
        assert [(d.name, d.service) for d in found] == [(address, "shop")]
        model = FleetModel()
        engine = ScrapeEngine([], model.ingest, on_cycle=model.tick).start()
        try:
            applier = DiscoveryApplier(engine, model, [config])
            applier.apply(config.source.name, found)
            assert applier.status[config.source.name].targets[address].service == "shop"

            def routes() -> set[str]:
                httpx.get(base + "/search?q=a", timeout=5.0)
                return set(model.read(lambda m: list(m.routes)))

            seen = poll(routes, lambda keys: route_key("shop", "/search") in keys, timeout=30.0)
            assert route_key("shop", "/search") in seen and "/search" not in seen, seen
            assert model.services == {address: "shop"}
        finally:
            engine.stop()
