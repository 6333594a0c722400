"""Bearer-token auth: scopes, refusals, and secrets kept out of everything printable."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from trimtab.agent.auth import AuthError, Token, TokenAuth

SPEC = "alice:write:s3cret-w,bob:read:s3cret-r"


def _hdr(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), (b"authorization", value.encode())]


def test_write_token_has_read_and_write() -> None:
    auth = TokenAuth.from_spec(SPEC)
    who = auth.authenticate(_hdr("Bearer s3cret-w"), need="write")
    assert who.name == "alice" and who.can("read") and who.can("write")


def test_read_token_reads_but_cannot_write() -> None:
    auth = TokenAuth.from_spec(SPEC)
    assert auth.authenticate(_hdr("Bearer s3cret-r"), need="read").name == "bob"
    with pytest.raises(AuthError) as err:
        auth.authenticate(_hdr("Bearer s3cret-r"), need="write")
    assert err.value.status == 403 and err.value.code == "insufficient_scope"


@pytest.mark.parametrize("headers, code", [
    ([], "missing_token"),
    (_hdr("Bearer nope"), "invalid_token"),
    (_hdr("Basic czNjcmV0LXc="), "missing_token"),
    (_hdr("Bearer "), "missing_token"),
    (_hdr("Bearer s3cret-w-and-more"), "invalid_token"),
])
def test_missing_or_wrong_token_is_401(headers: list[tuple[bytes, bytes]], code: str) -> None:
    with pytest.raises(AuthError) as err:
        TokenAuth.from_spec(SPEC).authenticate(headers)
    assert err.value.status == 401 and err.value.code == code
    assert json.loads(err.value.body())["error"] == code


def test_no_tokens_configured_locks_everything() -> None:
    with pytest.raises(AuthError) as err:
        TokenAuth.from_env(environ={}).authenticate(_hdr("Bearer anything"))
    assert err.value.status == 401 and "TRIMTAB_TOKENS" in err.value.message


def test_mapping_headers_and_case_insensitive_scheme() -> None:
    auth = TokenAuth.from_env(environ={"TRIMTAB_TOKENS": SPEC})
    assert auth.authenticate({b"Authorization": b"bearer s3cret-r"}).name == "bob"


@pytest.mark.parametrize("spec", [
    "alice:admin:topsecret", "alice:topsecret", ":write:topsecret", "alice:write:",
    "a:write:topsecret,b:read:topsecret",
])
def test_bad_spec_is_refused_without_echoing_the_secret(spec: str) -> None:
    with pytest.raises(ValueError) as err:
        TokenAuth.from_spec(spec)
    assert "topsecret" not in str(err.value)


def test_secrets_absent_from_repr_and_errors() -> None:
    auth = TokenAuth.from_spec(SPEC)
    assert "s3cret" not in repr(auth) and "s3cret" not in repr(Token("x", "read", "s3cret"))
    for headers in (_hdr("Bearer s3cret-r"), _hdr("Bearer s3cret-wrong")):
        with pytest.raises(AuthError) as err:
            auth.authenticate(headers, need="write")
        assert b"s3cret" not in err.value.body() and "s3cret" not in str(err.value)


def test_error_renders_as_asgi_response() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(AuthError(401, "missing_token", "x").send(send))
    assert sent[0]["status"] == 401
    assert (b"www-authenticate", b'Bearer realm="trimtab"') in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"error": "missing_token", "message": "x", "status": 401}
