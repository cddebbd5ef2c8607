"""keras_takd.core.statistics on hand-made samples whose answer is known."""

import math

import numpy as np
import pytest
from scipy import stats

from keras_takd.core import statistics as st


def test_a_shift_is_detected_with_its_size():
    rng = np.random.default_rng(0)
    b = rng.normal(1.6, 0.3, 200)
    a = b + 0.05 + rng.normal(0, 0.01, 200)  # every image about 0.05 more robust under a
    estimate = st.paired_difference(a, b)
    assert estimate.estimate == pytest.approx(0.05, abs=0.003)
    assert estimate.low < 0.05 < estimate.high and estimate.high - estimate.low < 0.005
    assert estimate.n == 200 and estimate.p_value < 1e-30
    assert st.verdict(estimate, "positive") == "agrees"
    assert st.verdict(estimate, "negative") == "disagrees"


def test_a_ratio_of_means_pairs_the_images_and_its_interval_covers_the_delta_method():
    rng = np.random.default_rng(9)
    b = rng.normal(1.6, 0.3, 400)  # C&W's distances, say
    a = b * 0.98 + rng.normal(0, 0.02, 400)  # FMN 2% below, image by image
    ratio = st.ratio_of_means(a, b)
    assert ratio.estimate == pytest.approx(a.mean() / b.mean())
    assert ratio.low < ratio.estimate < ratio.high
    # Delta method on the paired means: var(a - r b) / (n mean(b)^2).
    r = a.mean() / b.mean()
    half = stats.norm.ppf(0.975) * np.std(a - r * b, ddof=1) / (math.sqrt(400) * b.mean())
    assert ratio.half_width == pytest.approx(half, rel=0.2)
    assert ratio.high < 1.0  # paired: the 2% shows; unpaired, b's spread (19%) would hide it
    shuffled = st.ratio_of_means(a, rng.permutation(b))
    assert shuffled.half_width > 5 * ratio.half_width
    assert math.isnan(st.ratio_of_means(a[:3], b[:3]).low)  # too few images
    with pytest.raises(ValueError, match="pair up image by image"):
        st.ratio_of_means(a, b[:-1])


def test_a_symmetric_zero_mean_difference_is_inconclusive():
    noise = np.random.default_rng(1).normal(0, 0.2, 100)
    differences = np.concatenate([noise, -noise])  # exactly symmetric about 0
    estimate = st.paired_difference(differences, np.zeros(200))
    assert estimate.estimate == pytest.approx(0, abs=1e-12)
    assert estimate.low < 0 < estimate.high
    assert estimate.p_value == pytest.approx(1.0)
    assert st.verdict(estimate, "positive") == "inconclusive"


def test_a_real_effect_turns_from_inconclusive_to_agrees_as_n_grows():
    rng = np.random.default_rng(2)
    differences = rng.normal(0.04, 0.2, 2000)  # the size of the effects at stake
    verdicts = {
        n: st.verdict(st.paired_difference(differences[:n], np.zeros(n)), "positive")
        for n in (20, 2000)
    }
    assert verdicts == {20: "inconclusive", 2000: "agrees"}


def test_interval_matches_the_normal_theory_interval_on_a_large_sample():
    values = np.random.default_rng(3).normal(1.0, 0.5, 3000)
    estimate = st.mean_interval(values)
    half = stats.norm.ppf(0.975) * values.std(ddof=1) / math.sqrt(len(values))
    assert estimate.half_width == pytest.approx(half, rel=0.1)
    assert estimate.low < values.mean() < estimate.high


def test_the_bootstrap_is_seeded():
    values = np.random.default_rng(4).normal(size=50)
    assert st.mean_interval(values, seed=7) == st.mean_interval(values, seed=7)
    assert st.mean_interval(values, seed=7) != st.mean_interval(values, seed=8)


def test_trend_of_exchangeable_noise_contains_zero_and_a_real_trend_agrees():
    rng = np.random.default_rng(5)
    base = rng.normal(1.6, 0.3, (300, 1))
    flat = base + rng.normal(0, 0.1, (300, 3))  # T does not matter
    rising = flat + np.array([0.0, 0.05, 0.1])
    assert st.verdict(st.trend([1, 20, 40], flat), "positive") == "inconclusive"
    assert st.verdict(st.trend([1, 20, 40], rising), "positive") == "agrees"
    assert st.verdict(st.trend([1, 20, 40], rising[:, ::-1]), "positive") == "disagrees"


