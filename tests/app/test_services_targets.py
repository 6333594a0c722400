"""A target's service: read from the targets file and discovery labels, bad names refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from trimtab.app.model.keys import route_key, service_of, split_route_key
from trimtab.app.targets import file as targets_file
from trimtab.collectors.discovery.groups import DiscoveryError, discovered

GOOD = """\
# two services
[[target]]
name = "shop-1"
url = "http://127.0.0.1:8001/metrics"
service = "shop"

[[target]]
name = "api-1"
url = "http://127.0.0.1:8002/metrics"
"""


def test_service_read_from_the_targets_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(GOOD, encoding="utf-8")
    shop, api = targets_file.load(path)
    assert (shop.service, api.service) == ("shop", "")
    # written back only when set, and read again the same
    targets_file.save(tmp_path / "again.toml", [shop, api])
    assert [t.service for t in targets_file.load(tmp_path / "again.toml")] == ["shop", ""]


@pytest.mark.parametrize("value, why", [
    ('"   "', "blank"),
    ('"' + "s" * 65 + '"', "at most 64"),
    ('"shop\\u0007"', "control characters"),
    ('"shop\\u0085"', "control characters"),
    ('"a/b"', "'/'"),
    ('"a · b"', "'·'"),
    ('" shop"', "leading"),
    ("3", "must be a string"),
])
def test_bad_service_refused_with_its_line(tmp_path: Path, value: str, why: str) -> None:
    path = tmp_path / "targets.toml"
    text = GOOD + f'\n[[target]]\nname = "bad"\nurl = "http://127.0.0.1:8003/metrics"\n' \
                  f"service = {value}\n"
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index(f"service = {value}") + 1
    with pytest.raises(targets_file.TargetsError) as err:
        targets_file.load(path)
    assert f"line {line}" in str(err.value) and why in str(err.value)
    assert "'bad'" in str(err.value) or "#3" in str(err.value)
    assert path.read_text(encoding="utf-8") == text  # nothing changed


def test_service_from_discovery_labels() -> None:
    base = {"__address__": "10.0.0.5:8000"}
    assert discovered(base).service == ""
    assert discovered({**base, "job": "shop"}).service == "shop"
    assert discovered({**base, "__meta_kubernetes_service_name": "cart"}).service == "cart"
    # an explicit service label wins over the job, the job over a __meta_ one
    assert discovered({**base, "job": "j", "service": "s",
                       "__meta_consul_service": "m"}).service == "s"
    assert discovered({**base, "job": "j", "__meta_consul_service": "m"}).service == "j"
    with pytest.raises(DiscoveryError, match="10.0.0.5:8000.*service"):
        discovered({**base, "service": "bad\nname"})


def test_route_keys_round_trip() -> None:
    assert route_key("", "/items/{id}") == "/items/{id}"
    assert route_key("shop", "/items/{id}") == "shop · /items/{id}"
    assert split_route_key("shop · /items/{id}") == ("shop", "/items/{id}")
    assert split_route_key("/items/{id}") == ("", "/items/{id}")
    assert split_route_key("/a · b") == ("", "/a · b")  # a plain route holding the separator
    assert service_of("shop · /metrics") == "shop"


def test_adding_a_target_with_a_service(tmp_path: Path) -> None:
    """The manager (the Fleet page's Add target…) saves the service; a bad one changes
    nothing: not the file, not the engine's targets."""
    from trimtab.app.model.fleet import FleetModel
    from trimtab.app.targets.manager import TargetManager
    from trimtab.collectors.scrape import ScrapeEngine

    path = tmp_path / "targets.toml"
    path.write_text(GOOD, encoding="utf-8")
    model = FleetModel()
    engine = ScrapeEngine([], model.ingest).start()
    try:
        manager = TargetManager(path, engine, model)
        with pytest.raises(targets_file.TargetsError, match="control characters"):
            manager.add("cart-1", "http://127.0.0.1:8009/metrics", service="cart\x1b[2J")
        assert path.read_text(encoding="utf-8") == GOOD and "cart-1" not in manager.names
        added = manager.add("cart-1", "http://127.0.0.1:8009/metrics", service="cart")
        assert added.service == "cart"
        assert [t.service for t in targets_file.load(path)] == ["shop", "", "cart"]
        assert 'service = "cart"' in path.read_text(encoding="utf-8")
    finally:
        engine.stop()
