"""Rate limits on a real HAProxy, driven through its runtime API (checked on HAProxy 2.6.12).

What works on HAProxy 2.6 (Debian 12's apt package), and is what this adapter does:

- A limit is a stick-table counting ``http_req_rate(<period>)`` per key (``src`` for
  ``ip``, ``req.hdr(x-api-key)`` for a header, ``str(x)`` for ``global``), tracked with
  ``track-sc0``, and an ACL comparing it with a value read from a **map** at request time:
  ``str(<name>.limit),map(<map>,0)`` into a variable, then
  ``sc_http_req_rate(0),sub(txn.var) gt 0``. ``set map <map> <key> <value>`` changes that
  value live; the next request uses it. The mode is a second map value
  (``<name>.mode``: 0 off, 1 shadow, 2 enforce) tested by the deny rule.
- Shadow: the rules count a would-be refusal in a counts table (``store gpc(N)``, one
  row keyed ``trimtab``) with ``sc-inc-gpc(<i>,<sc>)`` and refuse nothing. Allowed,
  limited and shadow-limited are ``gpc(i)``, ``gpc(i+1)``, ``gpc(i+2)``; the base ``i``
  is the map's ``<name>.gpc``. Read with ``show table``.
- The map also describes each limit for this adapter (read with ``show map``):
  ``<name>.route``, ``<name>.key``, ``<name>.period`` (the stick-table's period, s).
  The map is read with ``map()`` (string values cast to integers by the rules):
  ``map_str_int`` refuses to load a map holding the descriptive entries.

How rate and burst map: HAProxy counts requests over a sliding period rather than
running GCRA. A limit there is "N requests per P seconds", which is GCRA's burst N
with rate N/P. A change is accepted only when ``burst == rate × period``; anything
else is refused (422) saying so. Also unlike the agent: HAProxy counts refused
requests in the rate too (a client that keeps sending stays refused), and a 429 has
``Retry-After`` only if the config's deny rule adds it (the period is the honest
value); there are no ``RateLimit`` headers unless the config writes them.

What does not work, refused with a 422 naming why: creating or deleting a limit (a
stick-table, a track-sc slot and the ACLs live in the config: edit it and reload;
use mode off to stop a limit), changing a limit's ``route`` or ``key`` (the ACL and the
track-sc expression are config), and a rate/burst pair off ``burst = rate × period``.
``set var proc.<name>`` on the runtime CLI exists in 2.6 only in experimental mode
(``experimental-mode on``), so this adapter does not use it. At most three tracked
counters per request (sc0-sc2) in 2.6: two limits plus the counts table.

Map changes are lost when HAProxy reloads (the map file is read again) and so are the
counts. As for weights, the agent keeps the desired values (seeded from the journal at
start) and re-applies them after a reload or at its own start, journaled; a change made
behind its back on a running HAProxy is reported as drift, never fought.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..journal import ACCEPTED, Journal
from ..ratelimit import ENFORCE, OFF, SHADOW
from .haproxy import HAProxyError, HAProxyRefused, RuntimeClient, runtime_call
from .limits import LIMITS_PREFIX, Counts
from .policies import BackendError

__all__ = ["HAProxyLimits", "desired_limits_from_journal"]

MODE_NUMBER = {OFF: 0, SHADOW: 1, ENFORCE: 2}
NUMBER_MODE = {str(v): k for k, v in MODE_NUMBER.items()}
_PATH = re.compile(r"^[A-Za-z0-9_./@#-]{1,256}$")
_GPC = re.compile(r"\bgpc(\d+)=(\d+)")


def desired_limits_from_journal(journal: Journal, target: str) -> dict[str, dict[str, int]]:
    """The map values (``limit``, ``mode``) the journal's accepted limit changes ask for."""
    out: dict[str, dict[str, int]] = {}
    for entry in journal.list():
        if entry.target != target or entry.result != ACCEPTED or \
                not entry.what.startswith(LIMITS_PREFIX) or not isinstance(entry.new, dict):
            continue
        want = out.setdefault(entry.what.removeprefix(LIMITS_PREFIX), {})
        if isinstance(entry.new.get("burst"), int):
            want["limit"] = entry.new["burst"]
        if entry.new.get("mode") in MODE_NUMBER:
            want["mode"] = MODE_NUMBER[entry.new["mode"]]
    return out