def test_rank_correlation_is_spearmans_rho():
    x, y = [1, 2, 5, 10], [3, 1, 2, 2]
    assert st.rank_correlation(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert st.rank_correlation(x, [0.0] * 4) == 0.0


def test_paired_rates_use_mcnemar_on_the_discordant_images():
    a = np.array([True] * 30 + [False] * 10 + [True] * 60)
    b = np.array([False] * 30 + [True] * 10 + [True] * 60)
    estimate = st.paired_rate_difference(a, b)
    assert estimate.estimate == pytest.approx(0.2)
    assert estimate.p_value == pytest.approx(stats.binomtest(30, 40).pvalue)
    assert st.verdict(estimate, "positive") == "agrees"


def test_proportions_and_their_difference():
    accuracy = st.proportion(9886, 10000)
    ci = stats.binomtest(9886, 10000).proportion_ci(method="wilson")
    assert (accuracy.low, accuracy.high) == pytest.approx((ci.low, ci.high))
    assert st.within(accuracy, 0.9888, 0.9988) == "inconclusive"  # the CI reaches below
    assert st.within(accuracy, 0.98, 1.0) == "agrees"
    assert st.within(accuracy, 0.992, 1.0) == "disagrees"
    unknown = st.proportion_difference(
        st.Estimate(0.99, math.nan, math.nan, 0), st.Estimate(0.98, math.nan, math.nan, 0)
    )
    assert unknown.estimate == pytest.approx(0.01) and st.verdict(unknown, "positive") == (
        "inconclusive"
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: st.paired_difference([1, 2], [1]), "pair up"),
        (lambda: st.mean_interval([1.0, math.nan]), "finite"),
        (lambda: st.mean_interval([1.0, 2.0], confidence=1.5), "confidence"),
        (lambda: st.trend([1], np.zeros((3, 1))), "levels"),
        (lambda: st.verdict(st.Estimate(1, 0, 2, 3), "up"), "claimed"),
        (lambda: st.proportion(11, 10), "successes"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_combine_needs_every_part():
    assert st.combine(["agrees", "agrees", "no data"]) == "agrees"
    assert st.combine(["agrees", "inconclusive"]) == "inconclusive"
    assert st.combine(["disagrees", "disagrees"]) == "disagrees"
    assert st.combine(["no data"]) == "no data"


def test_the_minimum_of_images_is_where_the_paired_tests_can_first_reject():
    """Below `MIN_IMAGES`, even if every image differs in the same direction, neither the
    Wilcoxon signed-rank test nor McNemar's exact test reaches p < 0.05; at it, both can."""
    fewer, enough = st.MIN_IMAGES - 1, st.MIN_IMAGES
    assert st.min_images(st.DEFAULT_CONFIDENCE) == st.MIN_IMAGES
    assert stats.wilcoxon(np.arange(1.0, fewer + 1)).pvalue >= 0.05
    assert stats.wilcoxon(np.arange(1.0, enough + 1)).pvalue < 0.05
    assert stats.binomtest(fewer, fewer).pvalue >= 0.05
    assert stats.binomtest(enough, enough).pvalue < 0.05
    assert st.min_images(0.99) > st.MIN_IMAGES  # a stricter level needs more images


@pytest.mark.parametrize(
    "a, b, reason",
    [
        ([1.0, 2.0], [2.0, 3.0], "too few images"),  # 2 images, one constant difference
        (np.arange(5.0), np.arange(5.0) + [0.1, 0.3, 0.2, 0.5, 0.4], "too few images"),
        (np.arange(50.0) + 1.0, np.arange(50.0), "no spread"),  # every difference +1
    ],
)
def test_too_few_images_or_no_spread_give_no_interval_and_no_firm_verdict(a, b, reason):
    estimate = st.paired_difference(a, b)
    assert estimate.n == len(a) and not math.isnan(estimate.estimate)
    assert math.isnan(estimate.low) and math.isnan(estimate.high)
    assert math.isnan(estimate.p_value) and estimate.reason == reason
    expected = f"inconclusive ({reason})"
    assert st.verdict(estimate, "positive") == st.verdict(estimate, "negative") == expected
    assert st.within(estimate, -10, 10) == expected
    assert f"[no interval: {reason}]" in estimate.format()


def test_rates_without_spread_or_with_too_few_images_give_no_interval():
    always = st.paired_rate_difference([True] * 40, [False] * 40)  # every pair discordant
    assert always.estimate == 1.0 and math.isnan(always.low) and always.reason == st.NO_SPREAD
    assert st.verdict(always, "positive") == "inconclusive (no spread)"
    few = st.paired_rate_difference([True, False, True], [False, False, True])
    assert math.isnan(few.low) and st.verdict(few, "positive") == "inconclusive (too few images)"
    # two proportions of separate samples, each all 0 or all 1: a Wald interval of width 0
    none = st.proportion_difference(st.proportion(25, 25), st.proportion(0, 25))
    assert none.estimate == 1.0 and math.isnan(none.low)
    assert st.verdict(none, "positive") == "inconclusive (no spread)"


def test_a_mean_or_trend_of_too_few_images_has_no_interval():
    assert st.mean_interval([1.0, 2.0, 4.0]).reason == st.TOO_FEW_IMAGES
    assert math.isnan(st.mean_interval([1.0, 2.0, 4.0]).low)
    assert st.mean_interval([1.0]).reason == st.TOO_FEW_IMAGES
    assert st.mean_interval([]).reason == "" and st.verdict(st.mean_interval([]), "positive") == (
        "no data"
    )
    rising = np.array([[1.0, 2.0, 3.0]] * 3)
    assert st.verdict(st.trend([1, 20, 40], rising), "positive") == "inconclusive (too few images)"


def test_combine_keeps_the_reason_only_if_it_alone_stands_in_the_way():
    too_few = "inconclusive (too few images)"
    assert st.combine([too_few, too_few]) == too_few
    assert st.combine(["agrees", too_few]) == too_few
    assert st.combine(["agrees", "disagrees", too_few]) == "inconclusive"
    assert st.combine(["inconclusive", too_few]) == "inconclusive"
    assert st.combine(["inconclusive (no spread)", too_few]) == "inconclusive"
