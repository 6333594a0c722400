"""The keys each rate limit refused most (or would have, in shadow mode), from real decisions.

Per limit, a bounded heavy-hitter tally (the space-saving algorithm of Metwally et al.):
at most :data:`CAPACITY` keys are counted; a refusal of a key not counted while the tally
is full takes the place of the least-counted key and inherits its count, so a key's count
is at most that inherited amount too high (``error`` in the answer) and every key refused
more often than 1/CAPACITY of the time is always listed. Two tallies rotate every
``span / 2`` seconds and an answer adds the current one to the previous: it covers between
``span / 2`` and ``span`` seconds, said as ``top_keys_seconds``, and a client that stopped
sending leaves the list within ``span``.

Memory: 2 tallies × CAPACITY keys × up to :data:`MAX_LIMITS` limits, each entry a short
string and three ints (about 3 MB at the worst, nothing without refusals). Only refusals
are counted: an allowed request does no work here.

Key values are shown as the what-if shows them (:mod:`.ratelimit_whatif`): an IP or a JWT
claim as it is, a header value (an API key: a secret) only as ``#`` and 8 hex digits, a
keyed BLAKE2b of the value (:class:`KeyIds`). The key is a random secret kept in the state
dir (``ratelimit-keyid.secret``, mode 0600, made once by whichever worker comes first), so
every worker of an instance gives one API key the same id; without a state dir it is per
process. Ids differ between instances (each has its own secret) and reveal nothing of the
value to whoever lacks the secret. ``TRIMTAB_KEYID_SECRET`` (at least 16 characters, the
same on every instance; the demo sets one) replaces the state dir's secret, so one client
has one id on every instance and the cockpit adds its refusals up across the fleet.

Workers: with a state dir, each worker publishes its two tallies (with their ages) to
``<state dir>/ratelimit-topkeys/<instance>-<pid>.json`` at most once a second while it
refuses (:class:`~.ratelimit_share.TopKeysShare`), and an answer sums every worker's
tallies that started less than ``span`` ago: a key refused by several workers appears once
with the summed counts. Without a state dir a worker answers for its own decisions.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .ratelimit import Limit, Scope, client_key
from .ratelimit_config import MAX_LIMITS

CAPACITY = 50  # keys counted per limit and tally
SHOWN = 20  # keys in an answer
SPAN = 600.0  # seconds: an answer covers between half of it and all of it

SECRET_FILE = "ratelimit-keyid.secret"
SECRET_ENV = "TRIMTAB_KEYID_SECRET"  # a fleet-wide secret: one id per key on every instance
MIN_SECRET = 16  # characters: a short one would let an id be brute-forced back to a weak key
_MEMO = 4096  # value -> id memo, cleared when full (a key flood stays bounded)

__all__ = ["CAPACITY", "MAX_LIMITS", "SHOWN", "SPAN", "KeyIds", "MergedTop", "TopKeys", "merge_tallies",
           "shown_key"]


class KeyIds:
    """Opaque ids of secret key values: ``#`` and 8 hex digits of a keyed BLAKE2b.

    ``state_dir``: the secret is shared through it by every worker of the instance (one id
    per value in every worker); None: a random secret of this process. ``$TRIMTAB_KEYID_SECRET``
    overrides both (ValueError here, at start-up, when it is shorter than 16 characters).
    """

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir else None
        self._secret: bytes | None = _fleet_secret()
        self._memo: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        shown = self._memo.get(value)
        if shown is None:
            if self._secret is None:
                self._secret = self._load()
            shown = "#" + hashlib.blake2b(value.encode("utf-8", "surrogatepass"),
                                          key=self._secret, digest_size=4).hexdigest()
            if len(self._memo) >= _MEMO:
                self._memo.clear()
            self._memo[value] = shown
        return shown

    def _load(self) -> bytes:
        if self.state_dir is None:
            return os.urandom(32)
        path = self.state_dir / SECRET_FILE
        for _ in range(100):
            try:
                secret = path.read_bytes()
                if len(secret) == 32:
                    return secret
            except FileNotFoundError:
                pass
            # Made whole, then linked into place: a reader never sees a partial secret, and
            # of two workers racing, the first link wins and both read the same file.
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{SECRET_FILE}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, os.urandom(32))
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        raise OSError(f"{path}: not a 32-byte secret (remove it to make a new one)")


def _fleet_secret() -> bytes | None:
    """The 32-byte key derived from ``$TRIMTAB_KEYID_SECRET``; None when it is unset."""
    value = os.environ.get(SECRET_ENV)
    if value is None:
        return None
    if len(value.strip()) < MIN_SECRET:  # never echo it: it is a secret, even a bad one
        raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET} characters (the same "
                         f"on every instance), or unset for a secret per instance")
    # Stripped as it was measured: a trailing newline (a secret file mounted as an env var)
    # on one instance must not give it ids of its own.
    return hashlib.blake2b(value.strip().encode("utf-8", "surrogatepass"), digest_size=32,
                           person=b"trimtab-keyid").digest()


def shown_key(spec: str, scope: Scope, ids: Callable[[str], str]) -> str:
    """The client key of ``scope`` for ``spec`` as it may be shown (never a header value)."""
    value = client_key(spec, scope)
    if spec.startswith("header:"):
        return ids(value)
    return value


class _Tally:
    """Space-saving counts of one limit: key → [limited, shadow_limited, error]."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, key: str, shadow: bool) -> None:
        entry = self.counts.get(key)
        if entry is None:
            inherited = 0
            if len(self.counts) >= CAPACITY:  # replace the least counted (rare: a new key)
                low = min(self.counts, key=lambda k: sum(self.counts[k][:2]))
                inherited = sum(self.counts.pop(low)[:2])
            entry = self.counts[key] = [0, 0, inherited]
            entry[1 if shadow else 0] += inherited  # the inherited count, on this side
        entry[1 if shadow else 0] += 1


