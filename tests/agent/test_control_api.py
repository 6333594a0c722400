"""The control API in-process: every bad input is a clear error and changes nothing."""

from __future__ import annotations

import asyncio
import json
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


def run(app: TrimtabMiddleware, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await body(client)

    return asyncio.run(main())


@pytest.fixture()
def app(tmp_path: Path) -> TrimtabMiddleware:
    return build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=str(tmp_path), seed=1)


def _state(app: TrimtabMiddleware) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc, _ = app.config.document()
    return doc, [e.to_dict() for e in app.journal.list()]


async def _etag(client: httpx.AsyncClient) -> str:
    response = await client.get("/_trimtab/config", headers=R)
    assert response.status_code == 200
    return response.headers["etag"]


def test_get_config_returns_document_and_etag(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/_trimtab/config", headers=R)
        assert r.status_code == 200 and r.headers["etag"].startswith('"1-')
        doc = r.json()
        assert doc["routes"][PRODUCTS]["ttl"] == 10.0 and doc["instance"] == "api-1"
        again = await c.get("/_trimtab/config", headers={**R, "if-none-match": r.headers["etag"]})
        assert again.status_code == 304

    run(app, body)


def test_patch_applies_journals_and_changes_etag(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        etag = await _etag(c)
        r = await c.patch("/_trimtab/config", headers={**W, "if-match": etag},
                          json={"routes": {"/search": {"ttl": 30}}, "reason": "peak"})
        assert r.status_code == 200, r.text
        assert r.json()["changed"] == {"routes": {"/search": {"ttl": 30.0}}}
        assert r.headers["etag"] != etag and r.json()["config"]["version"] == 2
        assert app.config.settings().ttls["/search"] == 30.0
        entry = app.journal.get(r.json()["journal_id"])
        assert entry is not None and (entry.who, entry.result, entry.reason) == \
            ("alice", "accepted", "peak")
        assert entry.old == {"routes": {"/search": {"ttl": 0.0}}}

    run(app, body)


BAD_PATCHES = [
    ({"routes": {PRODUCTS: {"ttl": -5}}}, 422, f"routes['{PRODUCTS}'].ttl"),
    ({"routes": {PRODUCTS: {"ttl": 1e12}}}, 422, f"routes['{PRODUCTS}'].ttl"),
    ({"routes": {PRODUCTS: {"ttl": "abc"}}}, 422, f"routes['{PRODUCTS}'].ttl"),
    ({"routes": {PRODUCTS: {"ttl": True}}}, 422, f"routes['{PRODUCTS}'].ttl"),
    ({"routes": {"/nope": {"ttl": 5}}}, 422, "routes['/nope']"),
    ({"routes": {PRODUCTS: {"ttl": 5, "colour": 1}}}, 422, f"routes['{PRODUCTS}'].colour"),
    ({"routez": {}}, 422, "routez"),
    # Valid first item, invalid second: nothing of it may be applied.
    ({"routes": {"/search": {"ttl": 5}, PRODUCTS: {"ttl": -1}}}, 422,
     f"routes['{PRODUCTS}'].ttl"),
]


@pytest.mark.parametrize("patch, status, field", BAD_PATCHES)
def test_invalid_patch_is_422_naming_the_field_and_nothing_changes(
        app: TrimtabMiddleware, patch: dict[str, Any], status: int, field: str) -> None:
    before_doc, before_journal = _state(app)

    async def body(c: httpx.AsyncClient) -> httpx.Response:
        return await c.patch("/_trimtab/config", headers={**W, "if-match": await _etag(c)},
                             json=patch)

    r = run(app, body)
    assert r.status_code == status
    assert field in [e["field"] for e in r.json()["errors"]]
    after_doc, after_journal = _state(app)
    assert after_doc == before_doc
    assert len(after_journal) == len(before_journal) + 1
    assert after_journal[-1]["result"] == "refused" and after_journal[-1]["who"] == "alice"
    assert field in after_journal[-1]["detail"]


def _raw_patch(headers: dict[str, str], content: bytes) -> Callable[[httpx.AsyncClient], Any]:
    async def body(c: httpx.AsyncClient) -> httpx.Response:
        h = dict(headers)
        if h.get("if-match") == "CURRENT":
            h["if-match"] = await _etag(c)
        return await c.patch("/_trimtab/config", headers=h, content=content)

    return body


GOOD = json.dumps({"routes": {"/search": {"ttl": 5}}}).encode()
REFUSALS = [
    ("no token", {"if-match": "CURRENT"}, GOOD, 401, "missing_token", False),
    ("wrong token", {"authorization": "Bearer guess", "if-match": "CURRENT"}, GOOD, 401,
     "invalid_token", False),
    ("read token on write", {**R, "if-match": "CURRENT"}, GOOD, 403, "insufficient_scope", True),
    ("stale If-Match", {**W, "if-match": '"1-0000000000000000"'}, GOOD, 412, "stale_version",
     True),
    ("missing If-Match", W, GOOD, 428, "if_match_required", True),
    ("malformed JSON", {**W, "if-match": "CURRENT"}, b'{"routes": {', 400, "malformed_json", True),
    ("NaN is not JSON", {**W, "if-match": "CURRENT"}, b'{"routes": {"/search": {"ttl": NaN}}}',
     400, "malformed_json", True),
    ("oversized body", {**W, "if-match": "CURRENT"},
     b'{"reason": "' + b"x" * 70_000 + b'"}', 413, "body_too_large", True),
]


@pytest.mark.parametrize("name, headers, content, status, code, journaled", REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_refusals_are_clear_and_change_nothing(app: TrimtabMiddleware, name: str,
                                               headers: dict[str, str], content: bytes,
                                               status: int, code: str, journaled: bool) -> None:
    before_doc, before_journal = _state(app)
    r = run(app, _raw_patch(headers, content))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == code and r.json()["message"]
    assert "secret" not in r.text
    after_doc, after_journal = _state(app)
    assert after_doc == before_doc
    added = after_journal[len(before_journal):]
    if journaled:
        assert [e["result"] for e in added] == ["refused"]
        assert "x" * 100 not in json.dumps(added)  # an oversized body is not copied in
    else:
        # Unauthenticated attempts are counted, not journaled (anyone could fill the disk).
        assert added == [] and app.control.unauthenticated == 1


def test_every_control_path_needs_a_token_but_metrics_is_open(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        for path in ("/_trimtab/health", "/_trimtab/config", "/_trimtab/journal",
                     "/_trimtab/traces", "/_trimtab/cache/whatif?route=/search"):
            assert (await c.get(path)).status_code == 401, path
        assert (await c.post("/_trimtab/revert/1")).status_code == 401
        assert (await c.post("/_trimtab/cache/invalidate", json={"route": PRODUCTS})
                ).status_code == 401
        assert (await c.get("/metrics")).status_code == 200
        assert (await c.get("/_trimtab/health", headers=R)).json()["config_shared"] is True
        assert (await c.get("/_trimtab/nope", headers=R)).status_code == 404
        r = await c.delete("/_trimtab/config", headers=W)
        assert r.status_code == 405 and "PATCH" in r.headers["allow"]

    run(app, body)


def test_revert_is_a_new_journaled_change(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        r = await c.patch("/_trimtab/config", headers={**W, "if-match": await _etag(c)},
                          json={"routes": {PRODUCTS: {"ttl": 60}}})
        first = r.json()["journal_id"]
        r = await c.post(f"/_trimtab/revert/{first}", headers=R)
        assert r.status_code == 403
        r = await c.post(f"/_trimtab/revert/{first}", headers=W, json={"reason": "too long"})
        assert r.status_code == 200, r.text
        assert app.config.settings().ttls[PRODUCTS] == 10.0
        undo = app.journal.get(r.json()["journal_id"])
        assert undo is not None and undo.reverts == first and undo.reason == "too long"
        assert undo.new == {"routes": {PRODUCTS: {"ttl": 10.0}}}
        # Reverting again conflicts: the field no longer holds the entry's new value.
        again = await c.post(f"/_trimtab/revert/{first}", headers=W)
        assert again.status_code == 409 and app.config.settings().ttls[PRODUCTS] == 10.0
        for bad in ("999", "abc"):
            assert (await c.post(f"/_trimtab/revert/{bad}", headers=W)).status_code == 404

    run(app, body)


def test_journal_pagination_and_restart(app: TrimtabMiddleware, tmp_path: Path) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        for ttl in (1, 2, 3):
            r = await c.patch("/_trimtab/config", headers={**W, "if-match": await _etag(c)},
                              json={"routes": {"/search": {"ttl": ttl}}})
            assert r.status_code == 200
        page = (await c.get("/_trimtab/journal?limit=2", headers=R)).json()
        assert [e["id"] for e in page["entries"]] == [1, 2] and page["next"] == 2
        rest = (await c.get(f"/_trimtab/journal?since={page['next']}", headers=R)).json()
        assert [e["new"] for e in rest["entries"]] == [{"routes": {"/search": {"ttl": 3.0}}}]
        assert (await c.get("/_trimtab/journal?since=x", headers=R)).status_code == 400

    run(app, body)
    restarted = build_app("api-1", slowness=0.0, tokens=TOKENS, state_dir=str(tmp_path))
    assert [e.id for e in restarted.journal.list()] == [1, 2, 3]
    assert restarted.config.settings().ttls["/search"] == 3.0  # config survives too


def test_no_tokens_configured_locks_the_control_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIMTAB_TOKENS", raising=False)
    monkeypatch.delenv("TRIMTAB_STATE_DIR", raising=False)
    app = build_app("api-1", slowness=0.0)

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/_trimtab/config", headers=W)
        assert r.status_code == 401 and r.json()["error"] == "no_tokens_configured"
        assert (await c.get("/metrics")).status_code == 200

    run(app, body)


def test_tokens_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIMTAB_TOKENS", "carol:read:env-secret")
    monkeypatch.delenv("TRIMTAB_STATE_DIR", raising=False)
    app = build_app("api-1", slowness=0.0)

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/_trimtab/health", headers={"authorization": "Bearer env-secret"})
        assert r.status_code == 200 and r.json()["journal"] == "memory"

    run(app, body)


def test_oversized_chunked_body_without_length_is_413(app: TrimtabMiddleware) -> None:
    before_doc, _ = _state(app)

    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 8192  # whitespace: valid JSON padding, just too much of it

    async def body(c: httpx.AsyncClient) -> httpx.Response:
        return await c.patch("/_trimtab/config", headers={**W, "if-match": await _etag(c)},
                             content=chunks())

    r = run(app, body)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert _state(app)[0] == before_doc


def test_unauthenticated_attempts_are_counted_in_metrics(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> str:
        await c.get("/_trimtab/config", headers={"authorization": "Bearer nope"})
        return (await c.get("/metrics")).text

    assert "trimtab_control_unauthenticated_total 1.0" in run(app, body)


def test_purges_replay_in_other_workers_and_stay_out_of_the_etag(tmp_path: Path) -> None:
    from trimtab.agent.config import MAX_PURGES, ConfigStore

    path = tmp_path / "config.json"
    one = ConfigStore("api", {"/a": 5.0}, ["/a"], path)
    two = ConfigStore("api", {"/a": 5.0}, ["/a"], path)
    seen: list[str] = []
    two.on_purge = seen.append
    etag = one.document()[1]
    one.record_purge("/a\x1f")
    one.record_purge("/b")
    two.settings()
    assert seen == ["/a\x1f", "/b"]
    assert one.document()[1] == two.document()[1] == etag  # purges are not config changes
    assert "_purges" not in two.document()[0]
    seen.clear()
    for i in range(MAX_PURGES + 5):
        one.record_purge(f"/p{i}")
    two.settings()
    assert seen[0] == "" and len(seen) == MAX_PURGES + 1  # missed some: everything dropped


def test_unknown_endpoints_are_hidden_from_anonymous_callers(app: TrimtabMiddleware) -> None:
    async def body(c: httpx.AsyncClient) -> None:
        assert (await c.get("/_trimtab/secret-admin")).status_code == 401
        assert (await c.get("/_trimtab/secret-admin", headers=R)).status_code == 404

    run(app, body)


def test_a_broken_state_file_keeps_the_last_good_settings(app: TrimtabMiddleware,
                                                          tmp_path: Path) -> None:
    assert app.config.path is not None
    app.config.path.write_text("{ not json")

    async def body(c: httpx.AsyncClient) -> None:
        assert (await c.get("/products/1")).status_code == 200
        assert (await c.get("/products/1")).headers["x-trimtab-cache"] == "hit"

    run(app, body)
    assert app.config.settings().ttls["/products/{id}"] == 10.0
