"""Limits through the control API in-process: bad input is 422, journaled, and changes nothing;
good changes are journaled, ETag-guarded and revertible like TTLs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.agent.middleware import TrimtabMiddleware
from trimtab.demo.app import build_app

TOKENS = "alice:write:w-secret,bob:read:r-secret"
W = {"authorization": "Bearer w-secret"}
R = {"authorization": "Bearer r-secret"}
PRODUCTS = "/products/{id}"
GOOD = {"route": PRODUCTS, "key": "header:x-api-key", "rate": 5, "burst": 10, "mode": "shadow"}


def run(app: TrimtabMiddleware, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app, client=("10.1.1.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)

    return asyncio.run(main())


@pytest.fixture()
def app(tmp_path: Path) -> TrimtabMiddleware:
    return build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=str(tmp_path), seed=1)


async def patch(c: httpx.AsyncClient, body: Any, etag: str | None = None) -> httpx.Response:
    if etag is None:
        etag = (await c.get("/_trimtab/config", headers=R)).headers["etag"]
    return await c.patch("/_trimtab/config", json=body, headers={**W, "if-match": etag})


BAD = [
    ({"l": {**GOOD, "rate": 0}}, "limits['l'].rate"),
    ({"l": {**GOOD, "rate": -3}}, "limits['l'].rate"),
    ({"l": {**GOOD, "rate": "NaN"}}, "limits['l'].rate"),
    ({"l": {**GOOD, "rate": 10**400}}, "limits['l'].rate"),
    ({"l": {**GOOD, "rate": True}}, "limits['l'].rate"),
    ({"l": {**GOOD, "burst": 10**9}}, "limits['l'].burst"),
    ({"l": {**GOOD, "burst": 0}}, "limits['l'].burst"),
    ({"l": {**GOOD, "burst": 2.5}}, "limits['l'].burst"),
    ({"l": {**GOOD, "route": "/nope"}}, "limits['l'].route"),
    ({"l": {**GOOD, "key": "cookie:sid"}}, "limits['l'].key"),
    ({"l": {**GOOD, "key": "header:bad name"}}, "limits['l'].key"),
    ({"l": {**GOOD, "mode": "on"}}, "limits['l'].mode"),
    ({"l": {**GOOD, "colour": "red"}}, "limits['l'].colour"),
    ({"l": {"rate": 5, "burst": 10}}, "limits['l']"),  # a new limit needs route and key
    ({"l": "fast"}, "limits['l']"),
    ({"bad name!": GOOD}, "limits['bad name!']"),
    ({"x" * 65: GOOD}, "limits"),
    ({f"l{i}": GOOD for i in range(65)}, "limits"),
]


@pytest.mark.parametrize(("limits", "field"), BAD)
def test_bad_limits_are_422_journaled_and_change_nothing(
        app: TrimtabMiddleware, limits: dict[str, Any], field: str) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        before = await c.get("/_trimtab/config", headers=R)
        r = await patch(c, {"limits": limits, "reason": "try"}, before.headers["etag"])
        assert r.status_code == 422, r.text
        fields = [e["field"] for e in r.json()["errors"]]
        assert any(f.startswith(field) for f in fields), fields
        after = await c.get("/_trimtab/config", headers=R)
        assert after.headers["etag"] == before.headers["etag"]
        assert after.json() == before.json() and after.json()["limits"] == {}
        entry = app.journal.list()[-1]
        assert entry.result == "refused" and entry.what == "config" and entry.reason == "try"

    run(app, body)


def test_inf_rate_from_json_overflow_is_refused(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        etag = (await c.get("/_trimtab/config", headers=R)).headers["etag"]
        raw = '{"limits": {"l": {"route": "*", "key": "ip", "rate": 1e999, "burst": 1}}}'
        r = await c.patch("/_trimtab/config", content=raw,
                          headers={**W, "if-match": etag, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limits['l'].rate"

    run(app, body)


def test_read_token_and_stale_etag_are_refused(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        etag = (await c.get("/_trimtab/config", headers=R)).headers["etag"]
        r = await c.patch("/_trimtab/config", json={"limits": {"l": GOOD}},
                          headers={**R, "if-match": etag})
        assert r.status_code == 403
        assert (await patch(c, {"limits": {"l": GOOD}}, etag)).status_code == 200
        r = await patch(c, {"limits": {"l": {"rate": 1}}}, etag)
        assert r.status_code == 412
        assert (await c.get("/_trimtab/config", headers=R)).json()["limits"]["l"]["rate"] == 5.0

    run(app, body)


def test_create_change_delete_and_revert_are_journaled(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        r = await patch(c, {"limits": {"per-key": GOOD}, "reason": "greedy client"})
        assert r.status_code == 200, r.text
        created = r.json()["journal_id"]
        assert r.json()["config"]["limits"]["per-key"] == {**GOOD, "rate": 5.0}
        r = await patch(c, {"limits": {"per-key": {"mode": "enforce", "rate": 2.5}}})
        changed = r.json()["journal_id"]
        assert r.json()["changed"] == {"limits": {"per-key": {"mode": "enforce", "rate": 2.5}}}
        entry = app.journal.get(changed)
        assert entry is not None
        assert entry.old == {"limits": {"per-key": {"mode": "shadow", "rate": 5.0}}}
        r = await c.post(f"/_trimtab/revert/{changed}", headers=W)
        assert r.status_code == 200, r.text
        assert r.json()["config"]["limits"]["per-key"]["mode"] == "shadow"
        await patch(c, {"limits": {"per-key": {"burst": 20}}})
        r = await c.post(f"/_trimtab/revert/{created}", headers=W)
        assert r.status_code == 409  # burst changed since it was created
        r = await c.post(f"/_trimtab/revert/{created}?force=1", headers=W)
        assert r.status_code == 200 and r.json()["config"]["limits"] == {}
        r = await patch(c, {"limits": {"per-key": GOOD}})
        r = await patch(c, {"limits": {"per-key": None}, "reason": "done"})
        assert r.status_code == 200 and r.json()["config"]["limits"] == {}
        gone = r.json()["journal_id"]
        r = await c.post(f"/_trimtab/revert/{gone}", headers=W)
        assert r.json()["config"]["limits"]["per-key"] == {**GOOD, "rate": 5.0}

    run(app, body)


def test_limits_survive_a_restart_and_reach_other_workers(tmp_path: Path) -> None:
    one = build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=str(tmp_path), seed=1)
    two = build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=str(tmp_path), seed=1)

    async def body(c: httpx.AsyncClient) -> None:
        assert (await patch(c, {"limits": {"g": {**GOOD, "route": "*", "key": "ip"}}})
                ).status_code == 200

    run(one, body)
    assert [lim.name for lim in two.config.settings().limits] == ["g"]


def test_a_hand_edited_file_with_a_bad_limit_never_fails_requests(tmp_path: Path) -> None:
    import json

    app = build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=str(tmp_path), seed=1)

    async def body(c: httpx.AsyncClient) -> None:
        r = await patch(c, {"limits": {"l": {**GOOD, "mode": "enforce", "burst": 1}}})
        assert r.status_code == 200
        path = tmp_path / "config-api-1.json"
        for bad in (0, -1, "fast", None):
            doc = json.loads(path.read_text())
            doc["limits"]["l"]["rate"] = bad
            doc["version"] += 1
            path.write_text(json.dumps(doc))
            statuses = [(await c.get(f"/products/{i}", headers={"x-api-key": "k"})).status_code
                        for i in range(3)]
            # the last good limits stay in force: the first request passes, then 429
            assert 500 not in statuses and statuses.count(429) >= 2, (bad, statuses)

    run(app, body)