class TopKeys:
    """The tallies of every limit; :meth:`refused` on each refusal, :meth:`top` to read."""

    def __init__(self, span: float = SPAN, clock: Callable[[], float] = time.monotonic,
                 ids: Callable[[str], str] | None = None) -> None:
        self.span, self.clock = span, clock
        self.ids = ids if ids is not None else KeyIds()
        self._lock = threading.Lock()
        self._current: dict[str, _Tally] = {}
        self._previous: dict[str, _Tally] = {}
        self._started = self._previous_started = clock()

    def refused(self, limit: Limit, scope: Scope) -> None:
        """Count one refusal (enforce) or would-be refusal (shadow) of ``limit``."""
        key = shown_key(limit.key, scope, self.ids)
        with self._lock:
            self._rotate()
            tally = self._current.get(limit.name)
            if tally is None:
                tally = self._current[limit.name] = _Tally()
            tally.add(key, limit.mode == "shadow")

    def top(self, name: str, n: int = SHOWN) -> list[dict[str, Any]]:
        """The ``n`` keys of limit ``name`` refused most, most first."""
        with self._lock:
            self._rotate()
            tallies = [t.counts for t in (self._previous.get(name), self._current.get(name))
                       if t is not None]
            return merge_tallies(tallies, n)

    def dump(self) -> dict[str, Any]:
        """Both tallies with their ages, for another worker to merge (:class:`MergedTop`)."""
        with self._lock:
            self._rotate()
            now = self.clock()
            return {"written": time.time(), "tallies": [
                {"age": now - started,
                 "limits": {name: {k: list(v) for k, v in tally.counts.items()}
                            for name, tally in tallies.items()}}
                for started, tallies in ((self._previous_started, self._previous),
                                         (self._started, self._current))]}

    def seconds(self) -> float:
        """The span the answers cover now (from the previous tally's start)."""
        with self._lock:
            self._rotate()
            return round(self.clock() - self._previous_started, 3)

    def forget(self, names: set[str]) -> None:
        """Drop the tallies of limits no longer configured."""
        with self._lock:
            for tallies in (self._current, self._previous):
                for name in set(tallies) - names:
                    del tallies[name]

    def _rotate(self) -> None:
        now = self.clock()
        if now - self._started >= self.span / 2:
            # Two rotations' worth of silence leaves nothing behind.
            stale = now - self._started >= self.span
            self._previous = {} if stale else self._current
            self._previous_started = now if stale else self._started
            self._current, self._started = {}, now


def merge_tallies(tallies: Iterable[dict[str, list[int]]], n: int = SHOWN
                  ) -> list[dict[str, Any]]:
    """Tallies summed by key (limited, shadow_limited, error), the ``n`` refused most first."""
    merged: dict[str, list[int]] = {}
    for counts in tallies:
        for key, (limited, shadow, error) in counts.items():
            entry = merged.setdefault(key, [0, 0, 0])
            entry[0] += limited
            entry[1] += shadow
            entry[2] += error
    ranked = sorted(merged.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))[:n]
    return [{"key": key, "limited": limited, "shadow_limited": shadow, "error": error}
            for key, (limited, shadow, error) in ranked]


class MergedTop:
    """Every worker's tallies that started less than ``span`` ago (see :meth:`TopKeys.dump`)."""

    def __init__(self, span: float = SPAN, now: float | None = None) -> None:
        self.span = span
        self.now = time.time() if now is None else now
        self.tallies: list[dict[str, dict[str, list[int]]]] = []
        self.seconds = 0.0

    def add(self, snapshot: dict[str, Any]) -> None:
        """Add one worker's dump; tallies too old (a dead or idle worker's) are left out."""
        waited = max(0.0, self.now - float(snapshot["written"]))
        for tally in snapshot["tallies"]:
            age = float(tally["age"]) + waited
            if age < self.span:
                self.seconds = max(self.seconds, age)
                self.tallies.append({name: {str(k): [int(x) for x in v[:3]]
                                            for k, v in counts.items()}
                                     for name, counts in tally["limits"].items()})

    def top(self, name: str, n: int = SHOWN) -> list[dict[str, Any]]:
        """The ``n`` keys of limit ``name`` refused most over every worker, most first."""
        return merge_tallies((t[name] for t in self.tallies if name in t), n)
