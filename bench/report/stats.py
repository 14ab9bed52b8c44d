"""How sure a figure is: confidence intervals for one run and for repeated runs, and for the difference of two.

A latency percentile is bootstrapped over requests (the requests of every repeat pooled): resample the
requests with replacement, take the percentile of each resample, and read the interval off those. A rate
(goodput, throughput, SLO attainment) is one number per run, so over repeats it gets Student's t interval
of the runs' mean, as AIPerf reports it; with a single run it falls back to a bootstrap over that run's
requests. Requests within one run are not independent (they queue behind each other), so a within-run
interval is narrower than the run-to-run spread: only repeats show that spread.

Below MIN_SAMPLES values (requests or runs) no interval is given, and the figure says so, as GuideLLM marks
figures whose interval is unavailable at the sample size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000
MIN_SAMPLES = {"bootstrap": 10, "t": 2}  # requests for a bootstrap interval, runs for a t interval
Method = Literal["bootstrap", "t", "none"]


class Interval(BaseModel):
    """An estimate and its confidence interval (None where the sample is too small for one)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = Field(description="requests (bootstrap) or runs (t) the interval rests on")
    method: Method = "none"

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    def contains(self, x: float) -> bool:
        return self.known and self.low <= x <= self.high  # type: ignore[operator]

    def __str__(self) -> str:
        if self.value is None:
            return "-"
        if not self.known:
            return f"{self.value:.4g} (n={self.n}: no interval)"
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"


# Reduces values along the last axis to one figure each (a percentile, a mean, a sum per second).
Reducer = Callable[[np.ndarray], np.ndarray]


def _bounds(draws: np.ndarray) -> tuple[float, float]:
    low, high = np.nanquantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def _resample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """BOOTSTRAP_RESAMPLES rows, each the values drawn with replacement."""
    return values[rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))]


def bootstrap(values: np.ndarray, reduce: Reducer, seed: int = 0) -> Interval:
    """The figure of `values` with a percentile-bootstrap interval over resamples of them."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return Interval(value=None, n=0)
    value = float(reduce(values))
    if len(values) < MIN_SAMPLES["bootstrap"]:
        return Interval(value=value, n=len(values))
    low, high = _bounds(reduce(_resample(values, np.random.default_rng(seed))))
    return Interval(value=value, low=low, high=high, n=len(values), method="bootstrap")


def bootstrap_difference(a: np.ndarray, reduce_a: Reducer, b: np.ndarray, reduce_b: Reducer,
                         seed: int = 0) -> Interval:
    """B's figure minus A's, each side resampled on its own (their reducers differ when, say, the runs'
    lengths do); `n` is the smaller side's count."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = min(len(a), len(b))
    if n == 0:
        return Interval(value=None, n=0)
    value = float(reduce_b(b) - reduce_a(a))
    if n < MIN_SAMPLES["bootstrap"]:
        return Interval(value=value, n=n)
    rng = np.random.default_rng(seed)
    low, high = _bounds(reduce_b(_resample(b, rng)) - reduce_a(_resample(a, rng)))
    return Interval(value=value, low=low, high=high, n=n, method="bootstrap")


def mean_t(values: list[float]) -> Interval:
    """The mean of per-run values with Student's t interval."""
    x = np.array([v for v in values if v is not None], dtype=float)
    if len(x) == 0:
        return Interval(value=None, n=0)
    mean = float(x.mean())
    if len(x) < MIN_SAMPLES["t"]:
        return Interval(value=mean, n=len(x))
    half = float(stats.t.ppf((1 + LEVEL) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Interval(value=mean, low=mean - half, high=mean + half, n=len(x), method="t")


def difference_t(a: list[float], b: list[float]) -> Interval:
    """B's mean minus A's with Welch's t interval (unequal variances) over the runs of each side."""
    xa, xb = (np.array([v for v in side if v is not None], dtype=float) for side in (a, b))
    if len(xa) == 0 or len(xb) == 0:
        return Interval(value=None, n=0)
    value, n = float(xb.mean() - xa.mean()), min(len(xa), len(xb))
    if n < MIN_SAMPLES["t"]:
        return Interval(value=value, n=n)
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = np.sqrt(va + vb)
    if se == 0:
        return Interval(value=value, low=value, high=value, n=n, method="t")
    dof = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    half = float(stats.t.ppf((1 + LEVEL) / 2, dof) * se)
    return Interval(value=value, low=value - half, high=value + half, n=n, method="t")
