"""The columns of the chain study's results tables: one name, one meaning each.

Training (`keras_takd.takd.chains`) writes `CHAIN_COLUMNS`; evaluation
(`keras_takd.takd.evaluation`) adds `METRIC_COLUMNS` and `CONFIG_COLUMN`, and a shard of it the
sufficient statistics; figures and claims read them. TensorFlow-free.
"""

from __future__ import annotations

KEY_COLUMNS: tuple[str, ...] = ("dataset", "temperature", "stage")
"""The columns that identify a row (one model): dataset ("mnist", "cifar10", ...); temperature,
the training temperature T of the chain; stage, the 1-based position of the model in its chain
(1 = the teacher, trained on hard labels)."""

ROLE_COLUMN = "role"
"""teacher (stage 1), student (the last stage), assistant (stage 2 of 3), else step-k (stage k
of a longer multi-step chain, paper section VI)."""

CHAIN_LENGTH_COLUMN = "stages"
"""The number of models in the row's chain (3 for teacher -> assistant -> student, 7 for the
multi-step experiment). Figures infer it as the largest stage at the same dataset and
temperature when absent."""

CHAIN_COLUMNS: tuple[str, ...] = KEY_COLUMNS + (
    ROLE_COLUMN,
    CHAIN_LENGTH_COLUMN,
    "test_accuracy",
    "val_accuracy",
    "train_seconds",
    "epochs",
    "saved_model",
    "keras_model",
)
"""The columns training writes, in order."""

# The C&W attacks, by the prefix of their columns (L0 counts changed pixels).
ATTACKS: tuple[str, ...] = ("l0", "l2", "linf")
# Prefix of the L2 attack run against softmax(logits / T) instead of the logits.
MASKED_L2_PREFIX = "l2_softmax_T"
FMN_ATTACKS: tuple[str, ...] = ("fmn_l2", "fmn_linf", "fmn_l0")
"""Fast Minimum-Norm attacks (arXiv:2102.12827), `fmn_<norm>`: minimal perturbations, like C&W's
columns. Run only when asked for (`--attacks`)."""
APGD_ATTACKS: tuple[str, ...] = ("apgd_ce", "apgd_dlr")
"""Auto-PGD with the CE and DLR losses (arXiv:2003.01690) at a fixed L-inf eps: robust accuracy.
Run only when asked for."""
JSMA_ATTACK = "jsma"
"""Papernot et al.'s Jacobian-based Saliency Map Attack (arXiv:1511.07528) with the protocol of
their distillation paper (arXiv:1511.04508, section V): every correctly classified image
attacked towards each of its wrong classes, theta = +1, at most gamma = 14.5% of the features
changed, on the softmax F at T = 1. Its rows are (image, target) attack pairs; its distance is
the fraction of the image's features (pixels) changed. Run only when asked for."""
ALL_ATTACKS: tuple[str, ...] = ATTACKS + FMN_ATTACKS + APGD_ATTACKS + (JSMA_ATTACK,)
ATTACK_PREFIXES: tuple[str, ...] = (
    ATTACKS + (MASKED_L2_PREFIX,) + FMN_ATTACKS + APGD_ATTACKS + (JSMA_ATTACK,)
)
"""Every attack unit of an evaluation, by column prefix."""


def attack_norm(prefix: str) -> str:
    """The norm ("l0", "l2" or "linf") in which an attack's perturbations are measured."""
    if prefix in FMN_ATTACKS:
        return prefix.split("_", 1)[1]
    if prefix in APGD_ATTACKS:
        return "linf"
    if prefix == JSMA_ATTACK:  # changed features, as a fraction of the image's
        return "l0"
    return prefix.split("_")[0]


CONFIG_COLUMN = "eval_config"
"""The evaluation configuration's id: `eval/<id>/config.json` in the run folder holds it."""
SHARD_COLUMNS: tuple[str, ...] = ("shard_index", "num_shards")
STAT_SUFFIXES: tuple[str, ...] = ("attacked", "excluded", "successes", "sum", "max")


def _robustness_columns(prefix: str, attack: str) -> dict[str, str]:
    return {
        f"{prefix}_mean": f"{attack}: mean minimal perturbation over successfully attacked images",
        f"{prefix}_max": f"{attack}: max minimal perturbation over successfully attacked images",
        f"{prefix}_success_rate": f"{attack}: successes / attacked images (fraction in [0, 1])",
        f"{prefix}_attacked": f"{attack}: images attacked (correctly classified before attack)",
        f"{prefix}_excluded": f"{attack}: images excluded as misclassified before the attack",
    }


