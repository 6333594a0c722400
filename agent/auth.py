"""Bearer tokens with two scopes, usable from any ASGI app.

API (stable; the balancer's control API reuses it)::

    auth = TokenAuth.from_env()                      # TRIMTAB_TOKENS="alice:write:S1,bob:read:S2"
    auth = TokenAuth.from_spec("alice:write:S1")     # same syntax, e.g. from a config file
    auth = TokenAuth([Token("alice", "write", "S1")])
    try:
        who = auth.authenticate(scope["headers"], need="write")   # -> Principal
    except AuthError as err:
        await err.send(send)          # 401 or 403, JSON body, nothing secret in it
        return

- Scopes are ``read`` and ``write``; ``write`` implies ``read``.
- 401 (``code`` ``missing_token`` / ``invalid_token`` / ``no_tokens_configured``):
  no ``Authorization: Bearer`` header, or a token that matches nothing. 403
  (``insufficient_scope``): a ``read`` token used for a write.
- The presented token is compared against every configured token with
  ``hmac.compare_digest`` over SHA-256 digests (equal lengths, no early exit),
  so timing does not reveal which token or how many characters matched.
- Secrets never appear in ``repr``, error messages or logs: a bad spec names
  the entry by position and name only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

READ = "read"
WRITE = "write"
SCOPES = (READ, WRITE)
ENV_VAR = "TRIMTAB_TOKENS"

HeaderSource = Iterable[tuple[bytes, bytes]] | Mapping[bytes, bytes]


@dataclass(frozen=True)
class Principal:
    """Who made a request, and what they may do."""

    name: str
    scopes: frozenset[str]

    def can(self, need: str) -> bool:
        """True when this principal holds scope ``need``."""
        return need in self.scopes


@dataclass(frozen=True)
class Token:
    """One configured token. ``secret`` is excluded from ``repr``."""

    name: str
    scope: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ":,\n"):
            raise ValueError(f"token name {self.name!r}: non-empty, without ':' ',' or newline")
        if self.scope not in SCOPES:
            raise ValueError(f"token {self.name!r}: scope must be 'read' or 'write', "
                             f"got {self.scope!r}")
        if not self.secret or self.secret != self.secret.strip():
            raise ValueError(f"token {self.name!r}: secret must be non-empty, unpadded")

    @property
    def scopes(self) -> frozenset[str]:
        """``write`` implies ``read``."""
        return frozenset(SCOPES) if self.scope == WRITE else frozenset({READ})


class AuthError(Exception):
    """A refused request. Render with :meth:`send` (ASGI) or :meth:`body`/:attr:`headers`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> bytes:
        """JSON body: ``{"error": code, "message": ..., "status": ...}``."""
        return json.dumps({"error": self.code, "message": self.message,
                           "status": self.status}).encode()

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Response headers, including ``WWW-Authenticate`` on 401 (RFC 6750)."""
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if self.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="trimtab"'))
        elif self.status == 403:
            headers.append((b"www-authenticate",
                            b'Bearer realm="trimtab", error="insufficient_scope"'))
        return headers

    async def send(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Write this error as a complete ASGI HTTP response."""
        body = self.body()
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [*self.headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class TokenAuth:
    """Checks ``Authorization: Bearer <token>`` against configured tokens."""

    def __init__(self, tokens: Iterable[Token] = ()) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        seen: set[bytes] = set()
        for token in tokens:
            digest = _digest(token.secret)
            if digest in seen:
                raise ValueError(f"token {token.name!r}: the same secret is configured twice")
            seen.add(digest)
            self._entries.append((digest, Principal(token.name, token.scopes)))

    @classmethod
    def from_spec(cls, spec: str) -> TokenAuth:
        """Parse ``name:scope:secret`` entries separated by commas (secret may contain ':')."""
        tokens = []
        for position, raw in enumerate(spec.split(","), start=1):
            entry = raw.strip()
            if not entry:
                continue
            parts = entry.split(":", 2)
            if len(parts) != 3:
                # Never echo the entry: it may be a secret typed without its name.
                raise ValueError(f"{ENV_VAR} entry {position}: expected name:scope:secret")
            tokens.append(Token(parts[0].strip(), parts[1].strip(), parts[2]))
        return cls(tokens)

    @classmethod
    def from_env(cls, var: str = ENV_VAR, environ: Mapping[str, str] | None = None) -> TokenAuth:
        """Tokens from an environment variable; none configured when it is unset or empty."""
        return cls.from_spec((environ if environ is not None else os.environ).get(var, ""))

    @property
    def configured(self) -> bool:
        """False when no token exists, so every request is refused with 401."""
        return bool(self._entries)

    def __repr__(self) -> str:
        names = ", ".join(f"{p.name}:{WRITE if p.can(WRITE) else READ}" for _, p in self._entries)
        return f"TokenAuth([{names}])"

    def authenticate(self, headers: HeaderSource, need: str = READ) -> Principal:
        """The principal behind the request's bearer token; raises :class:`AuthError`."""
        if need not in SCOPES:
            raise ValueError(f"need must be 'read' or 'write', got {need!r}")
        presented = _bearer(headers)
        if not self._entries:
            raise AuthError(401, "no_tokens_configured",
                            f"control API is locked: no tokens configured (set {ENV_VAR})")
        if presented is None:
            raise AuthError(401, "missing_token", "Authorization: Bearer <token> required")
        principal = self._match(_digest(presented))
        if principal is None:
            raise AuthError(401, "invalid_token", "token not recognised")
        if not principal.can(need):
            raise AuthError(403, "insufficient_scope",
                            f"token {principal.name!r} has scope 'read'; this needs '{need}'")
        return principal

    def _match(self, digest: bytes) -> Principal | None:
        found: Principal | None = None
        for known, principal in self._entries:
            # No early exit: every entry is compared, whatever matched.
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def _bearer(headers: HeaderSource) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name.lower() == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None
