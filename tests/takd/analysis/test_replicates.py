"""keras_takd.takd.analysis.replicates on synthetic seeds with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from keras_takd.takd.analysis import replicates


def _seeds(between_sd, k=6, n=80, mean=0.05, within_sd=0.2, rng_seed=0):
    """k seeds of n per-image differences: seed means spread by `between_sd` around `mean`."""
    rng = np.random.default_rng(rng_seed)
    centres = mean + between_sd * rng.standard_normal(k)
    return [c + within_sd * rng.standard_normal(n) for c in centres]


def test_the_t_interval_is_scipy_t_over_the_seed_means():
    samples = _seeds(0.04)
    level = replicates.seed_level(samples, n_resamples=500)
    means = np.array([s.mean() for s in samples])
    low, high = stats.t.interval(0.95, len(means) - 1, loc=means.mean(), scale=stats.sem(means))
    assert (level.t_low, level.t_high) == pytest.approx((low, high))
    assert level.estimate == pytest.approx(means.mean())
    assert level.p_value == pytest.approx(stats.ttest_1samp(means, 0.0).pvalue)
    assert level.between_sd == pytest.approx(means.std(ddof=1))
    assert level.within_sd == pytest.approx(0.2, rel=0.1)  # the generator's within-seed SD
    assert (level.seeds, level.images) == (6, 480)


def test_the_two_level_bootstrap_widens_as_the_seeds_spread():
    widths = []
    for between_sd in (0.0, 0.05, 0.2):
        level = replicates.seed_level(_seeds(between_sd), n_resamples=2000)
        assert level.bootstrap_low < level.estimate < level.bootstrap_high
        widths.append(level.bootstrap_high - level.bootstrap_low)
    assert widths[0] < widths[1] < widths[2]
    # no spread between seeds: only the images' noise, about 2 x 1.96 x 0.2 / sqrt(480)
    assert widths[0] == pytest.approx(2 * 1.96 * 0.2 / math.sqrt(480), rel=0.25)


def test_the_bootstrap_is_reproducible_from_its_seed():
    samples = _seeds(0.05)
    first = replicates.seed_level(samples, seed=3, n_resamples=300)
    again = replicates.seed_level(samples, seed=3, n_resamples=300)
    other = replicates.seed_level(samples, seed=4, n_resamples=300)
    assert first == again and first.bootstrap_low != other.bootstrap_low


def test_one_seed_has_no_seed_level_interval_and_bad_input_is_named():
    level = replicates.seed_level([np.array([0.1, 0.3, 0.2])], n_resamples=100)
    assert level.estimate == pytest.approx(0.2) and level.seeds == 1
    assert math.isnan(level.t_low) and math.isnan(level.bootstrap_low)
    assert math.isnan(level.p_value) and math.isnan(level.between_sd)
    with pytest.raises(ValueError, match="sizes"):
        replicates.seed_level([np.array([0.1]), np.array([])])
    with pytest.raises(ValueError, match="finite"):
        replicates.seed_level([np.array([0.1, math.nan])])
    with pytest.raises(ValueError, match="ci_level"):
        replicates.seed_level([np.array([0.1, 0.2])], ci_level=95)


def _chains(effects, n=30, rng_seed=0):
    """Per-image rows of 3-model chains, one per (seed, T) of `effects`: {T: [student -
    teacher effect of each seed]}; the assistant sits halfway."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for t, per_seed in effects.items():
        for seed, effect in enumerate(per_seed):
            base = 1.5 + 0.3 * rng.standard_normal(n)
            for stage, role in enumerate(("teacher", "assistant", "student"), 1):
                distance = base + effect * (stage - 1) / 2 + 0.01 * rng.standard_normal(n)
                rows += [
                    {"dataset": "mnist", "temperature": t, "stage": stage, "role": role}
                    | {"attack": "l2", "image": i, "correct": True, "success": True}
                    | {"distance": d, "seed": seed}
                    for i, d in enumerate(distance)
                ]
    return pd.DataFrame(rows)


def test_seed_level_differences_per_t_with_holm_over_the_temperatures():
    table = replicates.seed_level_differences(
        _chains({1.0: [0.0, 0.01, -0.01, 0.0], 40.0: [0.1, 0.12, 0.09, 0.11]}), n_resamples=500
    )
    assert len(table) == 2 * 3  # 2 T x 3 comparisons
    row = table.set_index(["temperature", "comparison"]).loc[(40.0, "student - teacher")]
    assert row["estimate"] == pytest.approx(0.105, abs=0.01)
    assert row["seeds"] == 4 and row["images"] == 4 * 30
    assert set(row["seed_means"]) == {0, 1, 2, 3}
    assert row["t_low"] > 0.05 and row["bootstrap_low"] > 0.05
    family = table[table["comparison"] == "student - teacher"].sort_values("p_value")
    assert family["holm_p"].to_numpy() == pytest.approx(
        [
            min(1, 2 * family["p_value"].iloc[0]),
            max(2 * family["p_value"].iloc[0], family["p_value"].iloc[1]),
        ]
    )