def _robust_accuracy_columns(prefix: str) -> dict[str, str]:
    attack = f"APGD-{prefix.split('_')[1].upper()} (L-inf)"
    return {
        f"{prefix}_eps": f"{attack}: the L-inf radius eps of the attack",
        f"{prefix}_robust_accuracy": (
            f"{attack}: images still classified correctly after the attack / all images of the "
            "block (misclassified ones count as not robust)"
        ),
        f"{prefix}_success_rate": f"{attack}: successes / attacked images (fraction in [0, 1])",
        f"{prefix}_attacked": f"{attack}: images attacked (correctly classified before attack)",
        f"{prefix}_excluded": f"{attack}: images excluded as misclassified before the attack",
    }


INDICATORS: dict[str, str] = {
    "silent_success": "the search met its success test at some iterate but returned no adversarial",
    "incomplete_optimization": (
        "the attack's last solve hit its iteration limit with the loss still falling (C&W L2)"
    ),
    "vanishing_gradients": "the attack loss's input gradient at the clean image is (nearly) zero",
    "unconstrained_failure": (
        "the attack with an unbounded budget fails: a minimal-norm attack (C&W, FMN) itself, "
        "APGD with its own loss at eps = 1 over the [0, 1] box, from the clean image"
    ),
}
"""Indicators of attack failure (Pintor et al. 2022, `keras_takd.attacks.indicators`) checked
on every attacked image: `<prefix>_<name>` counts the flagged images of an attack (NaN where not
computed), and per_image.csv holds the per-image flags."""


def indicator_columns(prefix: str) -> dict[str, str]:
    """The indicator count columns of one attack, with their meanings."""
    return {
        f"{prefix}_{name}": f"indicator of attack failure, images where {meaning}"
        for name, meaning in INDICATORS.items()
    }


METRIC_COLUMNS: dict[str, str] = {
    "metric_images": "test images that test_accuracy, the sensitivities and confidence rest on",
    "test_accuracy": "fraction of test images classified correctly at T = 1 (in [0, 1])",
    "sensitivity_logits_mean": "mean over images of mean |d sum(logits) / dx| over input dims",
    "sensitivity_logits_zero_fraction": (
        "fraction of images whose logits sensitivity (float64) < 1e-10"
    ),
    "sensitivity_softmax_mean": (
        "mean over images of mean |d p_pred / dx| over input dims, p_pred the T = 1 probability "
        "of the predicted class"
    ),
    "sensitivity_softmax_zero_fraction": (
        "fraction of images whose softmax sensitivity (float64) < 1e-10"
    ),
    "confidence": "paper eq. 14: mean of the max T = 1 probability if correct, else 0",
    **_robustness_columns("l0", "C&W L0 (pixels changed)"),
    **_robustness_columns("l2", "C&W L2"),
    **_robustness_columns("linf", "C&W L-inf"),
    "l2_budget": "L2 budget of l2_budget_success_rate",
    "l2_budget_success_rate": "fraction of attacked images that C&W L2 fools within l2_budget",
    "linf_budget": "L-inf budget of linf_budget_success_rate",
    "linf_budget_success_rate": (
        "fraction of attacked images that C&W L-inf fools within linf_budget"
    ),
    **_robustness_columns(MASKED_L2_PREFIX, "C&W L2 against softmax(logits / T)"),
    **{c: m for p in (*ATTACKS, MASKED_L2_PREFIX) for c, m in indicator_columns(p).items()},
}
"""The metric columns of the results CSV, each with its meaning (iterate for the names).

Robustness columns follow the paper (III-C, Fig. 5): the minimal perturbation found by an attack,
averaged (`_mean`) and maximised (`_max`) over the images it attacked successfully, so they are
NaN when no attack succeeded; `_success_rate` says how many that was. Images the model
misclassifies before any attack are left out and counted in `_excluded`. `l2_softmax_T_*` repeat
the L2 columns for the attack run on softmax(logits / T) at the training temperature, the gradient
masking that made distillation look robust (Carlini & Wagner 2017).
"""

