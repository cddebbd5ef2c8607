"""Estimates with their uncertainty: bootstrap intervals, paired tests and honest verdicts.

Every comparison the package reports is an `Estimate`: the value, its confidence interval and
the number of observations it rests on (plus a p-value where a test applies). Models are
compared image by image on the same images (paired designs), with `scipy.stats`:

* `mean_interval`: the mean of per-image values, with a BCa bootstrap interval
  (`scipy.stats.bootstrap`);
* `ratio_of_means`: mean(a) / mean(b) of two attacks on the same images, with a paired BCa
  bootstrap interval;
* `paired_difference`: mean(a - b) over images, a bootstrap interval resampling images, and
  the Wilcoxon signed-rank p-value (`scipy.stats.wilcoxon`);
* `paired_rate_difference`: the difference of two success rates on the same images, a
  bootstrap interval, and McNemar's exact test (the binomial test of the discordant pairs,
  `scipy.stats.binomtest`);
* `trend`: the mean over images of Spearman's rho between a level (T, or the chain's step)
  and the image's values at those levels, with a bootstrap interval resampling images (the
  same images at every level);
* `verdict`: "agrees" when the interval lies wholly on the claimed side, "disagrees" when it
  lies wholly on the other side, "inconclusive" otherwise.

Degenerate data decide nothing: fewer than `min_images` observations (6 at 95%), or no spread
(every image gives the same value, so a bootstrap or Wald interval has width 0), give no
interval and no p-value, and the verdict "inconclusive (too few images)" or "inconclusive (no
spread)" (`Estimate.reason`, `insufficient`). Every bootstrap takes a fixed seed, so a table
recomputed from the same data is the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 9999
_BATCH_VALUES = 2**22  # resampled values held at once by a bootstrap (32 MB of float64)
AGREES, DISAGREES, INCONCLUSIVE, NO_DATA = "agrees", "disagrees", "inconclusive", "no data"
VERDICTS = (AGREES, DISAGREES, INCONCLUSIVE, NO_DATA)
TOO_FEW_IMAGES = "too few images"
"""`Estimate.reason` when it rests on fewer than `min_images(confidence)` observations."""
NO_SPREAD = "no spread"
"""`Estimate.reason` when every observation is the same: an interval would have width 0."""


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    return float(confidence)


def min_images(confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest images (or image pairs) an interval, a test and a verdict may rest on.

    Chosen from the power of the paired tests: with n pairs all differing in the same
    direction, the two-sided Wilcoxon signed-rank test and McNemar's exact test both give their
    smallest p-value, 2 / 2**n. Below the n where that falls under 1 - confidence neither test
    can ever reject "no difference", and a bootstrap interval that excludes 0 would be a
    verdict no test supports. At 95%: 2 / 2**5 = 0.0625, 2 / 2**6 = 0.031, so 6.
    """
    alpha = 1 - _check_confidence(confidence)
    return max(2, math.ceil(1 - math.log2(alpha) + 1e-12))


MIN_IMAGES = min_images(DEFAULT_CONFIDENCE)
"""6: the fewest images (or pairs) a 95% interval and verdict rest on (see `min_images`)."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A statistic with its confidence interval.

    Attributes:
        estimate: the value on the data (NaN without data).
        low, high: the interval's bounds (NaN when it cannot be computed: see `reason`).
        n: the number of observations (images, or image pairs) it rests on.
        confidence: the interval's confidence level, e.g. 0.95.
        p_value: the two-sided p-value of the test against "no difference", where one applies
            (NaN where the interval is withheld for `reason`).
        reason: why the data decide nothing, `TOO_FEW_IMAGES` or `NO_SPREAD` (then low, high
            and p_value are NaN); "" otherwise.
    """

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE
    p_value: float = math.nan
    reason: str = ""

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, digits: int = 3) -> str:
        """E.g. "+0.042 [+0.011, +0.073], n = 187", or "+0.05 [no interval: no spread], n = 40"."""
        if math.isnan(self.estimate):
            return f"no data (n = {self.n})"
        if not math.isnan(self.low):
            ci = f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        else:
            ci = f" [no interval: {self.reason}]" if self.reason else " [no interval]"
        return f"{self.estimate:+.{digits}f}{ci}, n = {self.n}"


