"""Redaction of secrets before anything leaves the machine (snapshots, reports).

What is removed, wherever it appears (URLs, free text, trace tags, label
values, journal entries, notes):

- credentials in URLs: ``http://user:pass@host/`` → ``http://host/``, cut by
  structure (everything between ``://`` and the authority's last ``@``), so a
  password with ``( ) '`` (RFC 3986 lets them stand unencoded) or a URL that does
  not parse (a port of 99999) loses its user info whole; a "port" that is no
  number (``http://admin:secret/``, the ``@host`` lost) is masked;
- the values of sensitive names: configured query parameters and any name
  ending in ``token``, ``secret``, ``password``/``passwd`` (``refresh_token``,
  ``session_token``, ``api_token``, ``id_token``…), in URLs (``?token=…`` →
  ``?token=REDACTED``) and in text as ``name=value``, ``name = 'quoted'`` (SQL),
  ``"name": "value"`` (JSON, escapes understood) or ``password: value``; a
  quoted value that never closes is masked to the end of its line;
- ``Authorization`` / ``Cookie`` style headers: a tag or key with such a name
  keeps its name and loses its value; ``Authorization: …`` in text loses the
  whole value;
- a scheme word (``Bearer``, ``Basic``, ``Digest``, ``Token``) followed by a
  credential-shaped value: one with a digit, a symbol, inner capitals, or 20+
  characters. A plain word is prose and stays ("Token expired", "the bearer of
  bad news"): real credentials are random strings, and inside a header named
  above the value goes whole whatever its shape;
- label values whose label *name* matches a configured pattern, and any text
  matching a configured value pattern;
- literal secrets (e.g. every target's agent token) anywhere in any string.

A rate limit's ``key`` setting (``header:x-api-key``) is no secret: it names what tells
clients apart, and is kept when it has that form (``Redactor.limit``).

Redaction is deterministic (the same input gives the same output), so a
redacted target name still joins its series, samples and health rows.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit, urlunsplit

from trimtab.agent.ratelimit_config import valid_key

MASK = "REDACTED"
DEFAULT_QUERY_PARAMS = frozenset({
    "token", "key", "api_key", "apikey", "access_token", "auth", "password", "passwd",
    "pwd", "secret", "client_secret", "sig", "signature", "session", "sessionid",
    "refresh_token", "session_token", "api_token", "id_token", "credentials"})
DEFAULT_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-auth-token", "x-trimtab-token"})
# A scheme is a short word: bounded, so a long run of letters costs linear time, not
# quadratic (a 100 kB token in a tag took 10 s with an unbounded scheme).
_SCHEME_WORD = r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,31}://"
_URL = re.compile(_SCHEME_WORD + r"[^\s\"'<>()\[\]{}]+")
# scheme:// + user info up to the authority's LAST "@" (greedy): the authority ends at
# / ? # or a space; ( ) ' and even @ may sit in a password, so they do not end it.
_USERINFO = re.compile(rf"({_SCHEME_WORD})[^\s/?#\"<>\[\]{{}}\\]*@")
# A "port" that is no number (``http://admin:secret/x``): what looks like a password.
_BAD_PORT = re.compile(rf"({_SCHEME_WORD}[^\s/?#:@\[\]]*):"
                       r"(?!\d*(?:[/?#\s]|$))[^\s/?#]+")
_SCHEME = re.compile(r"\b(Bearer|Basic|Digest|Token)(\s+)([A-Za-z0-9\-._~+/=:]+)", re.IGNORECASE)
# A word of prose: letters, at most the first one a capital, under 20 characters
# (checked without trailing punctuation: "Basic idea: …").
_PROSE_WORD = re.compile(r"[A-Za-z][a-z]{0,18}")
DEFAULT_SUFFIXES = ("token", "secret", "password", "passwd")
# A value: a quoted string (backslash escapes, SQL's doubled quote) or one that never
# closes (masked to the end of the line: fail closed), else a bare word.
_QUOTED = r"""'(?:[^'\\\r\n]|\\.|'')*'|"(?:[^"\\\r\n]|\\.)*"|['"][^\r\n]*"""


