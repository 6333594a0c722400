"""A Prometheus server as a source: ``query_range`` sized to the chart, and target health.

Async (one ``httpx.AsyncClient``, so it runs on the scrape engine's asyncio loop);
:class:`SyncPromAPI` wraps it for scripts and tests. Errors are :class:`PromAPIError`:
:class:`PromQueryError` when Prometheus answered ``"status": "error"`` (bad PromQL,
too many points, timeout; the message carries ``errorType`` and ``error``), and
:class:`PromHTTPError` for transport failures, non-JSON answers and HTTP errors
without a Prometheus error body.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt

from ..errors import plain_error

_T = TypeVar("_T")
MAX_POINTS = 11_000  # Prometheus refuses a range query with more points per series


class PromAPIError(RuntimeError):
    """A failed Prometheus API call; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PromQueryError(PromAPIError):
    """Prometheus answered ``{"status": "error"}``; ``error_type`` is its ``errorType``."""

    def __init__(self, error_type: str, error: str, status: int | None = None) -> None:
        super().__init__(f"Prometheus {error_type}: {error}", status)
        self.error_type = error_type
        self.error = error


class PromHTTPError(PromAPIError):
    """No usable answer: connection failure, timeout, HTTP error or a body that is not the API's."""


@dataclass(frozen=True)
class Step:
    """A range query's grid: ``start`` aligned to ``step``, ``points`` samples per series."""

    start: float
    end: float
    step: float

    @property
    def points(self) -> int:
        """Samples per series Prometheus returns for this grid (at most)."""
        return int((self.end - self.start) // self.step) + 1


@dataclass(frozen=True)
class Series:
    """One series of a matrix result; NaN and ±Inf values survive as floats."""

    metric: dict[str, str]
    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class RangeResult:
    """The series of one ``query_range`` call, the grid used, and Prometheus' warnings."""

    series: list[Series]
    step: Step
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """One active target from ``/api/v1/targets``."""

    scrape_url: str
    health: str  # "up" | "down" | "unknown"
    last_error: str
    last_scrape: datetime | None  # None before the first scrape
    last_scrape_duration: float
    labels: dict[str, str]
    scrape_pool: str


def choose_step(start: float, end: float, points: int, min_step: float = 1.0) -> Step:
    """``step = max(min_step, ceil((end - start) / points))``, start aligned down to it.

    Aligned steps let successive refreshes hit the same grid (stable charts and
    Prometheus' cache); the step is raised so that the grid holds at most
    :data:`MAX_POINTS` points, whatever ``points`` asked for.
    """
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(f"need finite start < end, got {start} .. {end}")
    if points < 1 or not min_step > 0:
        raise ValueError(f"need points >= 1 and min_step > 0, got {points}, {min_step}")
    span = end - start
    # Aligning start down adds at most one step, so span / step <= MAX_POINTS - 2 keeps the
    # grid within the limit; the step depends only on the span, so a sliding window keeps it.
    step = max(min_step, math.ceil(span / points), math.ceil(span / (MAX_POINTS - 2)))
    return Step(math.floor(start / step) * step, end, step)


class PromAPI:
    """Client of one Prometheus server's HTTP API (``base_url`` like ``http://prom:9090``)."""

    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None,
                 timeout: float = 10.0, min_step: float = 1.0,
                 headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.min_step = min_step
        self._own = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._headers = dict(headers or {})

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own:
            await self._client.aclose()

    async def query_range(self, query: str, start: float, end: float,
                          points: int = 1000) -> RangeResult:
        """Evaluate ``query`` over [start, end] (unix seconds) with about ``points`` steps."""
        grid = choose_step(start, end, points, self.min_step)
        body = await self._get("/api/v1/query_range", {
            "query": query, "start": _num(grid.start), "end": _num(grid.end),
            "step": _num(grid.step)})
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise PromHTTPError(f"query_range: expected a matrix result, got {_short(data)}")
        series = [_series(item) for item in _list(data.get("result"), "data.result")]
        return RangeResult(series, grid, [str(w) for w in body.get("warnings", [])])

    async def query(self, query: str, at: float | None = None) -> list[Series]:
        """Evaluate ``query`` at one instant (``at``, unix seconds; Prometheus' now if None).

        A vector answer gives one point per series (stamped with the evaluation time);
        a range selector (``x[30s]``) gives a matrix with the raw samples and the times
        Prometheus scraped them; a scalar is one series without labels.
        """
        params = {"query": query} if at is None else {"query": query, "time": _num(at)}
        data = (await self._get("/api/v1/query", params)).get("data")
        if not isinstance(data, dict):
            raise PromHTTPError(f"query: expected an object, got {_short(data)}")
        kind, result = data.get("resultType"), data.get("result")
        if kind == "matrix":
            return [_series(item) for item in _list(result, "data.result")]
        if kind == "vector":
            return [_series(_as_matrix_entry(item)) for item in _list(result, "data.result")]
        if kind == "scalar":
            return [_series({"metric": {}, "values": [result]})]
        raise PromHTTPError(f"query: expected a vector, matrix or scalar, got {_short(data)}")

    async def targets(self) -> list[Target]:
        """Active targets with their health, last error and last scrape time."""
        body = await self._get("/api/v1/targets", {"state": "active"})
        data = body.get("data")
        if not isinstance(data, dict):
            raise PromHTTPError(f"targets: expected an object, got {_short(data)}")
        try:
            return [_target(t) for t in _list(data.get("activeTargets"), "data.activeTargets")]
        except (KeyError, TypeError, ValueError) as exc:
            raise PromHTTPError(f"targets: malformed target entry ({exc!r})") from None

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = self.base_url + path
        try:
            reply = await self._client.get(url, params=params, headers=self._headers)
        except httpx.HTTPError as exc:
            # The words a failed scrape uses ("connection refused", "timed out"), not httpx's
            # "ConnectError: All connection attempts failed"; the URL says which call.
            raise PromHTTPError(f"{plain_error(exc)} ({url})") from None
        try:
            body = reply.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            raise PromQueryError(str(body.get("errorType", "error")), str(body.get("error", "")),
                                 reply.status_code)
        if reply.status_code >= 400:
            raise PromHTTPError(f"{url}: HTTP {reply.status_code}: {reply.text[:200]!r}",
                                reply.status_code)
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PromHTTPError(f"{url}: not a Prometheus API answer: {reply.text[:200]!r}",
                                reply.status_code)
        return body


class SyncPromAPI:
    """Blocking wrapper for scripts and tests: each call runs on its own short event loop."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self._args = (base_url, options)

    def query_range(self, query: str, start: float, end: float, points: int = 1000) -> RangeResult:
        """See :meth:`PromAPI.query_range`."""
        async def call(api: PromAPI) -> RangeResult:
            return await api.query_range(query, start, end, points)
        return asyncio.run(self._run(call))

    def query(self, query: str, at: float | None = None) -> list[Series]:
        """See :meth:`PromAPI.query`."""
        async def call(api: PromAPI) -> list[Series]:
            return await api.query(query, at)
        return asyncio.run(self._run(call))

    def targets(self) -> list[Target]:
        """See :meth:`PromAPI.targets`."""
        async def call(api: PromAPI) -> list[Target]:
            return await api.targets()
        return asyncio.run(self._run(call))

    async def _run(self, call: Callable[[PromAPI], Awaitable[_T]]) -> _T:
        api = PromAPI(self._args[0], **self._args[1])
        try:
            return await call(api)
        finally:
            await api.aclose()


def _num(value: float) -> str:
    """Seconds as Prometheus reads them (no exponent, no trailing ``.0`` noise)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _short(value: object) -> str:
    return repr(value)[:120]


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PromHTTPError(f"{where}: expected a list, got {_short(value)}")
    return value


def _series(item: object) -> Series:
    """One matrix entry; values are strings ("NaN", "+Inf") so that no float is lost."""
    try:
        metric = {str(k): str(v) for k, v in item["metric"].items()}  # type: ignore[index]
        pairs = item["values"]  # type: ignore[index]
        ts = np.fromiter((float(p[0]) for p in pairs), np.float64, len(pairs))
        vals = np.fromiter((float(p[1]) for p in pairs), np.float64, len(pairs))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise PromHTTPError(f"query: malformed series {_short(item)} ({exc!r})") from None
    return Series(metric, ts, vals)


def _as_matrix_entry(item: object) -> object:
    """A vector entry (``{"metric", "value"}``) as a one-point matrix entry."""
    if isinstance(item, dict) and "value" in item:
        return {"metric": item.get("metric"), "values": [item["value"]]}
    return item


def _target(item: dict[str, Any]) -> Target:
    raw = str(item.get("lastScrape") or "")
    # Prometheus writes RFC 3339 with nanoseconds; fromisoformat takes at most microseconds.
    last: datetime | None = None
    if raw and not raw.startswith("0001-01-01"):
        last = datetime.fromisoformat(_trim_fraction(raw))
    return Target(str(item["scrapeUrl"]), str(item["health"]), str(item.get("lastError", "")),
                  last, float(item.get("lastScrapeDuration", 0.0)),
                  {str(k): str(v) for k, v in item.get("labels", {}).items()},
                  str(item.get("scrapePool", "")))


def _trim_fraction(stamp: str) -> str:
    """``2024-01-01T00:00:00.123456789+01:00`` → six fraction digits, ``Z`` as ``+00:00``."""
    stamp = stamp.replace("Z", "+00:00")
    if "." not in stamp:
        return stamp
    head, rest = stamp.split(".", 1)
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[:min(digits, 6)]:0<6}{rest[digits:]}"
