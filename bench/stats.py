"""Small statistics the figures need: percentiles and growth projections."""

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was really observed."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def fitted_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x; 0 when x does not vary."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def projected_at(points: Sequence[tuple[float, float]], x: float, fit_from: float) -> float:
    """y at `x`, continuing the growth fitted on the points at or past `fit_from`.

    Peaks never shrink, so a negative fitted slope counts as no growth; past the last
    point the projection starts from the last measured value.
    """
    if not points:
        raise ValueError("no measured points")
    last_x, last_y = points[-1]
    if x <= last_x:
        return last_y
    slope = max(0.0, fitted_slope([p for p in points if p[0] >= fit_from]))
    return last_y + slope * (x - last_x)
