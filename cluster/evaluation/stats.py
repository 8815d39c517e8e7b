"""Summaries of per-case numbers: means, percentiles, and paired bootstrap intervals for route differences."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that apply (None = not applicable); None when none does."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]) of the values; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Difference:
    """b - a over the cases both routes scored, with a bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    cases: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0: a difference inside the interval is reported as none."""
        return self.low > 0 or self.high < 0


def paired_difference(a: Sequence[float | None], b: Sequence[float | None], confidence: float = 0.95,
                      resamples: int = 2000, seed: int = 0) -> Difference | None:
    """Mean of b - a per case (cases where either is None are left out), with a percentile bootstrap interval.
    Seeded, so the same measurements always give the same interval. None with fewer than two paired cases."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 2:
        return None
    diffs = [y - x for x, y in pairs]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2 * 100
    low, high = percentile(means, tail), percentile(means, 100 - tail)
    assert low is not None and high is not None
    return Difference(mean=sum(diffs) / n, low=low, high=high, cases=n)
