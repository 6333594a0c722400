"""Top limited keys over a fleet: each agent's answer to ``GET /_trimtab/limits`` summed by
key across instances; an older agent (no ``top_keys``), a malformed answer and a dead
instance each said, never a crash. The answers come through httpx.MockTransport in the
shape the agent documents (its own tests prove the agent side)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from trimtab.agent.procs import free_port
from trimtab.app.control.client import ControlClient
from trimtab.app.control.top_keys import InstanceTopKeys, merge, parse_instance
from trimtab.app.control.types import BALANCER, Agent

LIMIT = "per-key"
SETTINGS = {"route": "/search", "key": "ip", "rate": 2.0, "burst": 10, "mode": "shadow"}


def answer(top: list[dict[str, Any]] | None, seconds: float = 300.0,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``GET /_trimtab/limits`` body with ``top`` as the limit's top keys (None: an agent
    older than top keys)."""
    limit: dict[str, Any] = {**SETTINGS, "counts": {}}
    if top is not None:
        limit |= {"top_keys": top, "top_keys_seconds": seconds}
    return {"limits": {LIMIT: limit, **(extra or {})}, "store": "memory", "store_errors": 0}


def served(bodies: dict[str, Any]) -> httpx.MockTransport:
    """Each host answers its body (a status int: that status, no body)."""
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/_trimtab/limits"
        assert request.headers["authorization"] == "Bearer t0ken"
        body = bodies[request.url.host]
        if isinstance(body, int):
            return httpx.Response(body, json={"error": "boom", "message": "it broke"})
        return httpx.Response(200, content=json.dumps(body).encode(),
                              headers={"etag": '"1"', "content-type": "application/json"})
    return httpx.MockTransport(handle)


def agents(*hosts: str) -> list[Agent]:
    return [Agent(h.replace("host-", "api-"), f"http://{h}:80") for h in hosts]


def top(key: str, limited: int = 0, shadow: int = 0) -> dict[str, Any]:
    return {"key": key, "limited": limited, "shadow_limited": shadow}


def test_keys_are_summed_across_instances_most_refused_first() -> None:
    bodies = {
        "host-1": answer([top("10.0.0.9", shadow=300), top("#a1b2c3d4", shadow=50)], 300.0),
        "host-2": answer([top("10.0.0.9", shadow=150), top("#99887766", shadow=60),
                          top("10.0.0.4", limited=5, shadow=5)], 150.0),
        # an instance without this limit is not part of it (no row, no error)
        "host-3": {"limits": {"other": {**SETTINGS, "top_keys": [], "top_keys_seconds": 1}}},
    }
    with ControlClient("t0ken", transport=served(bodies)) as client:
        got = client.top_keys(agents("host-1", "host-2", "host-3"), LIMIT)
    assert [k.key for k in got.keys] == ["10.0.0.9", "#99887766", "#a1b2c3d4", "10.0.0.4"]
    greedy = got.keys[0]
    assert (greedy.limited, greedy.shadow_limited, greedy.instances) == (0, 450,
                                                                         ("api-1", "api-2"))
    assert greedy.per_second == pytest.approx(300 / 300 + 150 / 150)  # each over its span
    assert greedy.share == pytest.approx(450 / 570)
    assert sum(k.share for k in got.keys) == pytest.approx(1.0)
    # An API key's id is salted per agent: the same client on two instances stays two rows.
    assert got.keys[1].instances == ("api-2",) and got.keys[2].instances == ("api-1",)
    assert (got.keys[3].limited, got.keys[3].shadow_limited) == (5, 5)
    assert got.seconds == 300.0 and got.reporting == ("api-1", "api-2")
    assert got.unsupported == () and got.errors == {}


def test_an_older_agent_is_said_not_an_error_and_never_a_crash() -> None:
    bodies = {"host-1": answer(None), "host-2": answer([top("10.0.0.9", limited=7)], 60.0)}
    with ControlClient("t0ken", transport=served(bodies)) as client:
        got = client.top_keys(agents("host-1", "host-2"), LIMIT)
        assert got.unsupported == ("api-1",) and got.reporting == ("api-2",)
        assert [(k.key, k.limited) for k in got.keys] == [("10.0.0.9", 7)]
        only_old = client.top_keys(agents("host-1"), LIMIT)
    assert only_old.keys == () and only_old.reporting == () and math.isnan(only_old.seconds)


@pytest.mark.parametrize("bad", [
    {"limits": {LIMIT: {**SETTINGS, "top_keys": "greedy", "top_keys_seconds": 60}}},
    {"limits": {LIMIT: {**SETTINGS, "top_keys": [{"limited": 3}], "top_keys_seconds": 60}}},
    {"limits": {LIMIT: {**SETTINGS, "top_keys": [top("k", limited=-1)],
                        "top_keys_seconds": 60}}},
    {"limits": {LIMIT: {**SETTINGS, "top_keys": [top("k", limited=True)],
                        "top_keys_seconds": 60}}},
    {"limits": {LIMIT: {**SETTINGS, "top_keys": [{"key": "k", "limited": 1.5}],
                        "top_keys_seconds": 60}}},
    {"limits": {LIMIT: {**SETTINGS, "top_keys": [], "top_keys_seconds": "NaN"}}},
    {"limits": {LIMIT: {**SETTINGS, "top_keys": []}}},
    {"limits": {LIMIT: "enforce"}},
    {"limits": None},
    ["not", "an", "object"],
])
def test_a_malformed_answer_is_that_instances_error_and_the_others_still_show(bad) -> None:
    bodies = {"host-1": bad, "host-2": answer([top("10.0.0.9", shadow=9)], 60.0)}
    with ControlClient("t0ken", transport=served(bodies)) as client:
        got = client.top_keys(agents("host-1", "host-2"), LIMIT)
    assert set(got.errors) == {"api-1"} and got.errors["api-1"]
    assert [(k.key, k.shadow_limited) for k in got.keys] == [("10.0.0.9", 9)]


def test_a_dead_or_failing_instance_is_named_with_why() -> None:
    dead = Agent("api-9", f"http://127.0.0.1:{free_port()}")  # nothing listens: refused
    bodies = {"host-1": 500, "host-2": answer([top("10.0.0.9", limited=2)], 30.0)}
    with ControlClient("t0ken", transport=None) as real, \
            ControlClient("t0ken", transport=served(bodies)) as mocked:
        refused = real.top_keys([dead], LIMIT)
        got = mocked.top_keys([*agents("host-1", "host-2"),
                               Agent("lb", "http://host-2:80", BALANCER)], LIMIT)
    assert "unreachable" in refused.errors["api-9"] and refused.keys == ()
    assert got.errors == {"api-1": "it broke"}  # the agent's own message
    assert [k.key for k in got.keys] == ["10.0.0.9"]  # the balancer is not asked


def test_nothing_limited_is_an_empty_list_not_missing() -> None:
    got = merge(LIMIT, {"api-1": InstanceTopKeys("api-1", 300.0, ()),
                        "api-2": InstanceTopKeys("api-2", 300.0, (("10.0.0.1", 0, 0),))})
    assert got.keys == () and got.reporting == ("api-1", "api-2") and got.seconds == 300.0


def test_at_most_twenty_keys_are_read_from_one_agent() -> None:
    many = answer([top(f"10.0.0.{n}", shadow=100 - n) for n in range(40)], 60.0)
    parsed = parse_instance("api-1", many, LIMIT)
    assert parsed is not None and len(parsed.keys) == 20