def _finite(values, name: str) -> np.ndarray:
    values = np.asarray(values, np.float64).ravel()
    if not np.isfinite(values).all():
        raise ValueError(
            f"{name} must be finite numbers, got {int((~np.isfinite(values)).sum())} not"
        )
    return values


def _withheld(values: np.ndarray, confidence: float) -> str:
    """Why `values` (finite, at least one) support no interval: `TOO_FEW_IMAGES`, `NO_SPREAD`,
    or "" when they do."""
    if len(values) < min_images(confidence):
        return TOO_FEW_IMAGES
    return NO_SPREAD if np.ptp(values) == 0 else ""


def _bootstrap_interval(data, statistic, confidence, seed, method, paired=False):
    # Resamples in batches of at most _BATCH_VALUES values: the same interval as one batch
    # (the same random stream), in bounded memory for 10,000 test images.
    result = stats.bootstrap(
        data,
        statistic,
        n_resamples=DEFAULT_RESAMPLES,
        paired=paired,
        vectorized=True,
        confidence_level=confidence,
        method=method,
        rng=np.random.default_rng(seed),
        batch=max(1, _BATCH_VALUES // max(1, len(data[0]))),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_interval(
    values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE, seed: int = 0
) -> Estimate:
    """The mean of per-image values with a BCa bootstrap interval.

    Args:
        values: one value per image, finite.
        confidence: the interval's level.
        seed: the bootstrap's seed.

    Returns:
        An `Estimate`; without an interval (`Estimate.reason`) for fewer than
        `min_images(confidence)` values or values all the same.

    Raises:
        ValueError: a non-finite value or a confidence outside (0, 1).
    """
    confidence = _check_confidence(confidence)
    values = _finite(values, "values")
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(values.mean())
    reason = _withheld(values, confidence)
    if reason:
        return Estimate(mean, math.nan, math.nan, n, confidence, reason=reason)
    low, high = _bootstrap_interval((values,), np.mean, confidence, seed, "BCa")
    return Estimate(mean, low, high, n, confidence)


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = DEFAULT_CONFIDENCE, seed: int = 0
) -> Estimate:
    """mean(a - b) over paired observations (the same images under two models).

    The interval is a BCa bootstrap of the mean difference, resampling images; the p-value is
    the Wilcoxon signed-rank test of the differences (two-sided). Neither for fewer than
    `min_images(confidence)` pairs or one difference on every image (`mean_interval`).

    Args:
        a, b: per-image values of the two models, in the same image order, finite.
        confidence: the interval's level.
        seed: the bootstrap's seed.

    Raises:
        ValueError: different lengths, a non-finite value, or a bad confidence.
    """
    a, b = _finite(a, "a"), _finite(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair up image by image, got {len(a)} and {len(b)} values")
    difference = mean_interval(a - b, confidence, seed)
    if difference.n == 0 or difference.reason:
        return difference
    return dataclasses.replace(difference, p_value=float(stats.wilcoxon(a, b).pvalue))


def ratio_of_means(
    a: Sequence[float], b: Sequence[float], confidence: float = DEFAULT_CONFIDENCE, seed: int = 0
) -> Estimate:
    """mean(a) / mean(b) over paired observations (two attacks' distances on the same images),
    with a BCa bootstrap interval resampling the pairs (`scipy.stats.bootstrap`, paired).

    Args:
        a, b: per-image values, in the same image order, finite; b's mean must be > 0.
        confidence: the interval's level.
        seed: the bootstrap's seed.

    Returns:
        An `Estimate` (no p-value); without an interval for fewer than
        `min_images(confidence)` pairs or a ratio the same on every resample.

    Raises:
        ValueError: different lengths, a non-finite value, or a bad confidence.
    """
    confidence = _check_confidence(confidence)
    a, b = _finite(a, "a"), _finite(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair up image by image, got {len(a)} and {len(b)} values")
    if len(a) == 0 or b.mean() <= 0:
        return Estimate(math.nan, math.nan, math.nan, len(a), confidence)
    ratio = float(a.mean() / b.mean())
    reason = _withheld(a / np.where(b > 0, b, 1.0), confidence)
    if reason:
        return Estimate(ratio, math.nan, math.nan, len(a), confidence, reason=reason)

    def statistic(x, y, axis=-1):
        return np.mean(x, axis=axis) / np.mean(y, axis=axis)

    low, high = _bootstrap_interval((a, b), statistic, confidence, seed, "BCa", paired=True)
    return Estimate(ratio, low, high, len(a), confidence)


def paired_rate_difference(
    success_a: Sequence[bool],
    success_b: Sequence[bool],
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """rate(a) - rate(b) of two success indicators on the same images, with McNemar's test.

    The interval is a percentile bootstrap resampling images (BCa is unstable for 0/1 data);
    the p-value is McNemar's exact test: the binomial test of the discordant pairs (images
    where exactly one of the two succeeded) against p = 1/2. Neither for fewer than
    `min_images(confidence)` images or the same difference on every image (`Estimate.reason`).
    """
    a = np.asarray(success_a, bool).ravel()
    b = np.asarray(success_b, bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"success_a and success_b must pair up, got {len(a)} and {len(b)}")
    confidence = _check_confidence(confidence)
    n = len(a)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, confidence)
    difference = a.astype(float) - b.astype(float)
    estimate = float(difference.mean())
    reason = _withheld(difference, confidence)
    if reason:
        return Estimate(estimate, math.nan, math.nan, n, confidence, reason=reason)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p_value = float(stats.binomtest(only_a, only_a + only_b).pvalue)  # discordant pairs exist
    low, high = _bootstrap_interval((difference,), np.mean, confidence, seed, "percentile")
    return Estimate(estimate, low, high, n, confidence, p_value)


def proportion(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Estimate:
    """A proportion (e.g. an accuracy on n test images) with its Wilson score interval.

    Raises:
        ValueError: unless 0 <= successes <= n.
    """
    confidence = _check_confidence(confidence)
    successes, n = int(round(successes)), int(n)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n = {n}], got {successes}")
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, confidence)
    ci = stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    return Estimate(successes / n, float(ci.low), float(ci.high), n, confidence)


def proportion_difference(
    first: Estimate, second: Estimate, confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """first - second of two proportions measured on separate samples (an unpaired design).

    The normal-approximation (Wald) interval of the difference. On the SAME images a paired
    comparison (`paired_rate_difference`) is tighter; this one serves where only the rates and
    their counts are known, and errs on the wide side for positively correlated models. No
    interval where both rates are 0 or 1 (`NO_SPREAD`: the Wald interval would have width 0)
    or either rests on fewer than `min_images(confidence)` images.
    """
    confidence = _check_confidence(confidence)
    n = min(first.n, second.n)
    p1, p2 = first.estimate, second.estimate
    if n == 0:  # the rates without their counts: the difference, but no interval
        return Estimate(p1 - p2, math.nan, math.nan, 0, confidence)
    se = math.sqrt(p1 * (1 - p1) / first.n + p2 * (1 - p2) / second.n)
    reason = TOO_FEW_IMAGES if n < min_images(confidence) else NO_SPREAD if se == 0 else ""
    if reason:
        return Estimate(p1 - p2, math.nan, math.nan, n, confidence, reason=reason)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Estimate(p1 - p2, p1 - p2 - z * se, p1 - p2 + z * se, n, confidence)


def insufficient(estimate: Estimate) -> str | None:
    """The verdict of an estimate that cannot decide a claim, or None if it can.

    Returns:
        "no data" without an estimate; "inconclusive (too few images)" or "inconclusive (no
        spread)" when the data are too thin for an interval (`Estimate.reason`); "inconclusive"
        when the interval is missing for another cause (e.g. a rate without its count); None
        when the estimate has an interval to judge (one a caller put in place of a withheld
        one counts).
    """
    if math.isnan(estimate.estimate):
        return NO_DATA
    if math.isnan(estimate.low) or math.isnan(estimate.high):
        return f"{INCONCLUSIVE} ({estimate.reason})" if estimate.reason else INCONCLUSIVE
    return None


def within(estimate: Estimate, low: float, high: float) -> str:
    """The verdict on "the value lies in [low, high]": its interval inside, outside, or across
    (`insufficient` first)."""
    undecided = insufficient(estimate)
    if undecided:
        return undecided
    if low <= estimate.low and estimate.high <= high:
        return AGREES
    if estimate.high < low or estimate.low > high:
        return DISAGREES
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim made of parts: agrees / disagrees if every part does.

    Otherwise inconclusive, with the reason of its parts ("inconclusive (too few images)")
    when they share one and it alone stands in the way: the other parts all agree, or all
    disagree.
    """
    verdicts = [v for v in verdicts if v != NO_DATA]
    if not verdicts:
        return NO_DATA
    if all(v == AGREES for v in verdicts):
        return AGREES
    if all(v == DISAGREES for v in verdicts):
        return DISAGREES
    firm = {v for v in verdicts if v in (AGREES, DISAGREES)}
    open_ = {v for v in verdicts if v not in (AGREES, DISAGREES)}
    if len(firm) <= 1 and len(open_) == 1 and open_ != {INCONCLUSIVE}:
        return open_.pop()
    return INCONCLUSIVE


def trend(
    levels: Sequence[float],
    values: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """The mean over images of Spearman's rho between the levels and the image's values.

    For each image (row) the rank correlation between the levels (T, or the chain's step) and
    its values at those levels; then their mean, with a BCa bootstrap interval resampling
    images. Under "no trend" the levels are exchangeable within an image, so the mean rho is 0
    whatever the noise; a rho of the per-level MEANS would not do: with 3 levels it takes only
    5 values and its bootstrap interval sits around whatever order the noise gave the means.

    Args:
        levels: the k levels, e.g. temperatures [1, 20, 40] or chain steps [1, ..., 7].
        values: [n_images, k] per-image values, the same images at every level (rows with a
            missing value must be dropped by the caller).
        confidence: the interval's level.
        seed: the bootstrap's seed.

    Returns:
        An `Estimate` of the mean per-image rho, in [-1, 1], n = images.

    Raises:
        ValueError: fewer than 2 levels, or values not [n, len(levels)] and finite.
    """
    levels = np.asarray(levels, np.float64)
    values = np.asarray(values, np.float64)
    if len(levels) < 2 or values.ndim != 2 or values.shape[1] != len(levels):
        raise ValueError(
            f"values must be [n_images, {len(levels)}] for {len(levels)} levels (>= 2), got "
            f"shape {values.shape}"
        )
    _finite(values, "values")
    return mean_interval(np.atleast_1d(_rho(levels, values)), confidence, seed)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of two sequences (`scipy.stats.spearmanr`); 0 when `y` is constant."""
    y = np.asarray(y, np.float64)
    if np.ptp(y) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def _rho(levels: np.ndarray, means: np.ndarray):
    """Spearman's rho of levels and each curve in `means` [..., k] (0 for a constant curve).

    Spearman's rho is Pearson's r of the average ranks (`scipy.stats.rankdata`, ties sharing
    their mean rank), as `scipy.stats.spearmanr` computes it, vectorised over the curves.
    """
    x = stats.rankdata(levels)
    y = stats.rankdata(means, axis=-1)
    x, y = x - x.mean(), y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x**2).sum() * (y**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denominator > 0, (x * y).sum(axis=-1) / denominator, 0.0)
    return float(rho) if np.ndim(rho) == 0 else rho


def verdict(estimate: Estimate, claimed: str) -> str:
    """The three-way verdict on a claim about the sign of `estimate`.

    Args:
        estimate: the statistic whose sign the claim is about.
        claimed: "positive" (the claim says estimate > 0) or "negative" (< 0).

    Returns:
        "agrees": the interval lies wholly on the claimed side; "disagrees": wholly on the
        other side; "inconclusive": it contains 0 or could not be computed, "inconclusive (too
        few images)" / "inconclusive (no spread)" when the data are too thin for one
        (`insufficient`); "no data": no estimate at all.

    Raises:
        ValueError: for another `claimed`.
    """
    if claimed not in ("positive", "negative"):
        raise ValueError(f"claimed must be 'positive' or 'negative', got {claimed!r}")
    undecided = insufficient(estimate)
    if undecided:
        return undecided
    sign = 1 if claimed == "positive" else -1
    low, high = sorted((sign * estimate.low, sign * estimate.high))
    if low > 0:
        return AGREES
    if high < 0:
        return DISAGREES
    return INCONCLUSIVE
