"""Redaction rules: URLs, free text, header-like keys, labels, JSON values."""

from __future__ import annotations

import pytest
from trimtab.app.snapshot.redact import MASK, RedactionRules, Redactor

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
    empty = Redactor(RedactionRules(query_params=frozenset(), headers=frozenset()))
    assert empty.text("token=x Authorization: y") == "token=x Authorization: y"
