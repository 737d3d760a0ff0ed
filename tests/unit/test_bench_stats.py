import pytest

from bench.stats import percentile, projected_peak


def test_nearest_rank_percentiles_are_observed_values() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0, 3.0, 5.0], 50) == 5


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_growth_per_batch_is_projected_linearly() -> None:
    # 100 after batch 1, 104 after batch 3: 2 per batch, so 118 after batch 10.
    assert projected_peak([100, 103, 104], 10) == pytest.approx(118)


def test_projection_never_shrinks_and_uses_measurements_when_it_has_them() -> None:
    assert projected_peak([100, 99], 10) == 99
    assert projected_peak([100, 101, 102], 2) == 101
    assert projected_peak([100], 10) == 100
