"""Redaction of secrets before anything leaves the machine (snapshots, reports).

What is removed, wherever it appears (URLs, free text, trace tags, label
values, journal entries, notes):

- credentials in URLs: ``http://user:pass@host/`` → ``http://host/``;
- the values of configured query parameters (``?token=…`` → ``?token=REDACTED``),
  also when written as ``token=…`` in free text;
- ``Authorization`` / ``Cookie`` style headers: a tag or key with such a name
  keeps its name and loses its value; ``Authorization: Bearer …`` and
  ``Bearer …`` in free text lose the credential;
- label values whose label *name* matches a configured pattern, and any text
  matching a configured value pattern;
- literal secrets (e.g. every target's agent token) anywhere in any string.

Redaction is deterministic (the same input gives the same output), so a
redacted target name still joins its series, samples and health rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit, urlunsplit

MASK = "REDACTED"
DEFAULT_QUERY_PARAMS = frozenset({
    "token", "key", "api_key", "apikey", "access_token", "auth", "password", "passwd",
    "pwd", "secret", "client_secret", "sig", "signature", "session", "sessionid"})
DEFAULT_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-auth-token", "x-trimtab-token"})
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>()\[\]{}]+")
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9\-._~+/=:]+", re.IGNORECASE)


@dataclass(frozen=True)
class RedactionRules:
    """What to remove. Names compare case-insensitively; patterns are regexes.

    ``query_params``: query parameters (and ``name=value`` pairs in text) whose
    value is masked. ``headers``: header-like keys (tags, JSON keys) whose value
    is masked. ``label_names``: patterns of label names whose values are masked.
    ``value_patterns``: patterns masked wherever they match in any text or
    label value. ``secrets``: literal strings masked everywhere.
    """

    query_params: frozenset[str] = DEFAULT_QUERY_PARAMS
    headers: frozenset[str] = DEFAULT_HEADERS
    label_names: tuple[str, ...] = ()
    value_patterns: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for pattern in (*self.label_names, *self.value_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad redaction pattern {pattern!r}: {exc}") from exc

    def with_secrets(self, more: Iterable[str]) -> RedactionRules:
        """These rules plus literal ``more`` secrets (empty strings ignored)."""
        merged = tuple(dict.fromkeys(s for s in (*self.secrets, *more) if s))
        return RedactionRules(self.query_params, self.headers, self.label_names,
                              self.value_patterns, merged)

    def describe(self) -> dict[str, Any]:
        """The rules without the literal secrets (safe to store in the snapshot)."""
        return {"query_params": sorted(self.query_params), "headers": sorted(self.headers),
                "label_names": list(self.label_names),
                "value_patterns": list(self.value_patterns), "secrets": len(self.secrets)}


@dataclass(frozen=True)
class Redactor:
    """Applies :class:`RedactionRules` to URLs, text, labels, tags and JSON values."""

    rules: RedactionRules = field(default_factory=RedactionRules)

    @cached_property
    def _params(self) -> frozenset[str]:
        return frozenset(p.lower() for p in self.rules.query_params)

    @cached_property
    def _headers(self) -> frozenset[str]:
        return frozenset(h.lower() for h in self.rules.headers)

    @cached_property
    def _pairs(self) -> re.Pattern[str] | None:
        """``name=value`` for sensitive query parameter names, in free text."""
        return _alternation(self._params, r"(\s*=\s*)([^\s&;,\"']+)")

    @cached_property
    def _header_lines(self) -> re.Pattern[str] | None:
        """``Header: anything up to the end of the line`` for sensitive headers."""
        return _alternation(self._headers, r"(\s*[:=]\s*)([^\r\n]+)")

    @cached_property
    def _values(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.rules.value_patterns]

    @cached_property
    def _label_names(self) -> list[re.Pattern[str]]:
        return [re.compile(p, re.IGNORECASE) for p in self.rules.label_names]

    def is_sensitive_key(self, key: str) -> bool:
        """A header, tag or JSON key whose value is a credential (``http.request.header.cookie`` too)."""
        low = key.lower().replace("_", "-")
        last = re.split(r"[.\s/]", low)[-1]
        return (low in self._headers or last in self._headers
                or key.lower() in self._params or last.replace("-", "_") in self._params)

    def url(self, url: str) -> str:
        """``url`` without user info and with sensitive query values masked."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port
        except ValueError:  # not a parseable URL: treat it as text without URLs
            return self._scrub(url)
        netloc = host if ":" not in host else f"[{host}]"
        netloc += f":{port}" if port is not None else ""
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = "&".join(f"{quote(k, safe='')}={MASK if k.lower() in self._params else quote(v, safe='')}"
                             for k, v in pairs)
        out = urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))
        return self._scrub(out)

    def text(self, text: str) -> str:
        """Free text (notes, reasons, errors) with URLs, credentials and secrets removed."""
        if not text:
            return text
        out = _URL.sub(lambda m: self.url(m.group(0)), text)
        out = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
        for pattern in (self._header_lines, self._pairs):
            if pattern is not None:
                out = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)
        return self._scrub(out)

    @cached_property
    def _secrets(self) -> list[str]:
        # Longest first: a secret that contains another must go whole.
        return sorted((s for s in self.rules.secrets if s), key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern in self._values:
            text = pattern.sub(MASK, text)
        return text

    def labels(self, labels: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """Label pairs with sensitive values masked (names kept, order kept)."""
        out = []
        for name, value in labels:
            hidden = any(p.search(name) for p in self._label_names) or self.is_sensitive_key(name)
            out.append((name, MASK if hidden else self.text(value)))
        return tuple(out)

    def value(self, value: Any) -> Any:
        """A JSON-like value (dicts, lists, strings, numbers) with every string redacted
        and the values of sensitive keys masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): (MASK if self.is_sensitive_key(str(k)) and v is not None
                                        else self.value(v))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


def _alternation(names: frozenset[str], tail: str) -> re.Pattern[str] | None:
    """A case-insensitive ``(name)`` + ``tail`` pattern for whole names only."""
    if not names:
        return None
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?i)(?<![A-Za-z0-9_\-])({alt}){tail}")
