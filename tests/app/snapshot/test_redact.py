"""Redaction rules: URLs, free text, header-like keys, labels, JSON values; and the canary
test: every case that used to leak, grepped for in a real exported file and its HTML report."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from trimtab.app.control.types import Agent, JournalRow
from trimtab.app.snapshot.export import export_snapshot
from trimtab.app.snapshot.open import open_snapshot
from trimtab.app.snapshot.redact import MASK, RedactionRules, Redactor
from trimtab.app.snapshot.report import write_report
from trimtab.app.store.store import Store
from trimtab.collectors.scrape import ScrapeTarget

T0 = 1_700_000_000.0

R = Redactor(RedactionRules(label_names=("^tenant_key$",), value_patterns=(r"sk_live_\w+",),
                            secrets=("s3cr3t-token",)))


@pytest.mark.parametrize("url,want", [
    ("http://user:pass@host/x", "http://host/x"),
    ("https://u@h.example:8443/p?q=1", "https://h.example:8443/p?q=1"),
    ("http://h/m?token=abc&view=all&API_KEY=z", f"http://h/m?token={MASK}&view=all&API_KEY={MASK}"),
    ("http://[::1]:9000/metrics?sig=x#frag", f"http://[::1]:9000/metrics?sig={MASK}"),
    ("http://h/a?x=s3cr3t-token", f"http://h/a?x={MASK}"),
])
def test_url(url: str, want: str) -> None:
    assert R.url(url) == want


def test_unparseable_url_is_still_scrubbed() -> None:
    assert R.url("http://[bad s3cr3t-token") == f"http://[bad {MASK}"


def test_text() -> None:
    text = ("GET http://ops:pw@10.0.0.1:9001/m?password=hunter2 failed; "
            "Authorization: Bearer abc.def\nCookie: a=1; b=2\n"
            "retry with token=xyz and sk_live_123, cache key: /users")
    out = R.text(text)
    for secret in ("ops", "pw@", "hunter2", "abc.def", "a=1", "b=2", "xyz", "sk_live_123"):
        assert secret not in out
    assert "http://10.0.0.1:9001/m?password=REDACTED" in out
    assert out.endswith("cache key: /users")  # "key" masks only key=value, not prose
    assert R.text("Bearer Zm9vOmJhcg==") == f"Bearer {MASK}" and R.text("") == ""


def test_headers_and_tags() -> None:
    for key in ("Authorization", "cookie", "http.request.header.cookie", "X-Api-Key",
                "set_cookie", "token", "api_key"):
        assert R.is_sensitive_key(key), key
    for key in ("route", "cache", "http.url", "db.statement", "monkey"):
        assert not R.is_sensitive_key(key), key
    assert R.value({"Authorization": "Basic x", "n": 3, "inner": [{"cookie": "c"}, "ok"],
                    "none": None, "cookie": None}) == {
        "Authorization": MASK, "n": 3, "inner": [{"cookie": MASK}, "ok"], "none": None,
        "cookie": None}


def test_labels_keep_order_and_names() -> None:
    got = R.labels([("route", "/u?sig=1"), ("tenant_key", "abc"), ("le", "0.1"),
                    ("tenant", "sk_live_9")])
    assert got == (("route", f"/u?sig={MASK}"), ("tenant_key", MASK), ("le", "0.1"),
                   ("tenant", MASK))


def test_rules() -> None:
    with pytest.raises(ValueError, match="bad redaction pattern"):
        RedactionRules(value_patterns=("(",))
    rules = RedactionRules().with_secrets(["", "t1", "t1"])
    assert rules.secrets == ("t1",)
    described = str(rules.describe())
    assert "t1" not in described and "'secrets': 1" in described
    empty = Redactor(RedactionRules(query_params=frozenset(), headers=frozenset(),
                                    secret_suffixes=()))
    assert empty.text("token=x Authorization: y") == "token=x Authorization: y"


# --- fail closed (issue 14 item 11) --------------------------------------------------------

C = "canary7Q"  # in every planted secret; must appear nowhere after redaction

# (input, what must remain) for every way a credential slipped through before.
LEAKS = [
    # RFC 3986 lets ( ) ' stand unencoded in a password.
    (f"http://ops:pa({C})ss@db.internal:5432/x", "http://db.internal:5432/x"),
    (f"see https://ops:it's{C}@h.example/a)", "see https://h.example/a)"),
    (f"(https://u:{C}(1)@h/)", "(https://h/)"),
    # An invalid port: urlsplit refuses the URL; the user info goes all the same.
    (f"https://admin:{C}@h:99999/", "https://h:99999/"),
    (f"https://admin:{C}@h:port/x", "https://h:"),
    # Quoted pairs: SQL in a db.statement tag, JSON, a shell line.
    (f"UPDATE users SET password='{C}hunter2' WHERE id = 1",
     "UPDATE users SET password='REDACTED' WHERE id = 1"),
    (f"SELECT 1 WHERE pwd = 'it''s {C}'", "SELECT 1 WHERE pwd = 'REDACTED'"),
    (f'{{"user": "ops", "password": "{C} \\"quoted\\""}}',
     '{"user": "ops", "password": "REDACTED"}'),
    (f"{{'client_secret': '{C}'}}", "{'client_secret': 'REDACTED'}"),
    (f"password='{C} never closed", "password='REDACTED"),
    # Token names beyond the list, by their ending.
    (f"refresh_token={C}1&session_token={C}2 api_token={C}3",
     "refresh_token=REDACTED&session_token=REDACTED api_token=REDACTED"),
    (f'{{"id_token": "{C}", "github-token": "{C}"}}',
     '{"id_token": "REDACTED", "github-token": "REDACTED"}'),
    (f"password: {C}", "password: REDACTED"),
    (f'"Authorization": "Bearer {C}", "n": 1', '"Authorization": "REDACTED", "n": 1'),
    # A scheme word followed by a credential-shaped value, anywhere.
    (f"retry with Token {C}abc9", "retry with Token REDACTED"),
    (f"auth Basic {C}==", "auth Basic REDACTED"),
]

# Ordinary prose stays as it is.
PROSE = ["Token expired at 21:00", "token refresh failed; cache key: /users",
         "the bearer of bad news", "Basic idea: cache more", "Token Expired",
         "SELECT name FROM users WHERE id = 1", "http://h:8080/metrics?view=all",
         "session ended after password change"]


@pytest.mark.parametrize("text,want", LEAKS)
def test_credentials_that_used_to_leak(text: str, want: str) -> None:
    out = R.text(text)
    assert C not in out and want in out, out


@pytest.mark.parametrize("text", PROSE)
def test_prose_is_kept(text: str) -> None:
    assert R.text(text) == text


@pytest.mark.parametrize("url,want", [
    (f"https://admin:{C}@h:99999/", "https://h:99999/"),
    (f"http://ops:pa(s)s'{C}@h/m?token={C}", f"http://h/m?token={MASK}"),
    (f"http://admin:{C}/x", f"http://admin:{MASK}/x"),  # '@host' lost: the port is no port
])
def test_url_fails_closed(url: str, want: str) -> None:
    assert R.url(url) == want


def test_sensitive_keys_by_their_ending() -> None:
    for key in ("refresh_token", "session_token", "api_token", "id_token", "X-Refresh-Token",
                "db.password", "client_secret", "aws_secret"):
        assert R.is_sensitive_key(key), key
    for key in ("tokens_used", "max_tokens", "token_count", "route", "cache_key_hits"):
        assert not R.is_sensitive_key(key), key
    assert R.value({"refresh_token": "x", "meta": {"session_token": "y"}}) == {
        "refresh_token": MASK, "meta": {"session_token": MASK}}


def test_every_case_is_gone_from_a_real_file_and_its_report(tmp_path: Path) -> None:
    """All the cases above planted where they occur (trace tags, journal, notes, target
    URL, labels); the exported file's bytes and the HTML report are grepped for them."""
    texts = [text for text, _ in LEAKS]
    trace = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_id": None,
             "name": "POST /login", "route": "/login", "method": "POST", "status": 200,
             "instance": "api-1", "cache": "miss", "start": T0 + 5, "duration_ms": 3.0,
             "children": [{"span_id": f"{i:016x}", "name": "db", "start": T0 + 5,
                           "duration_ms": 1.0, "tags": {"db.statement": text}}
                          for i, text in enumerate(texts)]}
    journal = [JournalRow(Agent("api-1", "http://127.0.0.1:9001"), i, T0 + 10 + i, "ops",
                          "api-1", "config", {"ttl": 5}, {"ttl": 30}, text, "accepted", text)
               for i, text in enumerate(texts)]
    target = ScrapeTarget("api-1", f"https://admin:{C}(x)@127.0.0.1:9001/metrics")
    with Store(tmp_path / "h.db", chunk_cycles=16) as store:
        for i in range(30):
            store.write_cycle(T0 + i, [
                ("api-1", "trimtab_http_requests_total",
                 (("route", f"/login?refresh_token={C}"), ("status", "200")), float(i))])
        info = export_snapshot(store, tmp_path / "leak.trimtab", T0, T0 + 29, targets=[target],
                               traces=[trace], journal=journal, notes="\n".join(texts),
                               annotations=[(T0 + 1 + i, t) for i, t in enumerate(texts)])
    raw = info.path.read_bytes()
    assert C.encode() not in raw and C.encode("utf-16-le") not in raw
    page = write_report(info.path, tmp_path / "leak.html").read_text(encoding="utf-8")
    assert C not in page and html.unescape(page).count("REDACTED") >= len(texts)
    assert "Token expired" not in page  # (not planted: the report has no invented text)
    with open_snapshot(info.path) as snap:
        assert len(snap.journal()) == len(texts) and snap.traces()[0]["route"] == "/login"
