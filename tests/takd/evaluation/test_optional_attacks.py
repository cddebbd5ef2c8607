"""The optional attacks of an evaluation (FMN, APGD): ids, columns, per-image rows, shards."""

import functools

import numpy as np
import pandas as pd
import pytest

from keras_takd.takd import evaluation, schema
from keras_takd.takd.analysis import tables
from keras_takd.takd.evaluation.config import config_id

OPTIONAL = ("fmn_l2", "fmn_l0", "apgd_ce", "apgd_dlr")
TINY = {
    "fmn_l2": {"steps": 20},
    "fmn_l0": {"steps": 20},
    "apgd_ce": {"steps": 5},
    "apgd_dlr": {"steps": 5, "eps": 0.2},
}


def test_ids_of_c_and_w_configurations_do_not_change():
    # Computed before the optional attacks existed: caches of earlier runs stay valid.
    default = evaluation.EvaluationConfig()
    assert config_id(default.identity("mnist", 10000)) == "545e3db6f3e1"
    custom = dict(
        attacks=("l2",),
        num_images=20,
        attack_options={"l2": {"max_iterations": 100}},
        budgets={"linf": 0.3},
        attack_images={"l0": 5},
    )
    assert config_id(evaluation.EvaluationConfig(**custom).identity("mnist", 10000)) == (
        "463a74fddbc0"
    )
    # Adding optional attacks at their defaults keeps the id (and the cached C&W units)...
    both = evaluation.EvaluationConfig(attacks=("l2", "fmn_l2", "apgd_dlr"))
    assert config_id(both.identity("mnist", 10000)) == "545e3db6f3e1"
    # ... while their non-default options enter it.
    changed = evaluation.EvaluationConfig(attack_options={"apgd_dlr": {"eps": 0.2}})
    identity = changed.identity("mnist", 10000)
    assert identity["optional_attack_options"] == {"apgd_dlr": {"eps": 0.2}}
    assert config_id(identity) != "545e3db6f3e1"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"attacks": ("fmn_l1",)}, "unknown attack"),
        ({"attack_options": {"fmn_l2": {"norm": "l0"}}}, "has no option"),
        ({"attack_options": {"apgd_ce": {"loss": "dlr"}}}, "has no option"),
    ],
)
def test_fixed_arguments_are_not_options(settings, message):
    with pytest.raises(ValueError, match=message):
        evaluation.EvaluationConfig(**settings)


def test_optional_attacks_write_their_columns_and_shards_merge(tiny_run, evaluate):
    run_dir, data = tiny_run
    kwargs = dict(
        attacks=OPTIONAL,
        num_images=8,
        metric_images=16,
        attack_options=TINY,
        gradient_masking=False,
        indicators=False,
    )
    whole = evaluate(run_dir, data, **kwargs, output=run_dir / "whole.csv")
    expected = [
        c
        for c in schema.OPTIONAL_ATTACK_COLUMNS
        if c.startswith(tuple(f"{a}_" for a in OPTIONAL))
        and not c.endswith(tuple(schema.INDICATORS))
    ]
    assert [c for c in whole.columns if c in schema.OPTIONAL_ATTACK_COLUMNS] == expected
    assert not any(c.startswith(("l0_", "l2_", "linf_")) for c in whole.columns)
    assert list(whole["apgd_ce_eps"]) == [0.3, 0.3] and list(whole["apgd_dlr_eps"]) == [0.2, 0.2]
    for prefix in ("apgd_ce", "apgd_dlr"):
        attacked, excluded = whole[f"{prefix}_attacked"], whole[f"{prefix}_excluded"]
        robust = attacked * (1 - whole[f"{prefix}_success_rate"]) / (attacked + excluded)
        np.testing.assert_allclose(whole[f"{prefix}_robust_accuracy"], robust)
    assert (whole["fmn_l2_success_rate"] > 0).all() and (whole["fmn_l2_mean"] > 0).all()
    # A count of pixels; NaN where 20 steps fooled no image (on some CPUs, a whole stage).
    fooled_any = whole["fmn_l0_success_rate"] > 0
    assert whole["fmn_l0_max"].isna().tolist() == (~fooled_any).tolist()
    assert (whole["fmn_l0_max"][fooled_any] % 1 == 0).all()
    per_image = pd.read_csv(run_dir / "whole_per_image.csv")
    assert set(per_image["attack"]) == set(OPTIONAL)
    fooled = per_image[(per_image["attack"] == "apgd_ce") & per_image["success"]]
    assert (fooled["distance"] <= 0.3 + 1e-6).all()

    for i in (0, 1):
        evaluate(run_dir, data, **kwargs, shard_index=i, num_shards=2)
    merged = evaluation.merge_shards([run_dir / f"results_shard{i}of2.csv" for i in (0, 1)])
    evaluation.write_results(
        run_dir / "merged.csv", merged.to_dict("records"), whole.eval_config[0]
    )
    merged, whole = pd.read_csv(run_dir / "merged.csv"), pd.read_csv(run_dir / "whole.csv")
    extra = [c for c in merged.columns if c not in whole.columns]
    assert all(c.endswith(tuple(schema.INDICATORS)) for c in extra)  # merging adds them, empty
    assert merged[extra].isna().all().all()
    # Merging is exact to about 1e-16; the float32 attacks themselves once gave distances that
    # differed in the 7th digit between the whole run and its shards (not seen with op
    # determinism on, which tests/conftest.py enables), so 1e-6, not tighter.
    pd.testing.assert_frame_equal(merged[list(whole.columns)], whole, rtol=1e-6)


