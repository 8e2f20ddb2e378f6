"""Intervals and paired comparisons over seeds, shared by the tables, the figures and the guide.

Every study runs each configuration with several seeds; a seed fixes the data split and the initialisation, so two
configurations run with the same seed see the same data and are compared *paired by seed*.

- :func:`bootstrap_ci`: the mean over seeds and a 95 % percentile bootstrap interval of that mean.
- :func:`paired`: the mean over shared seeds of ``b - a`` with its bootstrap interval; the difference is "within
  noise" when the interval covers 0.

The bootstrap draws from a fixed seed, so a table regenerated from the same CSV has the same intervals. With few
seeds (the quick profile runs 2-3) a percentile interval is narrow and optimistic: read it as a direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95
RESAMPLES = 4000
#: Fewer paired seeds than this give no verdict (a bootstrap over two values is just their range).
MIN_SEEDS = 3
INTERVAL_TEXT = "mean over seeds [95 % bootstrap interval]"


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` seeds with a bootstrap interval ``[low, high]`` (NaN bounds for a single seed)."""

    mean: float
    low: float
    high: float
    n: int

    def covers(self, value: float) -> bool:
        return not (self.low > value or self.high < value)

    def text(self, digits: int = 3) -> str:
        fmt = f"{{:.{digits}g}}"
        if math.isnan(self.mean):
            return "n/a"
        if math.isnan(self.low):
            return fmt.format(self.mean)
        return f"{fmt.format(self.mean)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def bootstrap_ci(values, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """Mean of ``values`` (NaNs dropped) with a percentile bootstrap interval of the mean at ``level``."""
    x = np.asarray(pd.Series(values, dtype=float).dropna(), dtype=float)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if x.size == 1:
        return Interval(float(x[0]), math.nan, math.nan, 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(x.mean()), float(low), float(high), int(x.size))


@dataclass(frozen=True)
class Paired:
    """``b - a`` paired by seed: its mean and interval over the seeds both ran, and the verdict."""

    diff: Interval
    a_mean: float
    b_mean: float

    @property
    def within_noise(self) -> bool:
        return self.diff.n < MIN_SEEDS or self.diff.covers(0.0)

    @property
    def ratio(self) -> float:
        return self.b_mean / self.a_mean if self.a_mean else math.nan

    def verdict(self, a: str, b: str, lower_is_better: bool = True) -> str:
        """``"within noise"`` or which of ``a`` and ``b`` is better (``"too few seeds"`` below :data:`MIN_SEEDS`)."""
        if self.diff.n < MIN_SEEDS:
            return "too few seeds"
        if self.within_noise:
            return "within noise"
        b_lower = self.diff.mean < 0
        return f"{b if b_lower == lower_is_better else a} better"


def paired(a: pd.Series, b: pd.Series, **kwargs) -> Paired:
    """Compare two per-seed series (index = seed) on the seeds both have."""
    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    seeds = a.index.intersection(b.index)
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError("paired comparison needs one value per seed on each side; aggregate repeats first")
    return Paired(bootstrap_ci(b[seeds] - a[seeds], **kwargs), float(a[seeds].mean()), float(b[seeds].mean()))
