"""The statistics behind the verdicts (docs/verdicts.md): 95% t-intervals of paired differences (with Nadeau &
Bengio's correction for folds that share training data) and of regression slopes, the outcome an interval
gives, and Holm's correction over the parts of one claim."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # every interval of the report: two-sided 95% (a 5% significance level)
HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED = "holds", "contradicted", "inconclusive", "not measured"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED)


@dataclass(frozen=True)
class Interval:
    """An estimate and its 95% t-interval from `n` values (low and high NaN when n is too small)."""

    mean: float
    low: float
    high: float
    n: int
    se: float = math.nan  # the standard error behind the interval, and its degrees of freedom (for p-values)
    df: int = 0

    def above(self, threshold: float = 0.0) -> bool:
        return self.low > threshold  # False when NaN

    def below(self, threshold: float = 0.0) -> bool:
        return self.high < threshold

    def includes(self, value: float = 0.0) -> bool:
        """Whether `value` lies inside the interval (True when there is none: nothing is told apart)."""
        return not (self.above(value) or self.below(value))

    def outcome(self, side: str, threshold: float = 0.0) -> str:
        """HOLDS when the interval lies entirely on `side` ("above" or "below") of `threshold`, CONTRADICTED when
        entirely on the other side, else INCONCLUSIVE (also when there is no interval: fewer than two values)."""
        if side not in ("above", "below"):
            raise ValueError(f"side={side!r}; use above or below")
        on_side, other = (self.above, self.below) if side == "above" else (self.below, self.above)
        return HOLDS if on_side(threshold) else CONTRADICTED if other(threshold) else INCONCLUSIVE

    def p_value(self, threshold: float = 0.0) -> float:
        """The two-sided p-value of "the mean is `threshold`" (NaN without an interval; 0 or 1 at zero error)."""
        if math.isnan(self.se) or self.df < 1:
            return math.nan
        if self.se == 0:
            return 1.0 if self.mean == threshold else 0.0
        return float(2 * stats.t.sf(abs(self.mean - threshold) / self.se, self.df))

    def text(self, fmt: str = "+.4f", scale: float = 1.0, unit: str = "") -> str:
        """`mean [low, high]`, or `mean (n=1, no interval)`; each number followed by `unit`."""

        def number(x: float) -> str:
            return format(x * scale, fmt) + unit

        if math.isnan(self.low):
            return f"{number(self.mean)} (n={self.n}, no interval)"
        return f"{number(self.mean)} [{number(self.low)}, {number(self.high)}]"

    def as_dict(self) -> dict[str, float | int | None]:
        def plain(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), 6)

        return {"mean": plain(self.mean), "low": plain(self.low), "high": plain(self.high), "n": self.n}


def t_interval(values: Iterable[float], level: float = LEVEL, test_over_train: float = 0.0) -> Interval:
    """The mean of `values` (e.g. paired differences, one per fold) and its t-interval; n < 2: no interval.

    `test_over_train` > 0 is Nadeau & Bengio's corrected resampled t (2003): the variance of the mean is
    s²·(1/n + n_test/n_train) instead of s²/n, since resamples (folds) whose training sets overlap give
    correlated values; for K-fold cross-validation n_test/n_train = 1/(K − 1). Values that are all equal give
    a zero-width interval at their mean."""
    x = np.asarray(list(values), dtype=float)
    if not len(x):
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, len(x))
    se = float(x.std(ddof=1)) * math.sqrt(1 / len(x) + test_over_train)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * se
    return Interval(mean, mean - half, mean + half, len(x), se, len(x) - 1)


def slope_interval(x: Sequence[float], y: Sequence[float], level: float = LEVEL) -> Interval:
    """The least-squares slope of y on x and its t-interval (n − 2 degrees of freedom); n < 3: no interval."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xs)
    if n < 2 or np.ptp(xs) == 0:
        return Interval(math.nan, math.nan, math.nan, n)
    centred = xs - xs.mean()
    slope = float(centred @ (ys - ys.mean()) / (centred @ centred))
    if n < 3:
        return Interval(slope, math.nan, math.nan, n)
    residuals = ys - ys.mean() - slope * centred
    se = math.sqrt(float(residuals @ residuals) / (n - 2) / float(centred @ centred))
    half = float(stats.t.ppf(0.5 + level / 2, n - 2)) * se
    return Interval(slope, slope - half, slope + half, n, se, n - 2)


def combine(outcomes: Iterable[str]) -> str:
    """One verdict of several parts: CONTRADICTED if any part is, HOLDS if every part does, NOT_MEASURED without
    parts, else INCONCLUSIVE."""
    outcomes = [o for o in outcomes if o != NOT_MEASURED]
    if not outcomes:
        return NOT_MEASURED
    if CONTRADICTED in outcomes:
        return CONTRADICTED
    return HOLDS if all(o == HOLDS for o in outcomes) else INCONCLUSIVE


@dataclass(frozen=True)
class Part:
    """One part of a claim: its interval should lie on `side` of `threshold`. `fixed` is an outcome decided
    without a test (e.g. one side diverged on every fold), with `why`; such a part is not in Holm's family."""

    interval: Interval
    side: str = "above"
    threshold: float = 0.0
    fixed: str | None = None
    why: str = ""

    def text(self, fmt: str = "+.4f", scale: float = 1.0, unit: str = "") -> str:
        return self.why if self.fixed is not None else self.interval.text(fmt, scale, unit)


def holm(tests: Mapping[Hashable, Part], level: float = LEVEL) -> dict[Hashable, str]:
    """Each test's outcome, Holm-corrected over the tests of one claim (family-wise error 1 − `level`).

    The m tests with a p-value are sorted by it; the i-th smallest (from 0) is significant while
    p ≤ (1 − level)/(m − i), and a significant test holds or is contradicted by the side its mean lies on; the
    others are inconclusive, as is a test without a p-value. With one test this is its interval's outcome."""
    outcomes = {key: test.fixed or INCONCLUSIVE for key, test in tests.items()}
    ranked = sorted(
        ((p, key) for key, test in tests.items() if test.fixed is None
         for p in [test.interval.p_value(test.threshold)] if not math.isnan(p)),
        key=lambda item: item[0],
    )  # fmt: skip
    for i, (p, key) in enumerate(ranked):
        if p > (1 - level) / (len(ranked) - i):
            break
        test = tests[key]
        above = test.interval.mean > test.threshold
        outcomes[key] = HOLDS if above == (test.side == "above") else CONTRADICTED
    return outcomes
