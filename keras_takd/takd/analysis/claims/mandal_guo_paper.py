"""What Mandal & Guo's paper, "Improving Defensive Distillation using Teacher Assistant"
(arXiv:2305.08076, sections V-VI), states and compares: its numbers (`BASELINE`,
`ACCURACY_VARIATION`), its sentences with their sections (`QUOTES`), the claims' names, and
which models each claim compares (`distilled_pairs`, `t_trend_pairs`, `last_step_pairs`).
Shared by the claims on one trained chain per (T, stage) (`claims.mandal_guo`) and over
several seeds (`claims.seed_level`).
"""

from __future__ import annotations

import math

import pandas as pd

from keras_takd.core.statistics import (
    Estimate,
)
from keras_takd.takd.analysis.claims.common import (
    SMALLEST_FOUND,
    unsigned_interval_text,
)
from keras_takd.takd.analysis.statistics import (
    curve_rho,
)
from keras_takd.takd.analysis.tables import ROLES, chain_length

BASELINE = {"mnist": 0.9938, "cifar10": 0.7772}
ACCURACY_VARIATION = {"mnist": 0.0015, "cifar10": 0.012}
BASELINE_TOLERANCE = 0.005
MANDAL_GUO = "Mandal & Guo"
BASELINE_CLAIM = "baseline accuracy (T = 1 teacher)"
VARIATION_CLAIM = "accuracy varies little with distillation"
CONFIDENCE_CLAIM = "confidence has no concrete trend over T (Fig. 6)"
ACCURACY_TREND_CLAIM = "accuracy decreases with T"
MORE_ACCURATE_CLAIM = "at a fixed T distilled models are more accurate in most cases"
CONFIDENCE_DATASET = "cifar10"  # Fig. 6: "The confidence values of the CIFAR10 models"
CENTRAL_CLAIM = (
    "on average the student is more robust than the teacher and the assistant, in most temperatures"
)
# The paper's sentence behind each claim, with its section (arXiv:2305.08076).
QUOTES = {
    "baseline": 'V-A: "The accuracy for baseline MNIST model F_MNIST was 99.38%, and for '
    'F_CIFAR10 was 77.72%."',
    "variation": 'V-A: "For MNIST, the maximum variation that can be noticed w.r.t the teacher '
    'is about 0.15%, whereas for CIFAR10, the maximum variation noticed is 1.2%."',
    "accuracy_trend": 'V-A: "It should also be noted that for each of the models, there is a '
    'trend of accuracy decreasing with temperature."',
    "more_accurate": 'V-A: "It is also interesting to note that in most cases, for a fixed '
    'temperature, the distilled models leads to better performance."',
    "sensitivity": 'V-B: "As expected, higher temperatures cause the trained models to produce '
    'smaller gradients and thus smoother outputs."',
    "temperature": 'V-C: "Irrespective of the attack, it can be observed that, in general, '
    'increasing the distillation temperature improves the robustness of the model."',
    "central": 'V-C: "Also, on average, the student model has higher robustness than the '
    "teacher and assistant models. This shows that introducing an assistant network did "
    'improve the robustness against adversarial attacks in most cases."',
    "confidence": 'V-D: "We repeated the same experiment for our models but did not observe '
    'any concrete trend over temperature." (Fig. 6: "The confidence values of the CIFAR10 '
    'models computed over the test set.")',
    "multistep_accuracy": 'VI: "Also, increasing the levels of distillation does not have a '
    'significant effect on accuracy for either of the model classes."',
    "multistep_robustness": 'VI: "These figures clearly show that robustness against the '
    'attacks increases as we carry out distillation through multiple steps."',
}
# Fig. 4 of Mandal & Guo: the fraction of test images whose mean |input gradient| < 1e-10, of
# the sum of the logits (the authors' code) and of the T = 1 softmax (Papernot's gradient).
SENSITIVITIES = {
    "logits": "gradient of the sum of logits (the authors' code)",
    "softmax": "gradient of the T = 1 softmax (Papernot)",
}
# The paper's central comparison (V-C): (more robust, less robust) stages of a 3-model chain.
COMPARISONS = (("student", "assistant"), ("assistant", "teacher"), ("student", "teacher"))


def rho_text(curve: pd.Series) -> str:
    """ "rho +0.71", or why there is none: "fewer than 3 points (1)"."""
    rho = curve_rho(curve)
    if math.isnan(rho):
        return f"no rho: fewer than 3 points ({curve.dropna().index.nunique()})"
    return f"rho {rho:+.2f}"


def percent_interval(estimate: Estimate) -> str:
    """ "[99.21, 99.55] %" of a proportion, or "no interval"."""
    text = unsigned_interval_text(estimate, 2, 100)
    return text if math.isnan(estimate.low) else f"{text} %"


def distilled_pairs(rows: pd.DataFrame) -> dict[str, tuple]:
    """{"T = t stage k": ((t, k), (t, 1))}: every distilled model against the teacher of its T
    (both with an accuracy)."""
    rows = rows.dropna(subset=["test_accuracy"])
    teachers = set(rows.loc[rows["stage"] == 1, "temperature"])
    return {
        f"T = {row['temperature']:g} stage {int(row['stage'])}": (
            (row["temperature"], int(row["stage"])),
            (row["temperature"], 1),
        )
        for _, row in rows[rows["stage"] > 1].iterrows()
        if row["temperature"] in teachers
    }


def stage_of(rows: pd.DataFrame, role: str) -> dict[float, int]:
    """{temperature: stage} of a role in the sweep."""
    chosen = rows[rows["role"] == role]
    return dict(zip(chosen["temperature"], chosen["stage"].astype(int), strict=True))


def t_trend_pairs(images: pd.DataFrame) -> dict:
    """{role: ((highest T, stage), (lowest T, stage))} of the roles with 2 T or more."""
    pairs = {}
    for role in ROLES:
        stages = stage_of(images, role)
        if len(stages) >= 2:
            low, high = min(stages), max(stages)
            pairs[role] = ((high, stages[high]), (low, stages[low]))
    return pairs


def last_step_pairs(images: pd.DataFrame) -> dict:
    """{T: ((T, last step), (T, teacher))} of each T of the long chains: the last step is the
    chain's length (`tables.chain_length`), not the last stage the rows hold, so a chain
    still training has no pair (its step 5 is not compared as if it were step 7)."""
    pairs = {}
    for t, rows in images.groupby("temperature"):
        pairs[t] = ((t, int(chain_length(rows).max())), (t, 1))
    return pairs


def measured(name: str, test: str) -> str:
    """A claim's test, with `SMALLEST_FOUND` where its measure takes several attacks."""
    return f"{test}; {SMALLEST_FOUND}" if "smallest of" in name else test


def why_text(why_not: str) -> str:
    """ "; <why>" for a claim's ours column, or "" when the measure may decide."""
    return f"; {why_not}" if why_not else ""
