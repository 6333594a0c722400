"""Latency bucket layout shared by the middleware and the balancer."""

from __future__ import annotations


def geometric_buckets(start: float = 0.001, stop: float = 10.0, factor: float = 1.25) -> tuple[float, ...]:
    """Upper bounds growing by ``factor``: each bucket is at most 25 % of its lower bound wide.

    That keeps any p99 between 1 ms and 10 s located within a bucket no wider
    than ~25 % of its value, which coarse default buckets (0.005, 0.01, ...) do not.
    """
    bounds: list[float] = []
    value = start
    while value < stop * factor:
        bounds.append(float(f"{value:.6g}"))
        value *= factor
    return tuple(bounds)


LATENCY_BUCKETS: tuple[float, ...] = geometric_buckets()