OPTIONAL_ATTACK_COLUMNS: dict[str, str] = {
    **{c: m for p in FMN_ATTACKS for c, m in _robustness_columns(p, f"FMN {p[4:]}").items()},
    **{c: m for p in APGD_ATTACKS for c, m in _robust_accuracy_columns(p).items()},
    **{c: m for p in FMN_ATTACKS + APGD_ATTACKS for c, m in indicator_columns(p).items()},
    f"{JSMA_ATTACK}_mean": (
        "JSMA: mean fraction of the image's features changed, over the successful (image, "
        "target) pairs (Papernot et al.'s distortion)"
    ),
    f"{JSMA_ATTACK}_max": "JSMA: the largest such fraction over the successful pairs",
    f"{JSMA_ATTACK}_success_rate": "JSMA: successful pairs / attacked (image, target) pairs",
    f"{JSMA_ATTACK}_attacked": (
        "JSMA: (image, target) pairs attacked: each correctly classified image x its wrong classes"
    ),
    f"{JSMA_ATTACK}_excluded": "JSMA: pairs not attacked, of the misclassified images",
}
"""The columns of the attacks an evaluation runs only when asked (`FMN_ATTACKS`,
`APGD_ATTACKS`), after `METRIC_COLUMNS`. FMN's mirror C&W's (the minimal perturbation found, mean
and max over successes, success rate, counts); APGD's give the robust accuracy at the eps it ran
at, over every image of the attacked block (those misclassified before the attack included)."""

RESULT_COLUMNS: tuple[str, ...] = (
    KEY_COLUMNS + (ROLE_COLUMN,) + tuple(METRIC_COLUMNS) + tuple(OPTIONAL_ATTACK_COLUMNS)
)
"""Key, role, metric columns, then those of the optional attacks (the pipeline may add more)."""

BUDGET_NORMS: tuple[str, ...] = ("l2", "linf")
"""The norms with a fixed-budget success rate (`<norm>_budget`, `<norm>_budget_success_rate`)."""

PER_IMAGE_COLUMNS: dict[str, str] = {
    "dataset": "the row's dataset (as in results.csv)",
    "temperature": "the chain's training temperature T",
    "stage": "the model's stage in its chain (1 = the teacher)",
    "role": "teacher, assistant, student or step-k",
    CHAIN_LENGTH_COLUMN: "the number of models in the chain",
    "attack": (
        "l0, l2, linf or l2_softmax_T (L2 against softmax(logits / T)); fmn_l2, fmn_linf, "
        "fmn_l0, apgd_ce, apgd_dlr or jsma when run"
    ),
    "image": "the test image's index in the test set (0-based)",
    "target": (
        "the target class of a targeted attack's row (JSMA: one row per image and wrong class); "
        "-1 for the untargeted attacks and an image not attacked (tables without the column: -1)"
    ),
    "correct": "the model classified the image correctly before the attack (else not attacked)",
    "success": "the attack fooled the model (False for images not attacked)",
    "distance": (
        "the minimal perturbation found in the attack's norm (APGD: the L-inf perturbation; "
        "JSMA: the fraction of features changed; NaN unless success)"
    ),
    "const": "the attack's trade-off constant c at the returned image (NaN if none)",
    "iterations": "the attack's optimiser steps on the image, over all its searches (if recorded)",
    **{name: f"indicator: {meaning} (empty: not checked)" for name, meaning in INDICATORS.items()},
}
"""`per_image.csv`: one row per (model, attack, attacked-block image), or per (model, attack,
image, target) for a targeted attack (JSMA), beside results.csv."""

PREDICTION_COLUMNS: dict[str, str] = {
    "dataset": "the row's dataset (as in results.csv)",
    "temperature": "the chain's training temperature T",
    "stage": "the model's stage in its chain (1 = the teacher)",
    "role": "teacher, assistant, student or step-k",
    CHAIN_LENGTH_COLUMN: "the number of models in the chain",
    "image": "the test image's index in the test set (0-based)",
    "label": "the image's true class",
    "prediction": "the class the model predicts at T = 1 (argmax of its logits)",
}
"""`predictions.csv`: one row per (model, test image of the metrics), beside results.csv; the
paired accuracy comparisons (McNemar) rest on it. The metrics unit of each model holds the same
predictions (its "predictions" list, image by image from the first test image)."""
