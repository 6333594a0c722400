"""The balancer control API on the built-in balancer: tokens, If-Match, guard rails, journal.

The balancer runs in-process behind ``httpx.ASGITransport``; its upstreams are
real uvicorn backends (for the observed-share check).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from trimtab.agent.auth import TokenAuth
from trimtab.agent.balance.control import desired_from_journal
from trimtab.agent.balance.policies import Server
from trimtab.agent.balance.proxy import Balancer
from trimtab.agent.journal import Journal

from tests.agent.balance.test_haproxy import backends  # noqa: F401 - module-scoped fixture

WRITE = {"authorization": "Bearer w-secret-1"}
READ = {"authorization": "Bearer r-secret-1"}
API = "/_trimtab/balancer"
T = TypeVar("T")


@pytest.fixture
def balancer(backends: dict[str, str]) -> Balancer:  # noqa: F811
    auth = TokenAuth.from_spec("admin:write:w-secret-1,viewer:read:r-secret-1")
    return Balancer([Server(name, url) for name, url in backends.items()], auth=auth,
                    journal=Journal(None))


@pytest.fixture
def run() -> Iterator[Callable[[Awaitable[T]], T]]:
    """Runs coroutines on one event loop for the whole test (the client lives on it)."""
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete
    finally:
        loop.close()


@pytest.fixture
def client(balancer: Balancer, run: Any) -> Iterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=balancer)
    c = httpx.AsyncClient(transport=transport, base_url="http://lb")
    try:
        yield c
    finally:
        run(c.aclose())
        run(balancer.aclose())


async def patch(client: httpx.AsyncClient, body: Any, headers: dict[str, str] | None = None,
                path: str = API) -> httpx.Response:
    """PATCH (or POST for revert) with the current version unless headers say otherwise."""
    tag = (await client.get(API, headers=READ)).headers["etag"]
    hdrs = {**WRITE, "if-match": tag, **(headers or {})}
    method = "POST" if "/revert/" in path else "PATCH"
    return await client.request(method, path, headers=hdrs, json=body)


def weights(balancer: Balancer) -> dict[str, tuple[int, str]]:
    return {s.name: (s.weight, s.state) for s in balancer.servers}


UNCHANGED = {"s1": (1, "ready"), "s2": (1, "ready")}


def test_tokens_read_write_and_missing(balancer: Balancer, client: httpx.AsyncClient,
                                      run: Any) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        assert (await c.get(API)).json()["error"] == "missing_token"
        wrong = await c.get(API, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "nope" not in wrong.text
        ok = await c.get(API, headers=READ)
        assert ok.status_code == 200 and ok.headers["etag"] == ok.json()["version"]
        body = {"servers": {"s1": {"weight": 3}}, "reason": "x"}
        tag = {"if-match": ok.headers["etag"]}
        assert (await c.patch(API, json=body, headers=tag)).status_code == 401
        assert (await c.patch(API, json=body, headers={**tag, **READ})).status_code == 403
        assert (await c.patch(API, json=body, headers={**tag, "authorization": "Bearer x"})
                ).status_code == 401
        entries = (await c.get(f"{API}/journal", headers=READ)).json()["entries"]
        # Only the read-only caller's attempt is journaled; anonymous ones are not.
        assert [(e["who"], e["result"], e["detail"]) for e in entries] == [
            ("viewer", "refused", "insufficient_scope: read token")]
        assert (await c.get(f"{API}/nothing", headers=READ)).status_code == 404
        assert (await c.delete(API, headers=WRITE)).status_code == 405
    run(go(client))
    assert weights(balancer) == UNCHANGED


@pytest.mark.parametrize(("changes", "field"), [
    ({"s1": {"weight": 9000}}, "servers.s1.weight"),
    ({"s1": {"weight": -1}}, "servers.s1.weight"),
    ({"s1": {"weight": "abc"}}, "servers.s1.weight"),
    ({"s1": {"weight": 2.5}}, "servers.s1.weight"),
    ({"s1": {"weight": None}}, "servers.s1.weight"),
    ({"s1": {"state": "bogus"}}, "servers.s1.state"),
    ({"nope": {"weight": 2}}, "servers.nope"),
    ({"s1": {"colour": "red"}}, "servers.s1"),
    ({"s1": {"weight": 3}, "s2": {"weight": "abc"}}, "servers.s2.weight"),  # all or nothing
    ({}, "servers"),
    ("s1=3", "servers"),
])
def test_bad_input_is_refused_naming_the_field_and_journaled(
        balancer: Balancer, client: httpx.AsyncClient, run: Any, changes: Any,
        field: str) -> None:
    resp = run(patch(client, {"servers": changes, "reason": "bad"}))
    assert resp.status_code == 422 and resp.json()["field"] == field, resp.text
    assert weights(balancer) == UNCHANGED
    entries = run(client.get(f"{API}/journal", headers=READ)).json()["entries"]
    assert [(e["who"], e["result"]) for e in entries] == [("admin", "refused")]
    assert entries[0]["detail"].startswith(field)


def test_malformed_body_and_versions(balancer: Balancer, client: httpx.AsyncClient,
                                     run: Any) -> None:
    tag = run(client.get(API, headers=READ)).headers["etag"]
    bad_json = run(client.patch(API, content=b"{not json", headers={**WRITE, "if-match": tag}))
    assert bad_json.status_code == 400 and bad_json.json()["field"] == "body"
    body = {"servers": {"s1": {"weight": 3}}}
    missing = run(client.patch(API, json=body, headers=WRITE))
    assert missing.status_code == 428 and missing.json()["field"] == "If-Match"
    stale = run(client.patch(API, json=body, headers={**WRITE, "if-match": '"0000"'}))
    assert stale.status_code == 412
    assert run(patch(client, {**body, "force": "yes"})).json()["field"] == "force"
    assert run(client.get(API, params={"window": "abc"}, headers=READ)).status_code == 422
    assert weights(balancer) == UNCHANGED
    ok = run(client.patch(API, json=body, headers={**WRITE, "if-match": tag}))
    assert ok.status_code == 200 and ok.headers["etag"] != tag
    again = run(client.patch(API, json=body, headers={**WRITE, "if-match": tag}))
    assert again.status_code == 412  # the version moved with the change
    entries = run(client.get(f"{API}/journal", headers=READ)).json()["entries"]
    results = [e["result"] for e in entries]
    assert results == ["refused"] * 4 + ["accepted", "refused"]
    huge = run(client.patch(API, content=b" " * 70_000, headers={**WRITE, "if-match": "*"}))
    assert huge.status_code == 413 and huge.json()["error"] == "too_large"


def test_guard_rails_need_force_with_a_reason(balancer: Balancer, client: httpx.AsyncClient,
                                              run: Any) -> None:
    zero = {"servers": {"s1": {"weight": 0}, "s2": {"weight": 0}}, "reason": "x"}
    assert run(patch(client, zero)).status_code == 409
    assert run(patch(client, {"servers": {"s1": {"state": "drain"}}})).status_code == 200
    last = {"servers": {"s2": {"state": "maint"}}}
    refused = run(patch(client, last))
    assert refused.status_code == 409 and "last" in refused.json()["message"]
    assert refused.json()["error"] == "conflict"
    assert run(patch(client, {**last, "force": True})).json()["field"] == "reason"
    assert weights(balancer) == {"s1": (1, "drain"), "s2": (1, "ready")}
    forced = run(patch(client, {**last, "force": True, "reason": "maintenance window"}))
    assert forced.status_code == 200
    assert forced.json()["applied"][0]["detail"] == "forced past guard rail"
    assert weights(balancer) == {"s1": (1, "drain"), "s2": (1, "maint")}
    assert run(client.get("/anything")).status_code == 503


def test_an_unchanged_item_is_reported_not_journaled(
        balancer: Balancer, client: httpx.AsyncClient, run: Any) -> None:
    body = {"servers": {"s1": {"weight": 1, "state": "drain"}}, "reason": "drain s1"}
    reply = run(patch(client, body))
    assert reply.status_code == 200, reply.text
    assert [(e["what"], e["old"], e["new"]) for e in reply.json()["applied"]] == [
        ("servers.s1.state", "ready", "drain")]
    assert reply.json()["unchanged"] == [{"server": "s1", "field": "weight", "value": 1}]
    entries = run(client.get(f"{API}/journal", headers=WRITE)).json()["entries"]
    assert [e["what"] for e in entries] == ["servers.s1.state"]


def test_revert_is_a_new_change(balancer: Balancer, client: httpx.AsyncClient, run: Any) -> None:
    changed = run(patch(client, {"servers": {"s1": {"weight": 4}}, "reason": "more"}))
    entry = changed.json()["applied"][0]
    assert (entry["old"], entry["new"], weights(balancer)["s1"]) == (1, 4, (4, "ready"))
    revert = run(patch(client, {"reason": "undo"}, path=f"{API}/revert/{entry['id']}"))
    assert revert.status_code == 200, revert.text
    undo = revert.json()["applied"][0]
    assert (undo["old"], undo["new"], undo["reverts"]) == (4, 1, entry["id"])
    assert weights(balancer) == UNCHANGED
    assert run(patch(client, {}, path=f"{API}/revert/999")).status_code == 404
    assert run(patch(client, {}, path=f"{API}/revert/abc")).status_code == 404
    # The field moved since that entry (the revert itself set it back to 1): 409 unless forced.
    again = run(patch(client, {"reason": "again"}, path=f"{API}/revert/{entry['id']}"))
    assert again.status_code == 409 and again.json()["field"] == "servers.s1.weight"
    forced = run(patch(client, {"reason": "really", "force": True},
                       path=f"{API}/revert/{entry['id']}"))
    assert forced.status_code == 200 and weights(balancer) == UNCHANGED
    assert run(patch(client, {"servers": {"s1": {"weight": "abc"}}})).status_code == 422
    last = run(client.get(f"{API}/journal", headers=READ)).json()["entries"][-1]
    assert last["result"] == "refused"
    assert run(patch(client, {}, path=f"{API}/revert/{last['id']}")).status_code == 422


def test_journal_pages_with_since_and_limit(client: httpx.AsyncClient, run: Any) -> None:
    for w in (2, 3, 4):
        assert run(patch(client, {"servers": {"s1": {"weight": w}}})).status_code == 200
    page = run(client.get(f"{API}/journal", params={"limit": 2}, headers=READ)).json()
    assert [e["new"] for e in page["entries"]] == [2, 3]
    rest = run(client.get(f"{API}/journal", params={"since": page["next"]}, headers=READ)).json()
    assert [e["new"] for e in rest["entries"]] == [4] and rest["next"] == 3
    assert run(client.get(f"{API}/journal", params={"limit": "x"}, headers=READ)).status_code == 400


def test_expected_and_observed_share(balancer: Balancer, client: httpx.AsyncClient,
                                     run: Any) -> None:
    assert run(patch(client, {"servers": {"s1": {"weight": 3}}})).status_code == 200

    async def traffic() -> None:
        for i in range(400):
            assert (await client.get(f"/search?q={i}")).status_code == 200

    run(traffic())
    doc = run(client.get(API, headers=READ)).json()
    share = {s["name"]: (s["expected_share"], s["observed_share"]) for s in doc["servers"]}
    assert share == {"s1": (0.75, 0.75), "s2": (0.25, 0.25)}
    assert run(patch(client, {"servers": {"s2": {"state": "drain"}}})).status_code == 200
    doc = run(client.get(API, params={"window": "5"}, headers=READ)).json()
    assert [s["expected_share"] for s in doc["servers"]] == [1.0, 0.0]
    assert doc["window_seconds"] == 5.0


def test_dotted_server_names_survive_journal_and_revert(run: Any) -> None:
    auth = TokenAuth.from_spec("admin:write:w-secret-1,viewer:read:r-secret-1")
    journal = Journal(None)
    lb = Balancer([Server("web.1", "http://127.0.0.1:9"), Server("web.2", "http://127.0.0.1:9")],
                  auth=auth, journal=journal)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=lb),
                               base_url="http://lb")
    try:
        changed = run(patch(client, {"servers": {"web.1": {"weight": 5}}}))
        entry_id = changed.json()["applied"][0]["id"]
        assert desired_from_journal(journal, "balancer") == {"web.1": {"weight": 5}}
        revert = run(patch(client, {"reason": "undo"}, path=f"{API}/revert/{entry_id}"))
        assert revert.status_code == 200, revert.text
        assert [s.weight for s in lb.servers] == [1, 1]
    finally:
        run(client.aclose())
        run(lb.aclose())
