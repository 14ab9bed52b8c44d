"""Confidence intervals: Student's t over runs on hand-worked samples, and the bootstrap's behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from bench.report.stats import MIN_SAMPLES, bootstrap, bootstrap_difference, difference_t, mean_t


def test_mean_over_three_runs_has_students_t_interval() -> None:
    # mean 2, s = 1, s/sqrt(3) = 0.57735; t(0.975, 2 dof) = 4.302653 -> half-width 2.484138
    interval = mean_t([1.0, 2.0, 3.0])
    assert interval.value == 2.0 and interval.method == "t" and interval.n == 3
    assert interval.low == pytest.approx(-0.484138, abs=1e-5) and interval.high == pytest.approx(4.484138, abs=1e-5)


def test_one_run_gives_a_mean_but_no_interval() -> None:
    interval = mean_t([0.4])
    assert interval.value == 0.4 and not interval.known and "no interval" in str(interval)


def test_welch_difference_on_hand_worked_runs() -> None:
    # diff 3; each side's variance of the mean 1/3; se = 0.816497; Welch dof = (2/3)^2 / (2 * (1/3)^2 / 2) = 4;
    # t(0.975, 4) = 2.776445 -> half-width 2.266966
    diff = difference_t([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert diff.value == 3.0
    assert diff.low == pytest.approx(0.733034, abs=1e-5) and diff.high == pytest.approx(5.266966, abs=1e-5)
    assert not diff.contains(0.0)
    assert difference_t([1.0, 2.0, 3.0], [2.0, 1.0, 3.5]).contains(0.0)


def test_bootstrap_of_a_constant_sample_is_that_value() -> None:
    interval = bootstrap(np.full(50, 2.5), lambda x: np.quantile(x, 0.95, axis=-1))
    assert (interval.value, interval.low, interval.high) == (2.5, 2.5, 2.5)


def test_bootstrap_needs_enough_requests_for_an_interval() -> None:
    few = np.arange(MIN_SAMPLES["bootstrap"] - 1, dtype=float)
    interval = bootstrap(few, lambda x: np.median(x, axis=-1))
    assert interval.value == np.median(few) and not interval.known and interval.method == "none"


def test_bootstrap_median_interval_brackets_the_median_and_is_reproducible() -> None:
    values = np.arange(1.0, 101.0)  # median 50.5; the median of a resample of 100 rarely leaves 40..61
    a, b = (bootstrap(values, lambda x: np.median(x, axis=-1)) for _ in range(2))
    assert a == b  # seeded: the same figures every time
    assert a.value == 50.5 and 40 < a.low < 50.5 < a.high < 61


def test_bootstrap_difference_finds_a_known_shift_and_no_shift_where_there_is_none() -> None:
    rng = np.random.default_rng(1)
    base, same, shifted = rng.normal(1.0, 0.1, 200), rng.normal(1.0, 0.1, 200), rng.normal(1.5, 0.1, 200)
    median = lambda x: np.median(x, axis=-1)  # noqa: E731
    moved = bootstrap_difference(base, median, shifted, median)
    assert moved.contains(0.5) and not moved.contains(0.0)
    assert bootstrap_difference(base, median, same, median).contains(0.0)
