"""The top limited keys of each limit (issue 18): from the real decisions, bounded, forgetting,
and never an API key in clear (in process for the tally, a real uvicorn for the endpoint)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from trimtab.agent.ratelimit import ENFORCE, SHADOW, Limit
from trimtab.agent.ratelimit_topkeys import CAPACITY, TopKeys, shown_key

from tests.agent.ratelimit.test_limits_live import ITEMS, R, agent, counters, set_limits, total


def _scope(ip: str = "10.0.0.1", api_key: str | None = None) -> dict:
    headers = [(b"x-api-key", api_key.encode())] if api_key is not None else []
    return {"type": "http", "client": (ip, 1234), "headers": headers}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


PER_KEY = Limit("pk", "/search", "header:x-api-key", 1.0, 1, SHADOW)
PER_IP = Limit("ip", "/search", "ip", 1.0, 1, ENFORCE)


def test_the_most_refused_key_comes_first_and_an_api_key_is_an_opaque_id() -> None:
    top = TopKeys(clock=Clock())
    for _ in range(30):
        top.refused(PER_KEY, _scope(api_key="sk_live_greedy"))
    for i in range(5):
        top.refused(PER_KEY, _scope(api_key=f"polite-{i}"))
    top.refused(PER_IP, _scope("10.9.9.9"))
    got = top.top("pk")
    assert got[0]["shadow_limited"] == 30 and got[0]["limited"] == 0
    assert got[0]["key"] == shown_key("header:x-api-key", _scope(api_key="sk_live_greedy"),
                                      top.ids)
    assert got[0]["key"].startswith("#") and len(got[0]["key"]) == 9
    assert all("sk_live" not in e["key"] and "polite" not in e["key"] for e in got)
    assert top.top("ip") == [{"key": "10.9.9.9", "limited": 1, "shadow_limited": 0, "error": 0}]
    assert top.top("nothing") == []


def test_memory_is_bounded_and_a_heavy_hitter_survives_a_flood_of_one_off_keys() -> None:
    top = TopKeys(clock=Clock())
    for i in range(5000):
        top.refused(PER_IP, _scope(f"10.1.{i // 256}.{i % 256}"))  # every key once
        if i % 10 == 0:
            top.refused(PER_IP, _scope("10.66.66.66"))  # 1 refusal in 11
    assert len(top._current["ip"].counts) <= CAPACITY
    first = top.top("ip")[0]
    assert first["key"] == "10.66.66.66"
    # Space-saving: never undercounted, and overcounted by at most the inherited error.
    assert first["limited"] >= 500 and first["limited"] - first["error"] <= 500


def test_a_client_that_stopped_leaves_the_list_within_the_span() -> None:
    clock = Clock()
    top = TopKeys(span=600.0, clock=clock)
    top.refused(PER_IP, _scope("10.0.0.7"))
    clock.now += 299
    assert top.top("ip")[0]["key"] == "10.0.0.7" and top.seconds() == pytest.approx(299)
    clock.now += 2  # rotated: still in the previous tally
    assert top.top("ip")[0]["key"] == "10.0.0.7"
    clock.now += 300
    assert top.top("ip") == []
    clock.now += 5000  # a long silence leaves nothing either
    top.refused(PER_IP, _scope("10.0.0.8"))
    assert [e["key"] for e in top.top("ip")] == ["10.0.0.8"]


def test_the_agent_reports_the_greedy_key_from_its_decisions(tmp_path: Path) -> None:
    greedy, polite = "sk_live_0123456789abcdef", "sk_live_polite"
    with agent(tmp_path, "top") as base:
        set_limits(base, {"pk": {"route": ITEMS, "key": "header:x-api-key", "rate": 0.5,
                                 "burst": 2, "mode": "enforce"}})
        with httpx.Client(base_url=base, timeout=10) as c:
            codes = [c.get("/items/1", headers={"x-api-key": greedy}).status_code
                     for _ in range(20)]
            codes += [c.get("/items/2", headers={"x-api-key": polite}).status_code
                      for _ in range(3)]
            answer = c.get("/_trimtab/limits", headers=R)
        assert answer.status_code == 200
        limit = answer.json()["limits"]["pk"]
        first = limit["top_keys"][0]
        assert first["limited"] == codes[:20].count(429) >= 17  # burst 2 at 0.5/s
        assert first["key"].startswith("#") and limit["top_keys_seconds"] >= 0
        assert limit["top_keys"][1]["limited"] == codes[20:].count(429) >= 1
        assert total(counters(base), "trimtab_ratelimit_requests_total", limit="pk",
                     result="limited") == first["limited"] + limit["top_keys"][1]["limited"]
        for text in (answer.text, httpx.get(base + "/metrics", timeout=10).text,
                     httpx.get(base + "/_trimtab/journal", headers=R, timeout=10).text,
                     (tmp_path / "top.log").read_text(errors="replace")):
            assert greedy not in text and polite not in text
