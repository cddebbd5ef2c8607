"""keras_takd.takd.analysis.statistics: which images count."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from keras_takd.takd.analysis import statistics


def test_an_all_misclassified_model_counts_no_image():
    rows = pd.DataFrame(
        {
            "dataset": "mnist",
            "temperature": 1.0,
            "stage": [1, 1, 2, 2],
            "role": ["teacher", "teacher", "student", "student"],
            "attack": "l2",
            "image": [0, 1, 0, 1],
            "correct": [True, True, False, False],
            "success": [True, True, False, False],
            "distance": [1.0, 2.0, math.nan, math.nan],
        }
    )
    table = statistics.model_robustness(rows).set_index("stage")
    assert table.loc[1, "fooled"] == 2 and table.loc[2, "fooled"] == 0
    assert table.loc[2, "attacked"] == 0 and math.isnan(table.loc[2, "distance"].estimate)
    assert len(statistics.fooled(rows[rows["stage"] == 2])) == 0


def test_with_several_attacks_each_image_takes_the_smallest_found_by_attacks_run_on_every_model():
    def rows(stage, attack, distances, success=(True, True, True)):
        return pd.DataFrame(
            {
                "dataset": "mnist",
                "temperature": 1.0,
                "stage": stage,
                "role": {1: "teacher", 3: "student"}[stage],
                "attack": attack,
                "image": range(len(distances)),
                "correct": True,
                "success": list(success)[: len(distances)],
                "distance": distances,
            }
        )

    images = pd.concat(
        [
            rows(1, "fmn_l0", [10.0, 12.0, 9.0]),
            rows(3, "fmn_l0", [11.0, 12.0, 8.0]),
            rows(1, "l0", [8.0, 14.0]),  # C&W on the first 2 images, the teacher's better
            rows(3, "l0", [13.0, 5.0], success=(True, False)),  # failed on image 1
        ]
    )
    table = statistics.model_distances(images, [(1.0, 1), (1.0, 3)])
    assert table[(1.0, 1)].tolist() == [8.0, 12.0, 9.0]  # C&W's 8 beats FMN's 10
    assert table[(1.0, 3)].tolist() == [11.0, 12.0, 8.0]  # C&W's 5 did not fool: FMN's 12
    # The student's C&W rows are gone: on every image only FMN ran on both models.
    only_teacher = images[~((images["attack"] == "l0") & (images["stage"] == 3))]
    table = statistics.model_distances(only_teacher, [(1.0, 1), (1.0, 3)])
    assert table[(1.0, 1)].tolist() == [10.0, 12.0, 9.0]
    one = statistics.model_distances(images[images["attack"] == "fmn_l0"], [(1.0, 1), (1.0, 3)])
    assert one.equals(table)  # one attack: its own distances, as before


def test_attack_ratios_compare_two_attacks_on_the_images_both_fooled_per_model():
    rng = np.random.default_rng(3)
    rows = []
    for stage, scale in ((1, 0.9), (3, 1.0)):
        cw = rng.uniform(8, 14, 60)
        for attack, distances in (("l0", cw), ("fmn_l0", np.round(cw * scale))):
            for image, distance in enumerate(distances):
                rows.append(
                    {"dataset": "mnist", "temperature": 40.0, "stage": stage}
                    | {"role": {1: "teacher", 3: "student"}[stage], "attack": attack}
                    | {"image": image, "correct": True, "success": image != 5 or attack == "l0"}
                    | {"distance": distance}
                )
    table = statistics.attack_ratios(pd.DataFrame(rows), "fmn_l0", "l0").set_index("stage")
    assert table["n"].tolist() == [59, 59]  # FMN failed on image 5
    assert table.loc[1, "ratio"].estimate == pytest.approx(0.9, abs=0.01)
    assert table.loc[1, "ratio"].high < 1 < table.loc[3, "ratio"].high
    assert table.loc[1, "at_or_below"] == 59
    assert table.loc[1, "fmn_l0"] == pytest.approx(
        table.loc[1, "ratio"].estimate * table.loc[1, "l0"]
    )


def test_holm_matches_the_step_down_rule_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    adjusted = statistics.holm([0.04, 0.01, 0.03])
    assert adjusted == pytest.approx([0.06, 0.03, 0.06])
    assert statistics.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    nan_kept = statistics.holm([0.01, math.nan])
    assert nan_kept[0] == pytest.approx(0.01) and math.isnan(nan_kept[1])  # m counts known p
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        statistics.holm([1.5])


def test_the_p_beside_a_mean_tests_the_mean_and_wilcoxon_stays_secondary():
    rng = np.random.default_rng(0)
    # skewed differences: mean > 0, median < 0, so the two tests disagree
    d = np.concatenate([np.full(30, -0.1), rng.uniform(0.5, 1.5, 12)])
    result = statistics.paired_mean_test(d, np.zeros_like(d))
    assert result.difference.p_value == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)
    assert result.wilcoxon_p == pytest.approx(stats.wilcoxon(d).pvalue)
    assert result.p_value == result.difference.p_value  # no family yet
    family = dataclasses.replace(result, holm_p=0.5)
    assert family.p_value == 0.5
    assert statistics.paired_mean_test([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    assert math.isnan(statistics.paired_mean_test([2.0, 2.0], [1.0, 1.0]).p_value)


def _two_models(seed_column=None):
    rows = []
    for seed in seed_column or [None]:
        for stage, role in ((1, "teacher"), (2, "assistant"), (3, "student")):
            for image in range(4):
                row = {"dataset": "mnist", "temperature": 1.0, "stage": stage, "role": role}
                rows.append(
                    row
                    | {"attack": "l2", "image": image, "correct": True, "success": True}
                    | {"distance": 1.0 + image + 0.1 * stage + (seed or 0)}
                    | ({} if seed is None else {"seed": seed})
                )
    return pd.DataFrame(rows)


def test_image_differences_are_later_minus_earlier_and_never_mix_seeds():
    one = statistics.image_differences(_two_models(), [("student", "teacher")])
    assert set(one["seed"]) == {0}  # no seed column: seed 0
    assert one["difference"].to_numpy() == pytest.approx([0.2] * 4)
    two = statistics.image_differences(_two_models([3, 7]))
    assert len(two) == 2 * 2 * 4  # 2 seeds x 2 neighbour pairs x 4 images
    assert two["difference"].to_numpy() == pytest.approx([0.1] * 16)
    assert "seed" in statistics.paired_differences(_two_models([3, 7])).columns


def test_paired_accuracy_is_mcnemar_exact_on_the_discordant_images():
    # 1,000 images: both right on 960, only a on 20, only b on 5, both wrong on 15
    a = np.r_[np.ones(960), np.ones(20), np.zeros(5), np.zeros(15)].astype(bool)
    b = np.r_[np.ones(960), np.zeros(20), np.ones(5), np.zeros(15)].astype(bool)
    rows = []
    for stage, correct in ((1, b), (2, a)):
        rows += [
            {"dataset": "mnist", "temperature": 1.0, "stage": stage, "role": "x", "stages": 2}
            | {"image": i, "label": 3, "prediction": 3 if c else 4}
            for i, c in enumerate(correct)
        ]
    pairs = {"a - b": ((1.0, 2), (1.0, 1)), "b - a": ((1.0, 1), (1.0, 2))}
    tests = statistics.paired_accuracy_tests(pd.DataFrame(rows), pairs)
    test = tests["a - b"]
    assert test.discordant == (20, 5)
    assert test.difference.estimate == pytest.approx(0.015)
    assert test.difference.p_value == pytest.approx(stats.binomtest(20, 25).pvalue)
    assert test.difference.low < 0.015 < test.difference.high
    assert test.holm_p == pytest.approx(min(1.0, 2 * test.difference.p_value))
    assert tests["b - a"].difference.estimate == pytest.approx(-0.015)