@dataclass(frozen=True)
class RedactionRules:
    """What to remove. Names compare case-insensitively; patterns are regexes.

    ``query_params``: query parameters (and ``name=value`` pairs in text) whose
    value is masked. ``secret_suffixes``: any such name *ending* in one of these
    is masked too (``refresh_token``, ``x-api-token``, ``db.password``).
    ``headers``: header-like keys (tags, JSON keys) whose value is masked.
    ``label_names``: patterns of label names whose values are masked.
    ``value_patterns``: patterns masked wherever they match in any text or
    label value. ``secrets``: literal strings masked everywhere.
    """

    query_params: frozenset[str] = DEFAULT_QUERY_PARAMS
    headers: frozenset[str] = DEFAULT_HEADERS
    label_names: tuple[str, ...] = ()
    value_patterns: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    secret_suffixes: tuple[str, ...] = DEFAULT_SUFFIXES

    def __post_init__(self) -> None:
        for pattern in (*self.label_names, *self.value_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad redaction pattern {pattern!r}: {exc}") from exc

    def with_secrets(self, more: Iterable[str]) -> RedactionRules:
        """These rules plus literal ``more`` secrets (empty strings ignored)."""
        merged = tuple(dict.fromkeys(s for s in (*self.secrets, *more) if s))
        return dataclasses.replace(self, secrets=merged)

    def describe(self) -> dict[str, Any]:
        """The rules without the literal secrets (safe to store in the snapshot)."""
        return {"query_params": sorted(self.query_params), "headers": sorted(self.headers),
                "secret_suffixes": list(self.secret_suffixes),
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
    def _suffix_name(self) -> str | None:
        """A regex of names ending in a secret suffix (``refresh_token``, ``db.password``)."""
        if not self.rules.secret_suffixes:
            return None
        alt = "|".join(re.escape(x.lower()) for x in self.rules.secret_suffixes)
        return rf"[A-Za-z0-9_.\-]{{0,64}}(?:{alt})"

    @cached_property
    def _pairs(self) -> re.Pattern[str] | None:
        """``name=value``, ``name = 'value'``, ``"name": "value"`` for sensitive names, and
        ``name: value`` for names that end in a secret suffix (``password: x``); a bare
        ``key: …`` is prose ("cache key: /users")."""
        names = _names(self._params, self._suffix_name)
        if names is None:
            return None
        # The unquoted ``name: value`` form is kept or masked by _pair_masked.
        tail = rf"""(["']?\s*=\s*|["']\s*:\s*|\s*:\s*)({_QUOTED}|[^\s&;,"']+)"""
        return re.compile(rf"(?i)(?<![A-Za-z0-9_\-.])({names}){tail}")

    @cached_property
    def _colon_ok(self) -> re.Pattern[str] | None:
        """Names whose unquoted ``name: value`` is a credential (suffix names only)."""
        return None if self._suffix_name is None else re.compile(rf"(?i){self._suffix_name}")

    @cached_property
    def _header_lines(self) -> re.Pattern[str] | None:
        """``Header: anything up to the end of the line`` (or its quoted value) for sensitive
        headers."""
        names = _names(self._headers, None)
        if names is None:
            return None
        return re.compile(rf"""(?i)(?<![A-Za-z0-9_\-.])({names})(["']?\s*[:=]\s*)"""
                          rf"""({_QUOTED}|[^\r\n]+)""")

    @cached_property
    def _values(self) -> list[re.Pattern[str]]:
        return [re.compile(p) for p in self.rules.value_patterns]

    @cached_property
    def _label_names(self) -> list[re.Pattern[str]]:
        return [re.compile(p, re.IGNORECASE) for p in self.rules.label_names]

    def is_sensitive_key(self, key: str) -> bool:
        """A header, tag or JSON key whose value is a credential (``http.request.header.cookie``,
        ``refresh_token`` too)."""
        low = key.lower().replace("_", "-")
        last = re.split(r"[.\s/]", low)[-1]
        return (low in self._headers or last in self._headers
                or key.lower() in self._params or last.replace("-", "_") in self._params
                or (self._colon_ok is not None and self._colon_ok.fullmatch(last) is not None))

    def url(self, url: str) -> str:
        """``url`` without user info and with sensitive query values masked.

        The user info is cut by structure first, so it goes even when the URL does not
        parse (a password with a ``/``, a port of 99999); a URL that does not parse keeps
        nothing that looks like a credential: a "port" that is no number is masked,
        ``name=value`` pairs as in text.
        """
        url = _USERINFO.sub(r"\1", url)
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port
        except ValueError:
            return self._mask_pairs(_BAD_PORT.sub(rf"\1:{MASK}", url))
        netloc = host if ":" not in host else f"[{host}]"
        netloc += f":{port}" if port is not None else ""
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = "&".join(f"{quote(k, safe='')}="
                             f"{MASK if self._sensitive_param(k) else quote(v, safe='')}"
                             for k, v in pairs)
        path = self._mask_pairs(parts.path)  # ;password=… path parameters
        return self._scrub(urlunsplit(SplitResult(parts.scheme, netloc, path, query, "")))

    def _sensitive_param(self, name: str) -> bool:
        low = name.lower()
        return low in self._params or (self._colon_ok is not None
                                       and self._colon_ok.fullmatch(low) is not None)

    def text(self, text: str) -> str:
        """Free text (notes, reasons, errors, SQL, JSON) with URLs, credentials and secrets
        removed."""
        if not text:
            return text
        out = _USERINFO.sub(r"\1", text)  # before the URL pattern, which stops at ( ) '
        out = _URL.sub(lambda m: self.url(m.group(0)), out)
        if self._header_lines is not None:
            out = self._header_lines.sub(_masked, out)
        out = self._mask_pairs(out)
        out = _SCHEME.sub(_scheme_masked, out)
        return self._scrub(out)

    def _mask_pairs(self, text: str) -> str:
        if self._pairs is None:
            return self._scrub(text)
        return self._scrub(self._pairs.sub(self._pair_masked, text))

    def _pair_masked(self, m: re.Match[str]) -> str:
        name, sep = m.group(1), m.group(2)
        if sep.strip() == ":" and not sep.startswith(("'", '"')) \
                and (self._colon_ok is None or not self._colon_ok.fullmatch(name)):
            return m.group(0)  # ``key: value`` with a plain name: prose
        return _masked(m)

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

    def limit(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A rate limit's settings (``route``, ``key``, ``rate``, ``burst``, ``mode``).

        ``key`` names *what* tells clients apart (``ip``, ``global``, ``header:x-api-key``,
        ``jwt:sub``), never a client's key value: kept when it has that form (the generic
        rules would mask any field called ``key``), masked otherwise. Numbers stay; every
        other string is redacted as text.
        """
        out: dict[str, Any] = {}
        for name, v in fields.items():
            if name == "key" and isinstance(v, str):
                out["key"] = v if valid_key(v) and self.text(v) == v else MASK
            else:
                out[self.text(str(name))] = self.value(v)
        return out

    def config(self, doc: Any) -> Any:
        """A config document or patch (journal ``old``/``new``) as :meth:`value` redacts it,
        its ``limits`` section through :meth:`limit` (a limit's key spec is no secret)."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("limits"), Mapping):
            return self.value(doc)
        out = self.value({k: v for k, v in doc.items() if k != "limits"})
        out["limits"] = {self.text(str(name)): self.limit(f) if isinstance(f, Mapping)
                         else self.value(f) for name, f in doc["limits"].items()}
        return out

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


def _names(names: frozenset[str], extra: str | None) -> str | None:
    """A regex alternation of ``names`` (longest first) plus the ``extra`` pattern."""
    alts = [re.escape(n) for n in sorted(names, key=len, reverse=True)]
    if extra is not None:
        alts.insert(0, extra)
    return "|".join(alts) or None


def _masked(m: re.Match[str]) -> str:
    """Groups (name, separator, value) with the value masked; its quotes kept."""
    value = m.group(3)
    quote_char = value[0] if value[:1] in ("'", '"') else ""
    closed = quote_char and len(value) > 1 and value.endswith(quote_char)
    return f"{m.group(1)}{m.group(2)}{quote_char}{MASK}{quote_char if closed else ''}"


def _scheme_masked(m: re.Match[str]) -> str:
    """``Bearer <credential>`` masked; ``Token expired`` (a word of prose) kept."""
    if _PROSE_WORD.fullmatch(m.group(3).rstrip(".,:;!?")):
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{MASK}"
