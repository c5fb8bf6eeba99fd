"""Percentiles and trends, in plain Python (the figures are few; no numpy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    return _rank(sorted(values), p)


def percentiles(values: Sequence[float], ps: Sequence[float] = (50, 95, 99)) -> dict[str, float | None]:
    ordered = sorted(values)
    return {f"p{p:g}": _rank(ordered, p) for p in ps}


def _rank(ordered: Sequence[float], p: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def trend(points: Sequence[tuple[float, float]], tolerance: float) -> dict[str, object]:
    """Does y grow over x? Both tests must say so: the least-squares line rises by more
    than `tolerance` over the span, and the mean of the last third exceeds the mean of
    the first third by more than `tolerance`. One noisy sample moves neither much; a
    leak or a backlog that keeps growing moves both."""
    if len(points) < 3:
        return {"verdict": "too few samples", "growth": None, "slope_per_hour": None}
    span = points[-1][0] - points[0][0]
    rise = slope(points) * span
    third = max(1, len(points) // 3)
    first = sum(y for _, y in points[:third]) / third
    last = sum(y for _, y in points[-third:]) / third
    growing = rise > tolerance and (last - first) > tolerance
    return {
        "verdict": "growing" if growing else "flat",
        "growth": rise,
        "first_third_mean": first,
        "last_third_mean": last,
        "slope_per_hour": slope(points) * 3600,
        "tolerance": tolerance,
    }
