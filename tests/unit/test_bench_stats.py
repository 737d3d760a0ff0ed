import pytest

from bench.stats import fitted_slope, percentile, projected_at


def test_nearest_rank_percentiles_are_observed_values() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0, 3.0, 5.0], 50) == 5


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_slope_is_the_least_squares_fit() -> None:
    assert fitted_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2)
    assert fitted_slope([(0, 1), (1, 2), (2, 2), (3, 3)]) == pytest.approx(0.6)
    assert fitted_slope([(5, 1), (5, 9)]) == 0
    assert fitted_slope([(5, 1)]) == 0


def test_growth_is_fitted_past_the_warm_up_and_continued_from_the_last_point() -> None:
    # Warm-up jump to 100 by x=5, then 1 per unit: at x=20 it is 100 + 15 = 115.
    points = [(0.0, 10.0), (5.0, 100.0), (7.0, 102.0), (10.0, 105.0)]
    assert projected_at(points, 20, fit_from=5) == pytest.approx(115)


def test_projection_never_shrinks_and_uses_a_measurement_it_has() -> None:
    assert projected_at([(0.0, 100.0), (10.0, 99.0)], 100, fit_from=0) == 99
    assert projected_at([(0.0, 100.0), (10.0, 110.0)], 10, fit_from=0) == 110
