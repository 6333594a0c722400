"""The control API's bad-input table, run against the WSGI middleware.

The same cases as the ASGI instance (tests/agent/test_bad_input.py): every row gets its
4xx (never 500), the document and its ETag are unchanged, a refused write by an
authenticated caller is journaled and an anonymous one is not, and no secret leaks. The
WSGI side must not be a softer target than the ASGI one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from trimtab.agent.journal import Journal
from trimtab.agent.wsgi import TrimtabWSGI

from tests.agent.test_bad_input import (
    AUTH,
    INSTANCE,
    PRODUCTS,
    SECRETS,
    TOKENS,
    Case,
    check_answer,
    check_journal,
)


def plain_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def wsgi(tmp_path: Path) -> TrimtabWSGI:
    # The routes the ASGI table names, declared as patterns (a plain WSGI app has no table).
    return TrimtabWSGI(plain_app, instance="api-1", ttls={PRODUCTS: 10.0},
                       patterns=(PRODUCTS, "/search"), tokens=TOKENS, state_dir=str(tmp_path))


def send(client: httpx.Client, case: Case) -> httpx.Response:
    headers = {**AUTH[case.auth], **case.headers}
    if case.if_match == "CURRENT":
        current = client.get("/_trimtab/config", headers=AUTH["read"])
        assert current.status_code == 200, current.text
        headers["if-match"] = current.headers["etag"]
    elif case.if_match is not None:
        headers["if-match"] = case.if_match
    return client.request(case.method, case.path, content=case.body, headers=headers)


@pytest.mark.parametrize("case", INSTANCE, ids=[c.name for c in INSTANCE])
def test_wsgi_control_api(wsgi: TrimtabWSGI, case: Case, caplog: pytest.LogCaptureFixture
                          ) -> None:
    caplog.set_level(logging.DEBUG)
    before = wsgi.config.document()
    journal_before = len(wsgi.journal.list())
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://api") as client:
        resp = send(client, case)
    check_answer(case, resp)
    assert wsgi.config.document() == before, case.name
    assert wsgi.journal.path is not None
    reread = [e.to_dict() for e in Journal(wsgi.journal.path).list()]
    assert reread == [e.to_dict() for e in wsgi.journal.list()]
    check_journal(case, reread[journal_before:])
    for secret in SECRETS:
        assert secret not in caplog.text
