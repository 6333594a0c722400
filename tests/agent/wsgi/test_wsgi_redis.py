"""The WSGI agent on a shared Redis store (a real redis-server): shared entries, invalidation,
and an outage that costs nothing but the cache."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from trimtab.agent.flask import instrument
from trimtab.agent.redis_store import RedisStore

from tests.agent.test_redis_store import redis_url  # noqa: F401 - the real redis-server fixture
from tests.agent.wsgi.apps import ITEMS_FLASK, flask_app
from tests.support import poll

W = {"authorization": "Bearer w-secret-redis"}
# The store's loop thread, its connections and stores in flight are all closed: a leak fails.
pytestmark = [pytest.mark.filterwarnings("error::ResourceWarning"),
              pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture
def instance() -> Iterator[Callable[[str, str], httpx.Client]]:
    """Builds Flask instances on a Redis store; stops their store threads afterwards."""
    agents = []

    def build(url: str, name: str) -> httpx.Client:
        app = flask_app()
        agents.append(instrument(app, instance=name, tokens="alice:write:w-secret-redis",
                                 ttls={ITEMS_FLASK: 60.0}, store=RedisStore(url, timeout=0.2)))
        return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=f"http://{name}")

    yield build
    for agent in agents:
        agent.close()
    assert poll(lambda: [t for t in threading.enumerate() if t.name == "trimtab-wsgi-store"],
                lambda alive: not alive, timeout=15) == []


def test_two_wsgi_instances_share_one_redis(
        redis_url: str, instance: Callable[[str, str], httpx.Client]) -> None:  # noqa: F811
    a, b = instance(redis_url, "a"), instance(redis_url, "b")
    assert a.get("/items/1").headers["x-trimtab-cache"] == "miss"
    # Stored in the background once the response was sent: b sees it shortly.
    assert poll(lambda: b.get("/items/1").headers["x-trimtab-cache"],
                lambda result: result == "hit", timeout=15) == "hit"
    dropped = a.post("/_trimtab/cache/invalidate", headers=W, json={"route": ITEMS_FLASK})
    assert dropped.status_code == 200 and dropped.json()["dropped"] >= 1, dropped.text
    assert b.get("/items/1").headers["x-trimtab-cache"] == "miss"


def test_a_dead_redis_sends_requests_to_the_origin(
        redis_url: str, instance: Callable[[str, str], httpx.Client]) -> None:  # noqa: F811
    a = instance(redis_url, "a")
    assert a.get("/items/2").status_code == 200
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis.from_url(redis_url).shutdown(nosave=True)
    answers = [a.get("/items/2") for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert all(r.json() == {"id": 2} for r in answers)
    text = a.get("/metrics").text
    assert 'trimtab_cache_errors_total{op="get",store="redis"}' in text
    assert a.post("/_trimtab/cache/invalidate", headers=W,
                  json={"route": ITEMS_FLASK}).status_code == 503