class HAProxyLimits:
    """The :class:`~.limits.LimitsBackend` over one HAProxy map (and counts table)."""

    def __init__(self, client: RuntimeClient, map_path: str, target: str,
                 counts_table: str | None = None,
                 desired: dict[str, dict[str, int]] | None = None,
                 reapply: bool = True) -> None:
        if not _PATH.match(map_path):
            raise ValueError(f"limits map path must match {_PATH.pattern}, got {map_path!r}")
        if counts_table is not None and not _PATH.match(counts_table):
            raise ValueError(f"counts table must match {_PATH.pattern}, got {counts_table!r}")
        self.client, self.map_path, self.target = client, map_path, target
        self.counts_table = counts_table
        self.desired: dict[str, dict[str, int]] = dict(desired or {})
        self.reapply = reapply
        self._pid: str | None = None
        self._routes: list[str] = []
        self._periods: dict[str, int] = {}
        self._gpc: dict[str, int] = {}
        self.map_problems: list[str] = []
        self.drift: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- reading
    def _read(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
        """(limits as document fields, raw map values per limit)."""
        answer = self.client.command(f"show map {self.map_path}")
        raw: dict[str, dict[str, str]] = {}
        for line in answer.splitlines():
            parts = line.split()
            if len(parts) != 3 or not parts[0].startswith("0x"):
                if line.strip():
                    raise HAProxyRefused(f"show map {self.map_path}", answer.strip()[:200])
                continue
            name, _, attr = parts[1].rpartition(".")
            if name:
                raw.setdefault(name, {})[attr] = parts[2]
        limits: dict[str, dict[str, Any]] = {}
        problems, periods, gpc = [], {}, {}
        for name, v in sorted(raw.items()):
            try:
                period, limit = int(v["period"]), int(v["limit"])
                mode = NUMBER_MODE[v["mode"]]
                if period <= 0 or limit <= 0:
                    raise ValueError("period and limit must be > 0")
                limits[name] = {"route": v["route"], "key": v["key"], "rate": limit / period,
                                "burst": limit, "mode": mode}
                periods[name] = period
                if "gpc" in v:
                    gpc[name] = int(v["gpc"])
            except (KeyError, ValueError) as err:
                problems.append(f"{name}: needs route, key, period, limit (> 0) and mode "
                                f"(0, 1, 2) in the map ({err})")
        self._periods, self._gpc, self.map_problems = periods, gpc, problems
        self._routes = sorted({f["route"] for f in limits.values()} - {"*"})
        return limits, raw

    async def current(self) -> dict[str, dict[str, Any]]:
        """The live limits, from ``show map``."""
        return (await runtime_call(self._read))[0]

    def routes(self) -> list[str]:
        """The routes the map's limits name (set when the limits were last read)."""
        return list(self._routes)

    async def counts(self) -> Counts:
        """Allowed / limited / shadow_limited per limit from the counts table's gpc values."""
        if self.counts_table is None:
            return {}
        current = await self.current()
        answer = await runtime_call(self.client.command, f"show table {self.counts_table}")
        if not answer.lstrip().startswith("# table:"):  # e.g. a misspelt table: no zeros
            raise BackendError(503, f"counts table {self.counts_table!r}: HAProxy answered "
                                    f"{answer.strip()[:200] or 'nothing'!r}")
        values: dict[int, int] = {}
        for line in answer.splitlines():
            if "key=trimtab " in line:
                values = {int(i): int(n) for i, n in _GPC.findall(line)}
        out: Counts = {}
        for name, base in self._gpc.items():
            route = current.get(name, {}).get("route", "*")
            for offset, result in enumerate(("allowed", "limited", "shadow_limited")):
                if values.get(base + offset):
                    out[(route, name, result)] = values[base + offset]
        return out

    # ---------------------------------------------------------------- changing
    def problems(self, section: dict[str, Any], current: dict[str, dict[str, Any]]
                 ) -> list[tuple[str, str]]:
        """What HAProxy cannot do live of a valid patch (see the module docstring)."""
        errors: list[tuple[str, str]] = []
        for name, fields in section.items():
            where = f"limits[{name!r}]"
            if name not in current:
                errors.append((where, "HAProxy cannot add a limit at runtime: its stick-table, "
                               "track-sc and ACLs are config; declare it in the config and in "
                               f"{self.map_path}, then reload"))
                continue
            if fields is None:
                errors.append((where, "HAProxy cannot delete a limit at runtime (its rules are "
                               "config); set mode off instead"))
                continue
            cur = current[name]
            for fixed in ("route", "key"):
                if fixed in fields and fields[fixed] != cur[fixed] and \
                        not (fixed == "key" and str(fields[fixed]).lower() == cur[fixed]):
                    errors.append((f"{where}.{fixed}", f"fixed by the HAProxy config (the "
                                   f"{'ACL' if fixed == 'route' else 'track-sc expression'}); "
                                   "edit the config and reload"))
            rate = float(fields.get("rate", cur["rate"]))
            burst = int(fields.get("burst", cur["burst"]))
            period = self._periods.get(name, 1)
            if ("rate" in fields or "burst" in fields) and \
                    not math.isclose(rate * period, burst, rel_tol=1e-9):
                suggest = max(1, round(rate * period))
                errors.append((f"{where}.{'rate' if 'rate' in fields else 'burst'}",
                               f"HAProxy counts requests over {period} s (http_req_rate), not "
                               f"GCRA: a limit there is N requests per {period} s, i.e. burst N "
                               f"and rate N/{period}; send burst = rate × {period} (e.g. rate "
                               f"{suggest / period:g}, burst {suggest}), got rate {rate:g}, "
                               f"burst {burst}"))
        return errors

    def _set(self, name: str, attr: str, value: int) -> None:
        cmd = f"set map {self.map_path} {name}.{attr} {value}"
        answer = self.client.command(cmd).strip()
        if answer:
            raise HAProxyRefused(cmd, answer)

    def _replace(self, limits: dict[str, dict[str, Any]]) -> None:
        _, raw = self._read()
        done: list[tuple[str, str, str]] = []
        try:
            for name, fields in sorted(limits.items()):
                for attr, value in (("limit", int(fields["burst"])),
                                    ("mode", MODE_NUMBER[fields["mode"]])):
                    old = raw.get(name, {}).get(attr)
                    if old != str(value):
                        self._set(name, attr, value)
                        done.append((name, attr, old or "0"))
        except HAProxyError:
            for name, attr, old in reversed(done):  # best effort; the journal says "nothing"
                try:
                    self._set(name, attr, int(old))
                except HAProxyError:
                    pass
            raise
        for name, attr, _ in done:
            value = int(limits[name]["burst"]) if attr == "limit" \
                else MODE_NUMBER[limits[name]["mode"]]
            self.desired.setdefault(name, {})[attr] = value

    async def replace(self, limits: dict[str, dict[str, Any]]) -> None:
        """``set map`` of each changed limit and mode; rolled back if HAProxy refuses one."""
        await runtime_call(self._replace, limits)

    # ---------------------------------------------------------------- reloads
    def _reconcile(self) -> list[dict[str, Any]]:
        pid = self.client.show_info()["Pid"]
        fresh = pid != self._pid
        old_pid, self._pid = self._pid, pid
        _, raw = self._read()
        drift = [{"limit": n, "field": a, "desired": v, "actual": raw.get(n, {}).get(a)}
                 for n, want in sorted(self.desired.items()) for a, v in sorted(want.items())
                 if raw.get(n, {}).get(a) != str(v)]
        events: list[dict[str, Any]] = []
        if fresh and self.reapply and drift:
            why = (f"haproxy reloaded (pid {old_pid} -> {pid}); restoring desired limits"
                   if old_pid else "agent start: restoring desired limits from the journal")
            for d in drift:
                result, detail = ACCEPTED, ""
                try:
                    self._set(d["limit"], d["field"], d["desired"])
                except HAProxyError as err:
                    result, detail = "refused", f"re-apply failed: {err}"
                events.append({"who": "trimtab-agent", "what": LIMITS_PREFIX + d["limit"],
                               "old": {d["field"]: d["actual"]},
                               "new": {d["field"]: d["desired"]}, "reason": why,
                               "result": result, "detail": detail})
            _, raw = self._read()
            drift = [d for d in drift if raw.get(d["limit"], {}).get(d["field"])
                     != str(d["desired"])]
        self.drift = drift
        return events

    async def reconcile(self) -> list[dict[str, Any]]:
        """Re-apply desired map values after a reload (or at start); journal-ready events."""
        return await runtime_call(self._reconcile)

    def extra(self) -> dict[str, Any]:
        """The map, each limit's period, drift and map problems."""
        return {"store": "haproxy", "store_errors": 0, "map": self.map_path,
                "counts_table": self.counts_table, "period_seconds": dict(self._periods),
                "drift": list(self.drift), "map_problems": list(self.map_problems),
                "note": "HAProxy: N requests per period (burst N, rate N/period); limits are "
                        "created, deleted, re-routed and re-keyed in its config only"}