def test_unconstrained_failure_is_the_attack_itself_with_an_unbounded_budget(
    tiny_run, monkeypatch, evaluate
):
    """FMN's budget is unbounded already, so its failures are the indicator; a fixed-budget
    APGD is rerun with its own loss at eps = the box width, from the clean image."""
    from keras_takd import attacks as attack_functions

    run_dir, data = tiny_run
    unbounded = []
    real = attack_functions.apgd

    @functools.wraps(real)  # the evaluation reads the options from the signature
    def recording(model, x, y, eps, **kwargs):
        if eps == 1.0:
            unbounded.append((kwargs["loss"], kwargs.get("random_start", True), len(x)))
        return real(model, x, y, eps, **kwargs)

    monkeypatch.setattr(attack_functions, "apgd", recording)
    attacks = ("fmn_l2", "apgd_ce", "apgd_dlr")
    options = {"fmn_l2": {"steps": 3}, "apgd_ce": {"steps": 5}, "apgd_dlr": {"steps": 5}}
    evaluate(
        run_dir, data, attacks=attacks, num_images=8, metric_images=16, attack_options=options,
        gradient_masking=False,
    )  # fmt: skip
    per_image = tables.read_per_image(run_dir)
    fmn = per_image[(per_image.attack == "fmn_l2") & per_image.correct]
    assert fmn.unconstrained_failure.astype(bool).tolist() == (~fmn.success).tolist()
    expected = []
    for loss in ("ce", "dlr"):
        apgd = per_image[(per_image.attack == f"apgd_{loss}") & per_image.correct]
        assert apgd.unconstrained_failure.notna().all()
        expected += [(loss, False, n) for n in apgd.groupby("stage").size()]
    assert sorted(unbounded) == sorted(expected)  # one unbounded run per APGD unit, own loss


def test_jsma_at_its_defaults_keeps_the_ids_of_earlier_configurations():
    config = evaluation.EvaluationConfig(attacks=("l2", "jsma"))
    assert config_id(config.identity("mnist", 10000)) == "545e3db6f3e1"
    options = config.attack_options["jsma"]
    assert (options["theta"], options["gamma"], options["gradients"]) == (1.0, 0.145, "softmax")


def test_jsma_unit_has_a_row_per_image_and_wrong_class(tiny_run, evaluate):
    run_dir, data = tiny_run
    table = evaluate(
        run_dir,
        data,
        attacks=("jsma",),
        num_images=3,
        metric_images=8,
        attack_options={"jsma": {"gamma": 0.02}},  # 15 of 784 pixels: a few pairs at most
    )
    rows = tables.read_per_image(run_dir / "per_image.csv", table)
    assert set(rows["attack"]) == {"jsma"}
    y = data.y_test[:3]
    for (_, image), pairs in rows.groupby(["stage", "image"]):
        if pairs["correct"].all():  # attacked towards every class but its own
            assert sorted(pairs["target"]) == [c for c in range(10) if c != y[image]]
        else:  # misclassified: one row, not attacked
            assert list(pairs["target"]) == [-1] and not pairs["success"].any()
    fooled = rows[rows["success"]]
    assert ((fooled["distance"] > 0) & (fooled["distance"] <= 15 / 784 + 1e-9)).all()
    for row in table.itertuples():
        mine = rows[(rows["stage"] == row.stage) & rows["correct"]]
        assert row.jsma_attacked == len(mine) and len(mine) % 9 == 0
        assert row.jsma_excluded == 9 * (3 - len(mine) // 9)
        assert row.jsma_success_rate == pytest.approx(mine["success"].mean())
        if mine["success"].any():
            assert row.jsma_mean == pytest.approx(mine.loc[mine["success"], "distance"].mean())
