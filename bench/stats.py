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


def projected_peak(peaks: Sequence[float], batches: int) -> float:
    """Peak after `batches` batches, extrapolating the growth per batch seen so far.

    `peaks[i]` is the peak after batch i+1. Growth is taken from the first to the last
    measured batch (never negative: a peak cannot shrink); with one batch there is no slope.
    """
    if not peaks:
        raise ValueError("no measured peaks")
    if len(peaks) == 1 or batches <= len(peaks):
        return peaks[min(batches, len(peaks)) - 1]
    slope = max(0.0, (peaks[-1] - peaks[0]) / (len(peaks) - 1))
    return peaks[-1] + slope * (batches - len(peaks))