def test_against_control_pairs_each_seed_with_its_own_chain_at_the_lowest_t():
    effects = {1.0: [0.04, 0.06, 0.05, 0.03], 40.0: [0.10, 0.07, 0.12, 0.02], 20.0: [0.05] * 3}
    table = replicates.seed_level_differences(_chains(effects), n_resamples=200)
    found = replicates.against_control(table).set_index(["comparison", "temperature"])
    assert set(found.index.get_level_values("temperature")) == {20.0, 40.0}
    assert (found["control"] == 1.0).all()
    row = found.loc[("student - teacher", 40.0)]
    at = table.set_index(["comparison", "temperature"])["seed_means"]
    expected = [
        at[("student - teacher", 40.0)][s] - at[("student - teacher", 1.0)][s] for s in range(4)
    ]
    assert list(row["seed_differences"].values()) == pytest.approx(expected)
    assert np.mean(expected) == pytest.approx(0.0325, abs=0.01)  # 0.0775 - 0.045
    scipy_t = stats.ttest_1samp(expected, 0.0)
    interval = scipy_t.confidence_interval(0.95)
    assert (row["low"], row["high"], row["p_value"]) == pytest.approx(
        (interval.low, interval.high, scipy_t.pvalue)
    )
    assert found.loc[("student - teacher", 20.0), "seeds"] == 3  # seed 3 has no T = 20 chain
    one_t = table[table["temperature"] == 40.0]
    assert replicates.against_control(one_t).empty


def _long_chains(slopes, stages=7, n=20, rng_seed=0):
    """Per-image rows of `stages`-model chains at T = 40, one per seed, each image's distance
    rising by the seed's slope a step."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed, slope in enumerate(slopes):
        base = 1.5 + 0.3 * rng.standard_normal(n)
        for stage in range(1, stages + 1):
            distance = base + slope * (stage - 1) + 0.01 * rng.standard_normal(n)
            rows += [
                {"dataset": "mnist", "temperature": 40.0, "stage": stage, "stages": stages}
                | {"role": "teacher" if stage == 1 else f"step {stage}", "attack": "fmn_l2"}
                | {"image": i, "correct": True, "success": True, "distance": d, "seed": seed}
                for i, d in enumerate(distance)
            ]
    return pd.DataFrame(rows)


def test_step_trend_gives_each_step_against_the_teacher_and_the_slope_per_seed():
    slopes = [0.01, 0.02, 0.0, 0.015]
    rows = _long_chains(slopes)
    found = replicates.step_trend(rows).set_index("step")
    assert list(found.index) == ["2", "3", "4", "5", "6", "7", "slope"]
    assert found.loc["7", "estimate"] == pytest.approx(6 * np.mean(slopes), abs=0.005)
    assert found.loc["7", "seeds"] == 4 and found.loc["7", "images"] == 4 * 20
    slope = found.loc["slope"]
    assert list(slope["seed_values"].values()) == pytest.approx(slopes, abs=0.003)
    per_seed = list(slope["seed_values"].values())
    scipy_t = stats.ttest_1samp(per_seed, 0.0)
    assert (slope["low"], slope["high"], slope["p_value"]) == pytest.approx(
        (*scipy_t.confidence_interval(0.95), scipy_t.pvalue)
    )
    unfinished = rows[~((rows["seed"] == 3) & (rows["stage"] > 5))]
    partial = replicates.step_trend(unfinished).set_index("step")
    assert partial.loc["slope", "seeds"] == 3  # seed 3 stopped at step 5: no slope
    assert partial.loc["5", "seeds"] == 4 and partial.loc["6", "seeds"] == 3
    three_models = _chains({40.0: [0.1, 0.1]})
    assert replicates.step_trend(three_models).empty


def test_a_step_is_the_t_interval_of_the_seed_means_and_float_columns_are_read():
    rows = _long_chains([0.01, 0.03, 0.02], stages=4)
    found = replicates.step_trend(rows).set_index("step")
    step = found.loc["4"]
    means = list(step["seed_values"].values())
    scipy_t = stats.ttest_1samp(means, 0.0)
    assert (step["low"], step["high"], step["p_value"]) == pytest.approx(
        (*scipy_t.confidence_interval(0.95), scipy_t.pvalue)
    )
    as_read = rows.astype({"stage": float, "stages": float})  # a CSV with an empty cell
    again = replicates.step_trend(as_read).set_index("step")
    assert list(again.index) == ["2", "3", "4", "slope"]
    assert again["estimate"].to_numpy() == pytest.approx(found["estimate"].to_numpy())
    one = replicates.step_trend(rows[rows["seed"] == 0]).set_index("step")
    assert one["low"].isna().all() and set(one["reason"]) == {replicates.FEWER_THAN_TWO_SEEDS}


def test_a_declared_comparison_is_interim_until_its_seeds_hold_both_models():
    trained = {0: ("teacher", "student"), 1: ("teacher", "student"), 2: ("teacher",)}
    rows = pd.DataFrame(  # seed 2's chain has not reached its student yet
        [{"seed": s, "temperature": 40.0, "role": r} for s, roles in trained.items() for r in roles]
    )
    seeds = replicates.seeds_with(rows, ("student", "teacher", 40.0))
    assert seeds == 2 and replicates.seeds_with(rows, ("student", "teacher", 1.0)) == 0
    assert replicates.is_interim(seeds, 3) and not replicates.is_interim(seeds, 2)
    assert not replicates.is_interim(seeds, None)  # declared for no number of seeds


def test_seeds_needed_is_the_fewest_whose_t_interval_is_narrow_enough():
    # issue 25's target: between-seed SD 0.04, a +-0.03 interval: t(0.975, 9) 0.04 / sqrt(10)
    assert replicates.seeds_needed(0.04, 0.03) == 10
    assert replicates.seeds_needed(0.0, 0.03) == 2  # an interval needs two seeds
    for sd, width in ((math.nan, 0.03), (-1.0, 0.03), (0.04, 0.0)):
        with pytest.raises(ValueError, match="between_sd|half_width"):
            replicates.seeds_needed(sd, width)


def test_perturbation_intervals_keep_each_seed_apart():
    rows = [
        {"dataset": "mnist", "temperature": 1.0, "stage": 1, "role": "teacher", "stages": 3}
        | {"seed": seed, "attack": "fmn_l2", "image": image, "correct": True, "success": True}
        | {"distance": 1.0 + seed + 0.01 * image}
        for seed in (0, 5)
        for image in range(20)
    ]
    table = replicates.perturbation_intervals_by_seed(pd.DataFrame(rows))
    assert list(table["seed"]) == [0, 5] and list(table["n"]) == [20, 20]
    np.testing.assert_allclose(table["estimate"], [1.095, 6.095])
    assert (table["low"] < table["estimate"]).all() and (table["estimate"] < table["high"]).all()
    one = replicates.perturbation_intervals_by_seed(pd.DataFrame(rows[:20]).drop(columns="seed"))
    assert list(one["seed"]) == [0] and one["estimate"].iloc[0] == pytest.approx(1.095)


def test_seed_values_equal_but_for_rounding_have_no_spread():
    rounded = [0.3 - 0.1, 0.2, 0.1 + 0.1]  # 0.19999999999999998, 0.2, 0.2
    found = replicates.seed_mean(rounded)
    assert found.reason == replicates.NO_SPREAD and math.isnan(found.p_value)
    assert replicates.seed_mean([0.2, 0.2 + 1e-6]).reason == ""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("student-teacher@40", ("student", "teacher", 40.0)),
        ("assistant-teacher@1", ("assistant", "teacher", 1.0)),
        ("last-teacher@40", ("last", "teacher", 40.0)),  # section VI's multi-step test
    ],
)
def test_a_declared_comparison_names_two_roles_and_a_t(text, expected):
    assert replicates.parse_comparison(text) == expected


@pytest.mark.parametrize(
    "text",
    ["teacher-student@40", "last-assistant@40", "student-teacher@0", "student-teacher", "x"],
)
def test_a_comparison_that_is_none_of_the_paper_s_is_refused_naming_those_that_are(text):
    with pytest.raises(ValueError, match="expected one of student-assistant@<T>.*last-teacher"):
        replicates.parse_comparison(text)


def test_seed_means_equal_but_for_rounding_have_no_p():
    """Equal seed means (0.1 + 0.2 is 0.30000000000000004) carry no test: a t-test reads
    the rounding as a firm effect (p 1e-32)."""
    same = [[0.1 + 0.2, 0.5], [0.3, 0.5], [0.3, 0.5]]
    level = replicates.seed_level(same)
    assert math.isnan(level.p_value) and level.estimate == pytest.approx(0.4)
    apart = replicates.seed_level([[0.3, 0.5], [0.31, 0.5], [0.29, 0.52]])
    assert 0 < apart.p_value < 0.01
