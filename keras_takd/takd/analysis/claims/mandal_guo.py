"""Mandal & Guo's claims, "Improving Defensive Distillation using Teacher Assistant" (sections
V-VI), checked against a results table and its per-image table; claims 1-9 of
`keras_takd.takd.analysis.claims`.

Each claim carries the paper's sentence and its section (`QUOTES`). Accuracy-type claims rest
on proportions of `metric_images` test images (Wilson intervals). Accuracy differences between
models are paired on the test images when every model compared has its per-image predictions
(predictions.csv): the exact McNemar test, Holm over the claim's pairs, beside a percentile
bootstrap interval resampling images (`analysis.statistics.paired_accuracy_tests`); a run
without them (evaluated before they were kept) gets unpaired Wald intervals, and says so.
Robustness claims compare models image by image on the images every model compared classifies
correctly and the attack fools
(`analysis.statistics.model_distances`). They are claims about means (the paper's metric is the
mean perturbation), so each is decided by a test of the mean: the paired t-test of the
per-image differences, Holm-adjusted over the claim's temperatures (or roles), beside a
bootstrap interval and the Wilcoxon p-value as a secondary column. Section V-C is tested as
worded: "on average" (the mean over images), the student against the teacher and against the
assistant, "in most cases" (at more than half the temperatures). Without per-image data a
robustness claim is "inconclusive", its numbers given without interval. Fig. 6 (confidence) is
a CIFAR-10 figure: on another dataset that claim is "not tested on this dataset".

With per-image rows of two or more seeds (independent chains, issue 25) the robustness claims
are made at the seed level (`seed_level_claims`): per comparison and T, the mean over seeds of
each seed's mean paired difference, its t-interval over seeds and two-level bootstrap interval,
the between- and within-seed SDs, and the t-test of the seed means, Holm over the T; the
per-seed means stay as detail. The primary comparison declared before the study ran
(`--primary_comparison`, run.json) comes first, decided by its own, unadjusted test.

Every other claim over several seeds (a `seed` column; one seed keeps the claims above
unchanged), each per seed from that seed's own models, never two seeds mixed:

* accuracy (claims 1-4, and the multi-step accuracy) and sensitivity (claim 5), from rows of
  several seeds: per seed the one-seed quantity (the T = 1 teacher's accuracy; each distilled
  model - its teacher; highest T - lowest T per role; the teachers' fraction of vanishing
  gradients at the highest T - the lowest), across seeds its mean and t-interval over seeds
  (`replicates.seed_mean`), decided by the claim's own rule on that interval (within the
  bound, its sign, in most cases); the per-seed values as detail;
* the T trend (claim 6) and the multi-step robustness (claim 9), from per-image rows of
  several seeds: paired mean differences like the central comparison, so per role (per T)
  and seed the mean paired difference highest T - lowest T (last step - teacher), across
  seeds `replicates.seed_level` (mean, t-interval, t-test of the seed means), Holm over the
  roles (the T), agreeing when every one is above 0.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from keras_takd.core import statistics
from keras_takd.core.statistics import (
    AGREES,
    DISAGREES,
    INCONCLUSIVE,
    Estimate,
)
from keras_takd.takd import schema
from keras_takd.takd.analysis.claims.common import (
    NO_PER_IMAGE,
    NORM_ATTACKS,
    NOT_TESTED,
    SMALLEST_FOUND,
    Claim,
    Context,
    attack_name,
    by_role,
    gate_rule,
    gated,
    interval_text,
    mcnemar_text,
    mean_verdict,
    measure_name,
    most_cases,
    n_label,
    no_data,
    p_text,
    pct,
    per_seed_text,
    proportion_of,
    seed_verdict,
    seeds_of,
    unsigned_interval_text,
)
from keras_takd.takd.analysis.replicates import (
    VALIDATION_CHAINS,
    VALIDATION_TOLERANCE,
    SeedLevel,
    parse_comparison,
    seed_level,
    seed_level_differences,
    seed_mean,
    seeds_needed,
)
from keras_takd.takd.analysis.statistics import (
    MeanTest,
    PairedRateTest,
    curve_rho,
    holm,
    model_distances,
    paired_accuracy_tests,
    paired_mean_test,
    with_holm,
)
from keras_takd.takd.analysis.tables import ROLES, SEED_COLUMN

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


def mandal_guo_claims(ctx: Context) -> list[Claim]:
    """Claims 1-9 for the dataset of `ctx`: accuracy, sensitivity, robustness, confidence and
    the multi-step chain."""
    return [
        *_accuracy_claims(ctx),
        *_sensitivity_claims(ctx),
        *_robustness_claims(ctx),
        *_confidence_claims(ctx),
        *_multistep_claims(ctx),
    ]


def _accuracy_claims(ctx: Context) -> list[Claim]:
    sweep, source = ctx.sweep, MANDAL_GUO
    if len(seeds_of(sweep)) > 1:  # the comparisons below take one model per (T, stage)
        return _seed_level_accuracy_claims(ctx)
    claims = []
    teacher_t1 = sweep[(sweep["role"] == "teacher") & (sweep["temperature"] == 1.0)]
    test = f"95% CI within {100 * BASELINE_TOLERANCE:.1f} points of the paper's"
    if teacher_t1.empty or ctx.dataset not in BASELINE or "test_accuracy" not in sweep:
        claims.append(
            no_data(source, BASELINE_CLAIM, "", test, "no T = 1 teacher", QUOTES["baseline"])
        )
    else:
        ours = proportion_of(teacher_t1.iloc[0], "test_accuracy", ctx)
        paper = BASELINE[ctx.dataset]
        verdict = statistics.within(ours, paper - BASELINE_TOLERANCE, paper + BASELINE_TOLERANCE)
        claims.append(
            Claim(
                source,
                BASELINE_CLAIM,
                pct(paper),
                pct(ours.estimate),
                _percent_interval(ours),
                n_label(ours),
                test,
                verdict,
                QUOTES["baseline"],
            )
        )
    claims += _variation_claims(ctx, sweep, VARIATION_CLAIM, QUOTES["variation"])
    claims.append(_accuracy_trend_claim(ctx))
    claims += _more_accurate_claims(ctx)
    return claims


def _percent_interval(estimate: Estimate) -> str:
    """ "[99.21, 99.55] %" of a proportion, or "no interval"."""
    text = unsigned_interval_text(estimate, 2, 100)
    return text if math.isnan(estimate.low) else f"{text} %"


@dataclasses.dataclass(frozen=True)
class _AccuracyComparisons:
    """Accuracy differences between pairs of models: paired on the test images (McNemar, Holm
    over the pairs) when every model has per-image predictions, else unpaired (Wald)."""

    differences: dict[str, Estimate]
    tests: dict[str, PairedRateTest]  # empty when unpaired

    @property
    def paired(self) -> bool:
        return bool(self.tests)

    def verdicts(self, claimed: str, alpha: float) -> list[str]:
        """Per pair, the verdict on the difference's sign: paired, McNemar's Holm-adjusted p
        and the sign; unpaired, the interval."""
        if self.paired:
            return [mean_verdict(t, claimed, alpha) for t in self.tests.values()]
        return [statistics.verdict(d, claimed) for d in self.differences.values()]

    def how(self) -> str:
        """How the differences were tested, for a claim's test column."""
        if self.paired:
            return (
                "paired on the test images: exact McNemar, Holm over the "
                f"{len(self.tests)} pairs, bootstrap CI"
            )
        return "unpaired Wald CI: no per-image predictions (evaluate again to keep them)"

    def detail(self, label: str) -> str:
        """The pair's McNemar p (Holm), or "" when unpaired."""
        return f" ({mcnemar_text(self.tests[label])})" if self.paired else ""


def _accuracy_comparisons(
    ctx: Context, rows: pd.DataFrame, pairs: dict[str, tuple], multistep: bool = False
) -> _AccuracyComparisons:
    """accuracy(a) - accuracy(b) for each pair {label: ((T, stage) of a, (T, stage) of b)} of
    `rows`' models: paired when the predictions cover every model, else unpaired."""
    predictions = ctx.correct(multistep)
    if predictions is not None:
        tests = paired_accuracy_tests(predictions, pairs, ctx.ci_level, ctx.seed)
        if len(tests) == len(pairs):
            return _AccuracyComparisons({k: t.difference for k, t in tests.items()}, tests)
    models = rows.set_index(["temperature", "stage"])
    differences = {
        label: statistics.proportion_difference(
            proportion_of(models.loc[a], "test_accuracy", ctx),
            proportion_of(models.loc[b], "test_accuracy", ctx),
            ctx.ci_level,
        )
        for label, (a, b) in pairs.items()
    }
    return _AccuracyComparisons(differences, {})


def _distilled_pairs(rows: pd.DataFrame) -> dict[str, tuple]:
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


def _variation_claims(
    ctx: Context, rows: pd.DataFrame, name: str, quote: str, multistep: bool = False
) -> list[Claim]:
    bound = ACCURACY_VARIATION.get(ctx.dataset)
    test = "every |distilled - teacher| CI within the paper's bound"
    pairs = _distilled_pairs(rows) if "test_accuracy" in rows else {}
    if not pairs or bound is None:
        return [no_data(MANDAL_GUO, name, "", test, "no distilled rows", quote)]
    if len(seeds_of(rows)) > 1:
        return [_seed_level_variation_claim(ctx, rows, pairs, name, quote, bound)]
    found = _accuracy_comparisons(ctx, rows, pairs, multistep)
    verdicts = [statistics.within(d, -bound, bound) for d in found.differences.values()]
    verdict = DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts)
    label, worst = max(found.differences.items(), key=lambda pair: abs(pair[1].estimate))
    return [
        Claim(
            MANDAL_GUO,
            name,
            f"<= {pct(bound)}",
            f"largest {100 * worst.estimate:+.2f} points ({label}{found.detail(label)}); "
            f"{verdicts.count(DISAGREES)} of {len(verdicts)} CIs beyond the bound",
            interval_text(worst, 2, 100) + " points"
            if not math.isnan(worst.low)
            else "no interval",
            n_label(worst),
            f"{test}; {found.how()}",
            verdict,
            quote,
        )
    ]


def _accuracy_trend_claim(ctx: Context) -> Claim:
    curves = by_role(ctx.sweep, "test_accuracy")
    name, test = ACCURACY_TREND_CLAIM, "accuracy at the highest T - at the lowest T < 0"
    if not curves or any(len(c) < 2 for c in curves.values()) or len(curves["teacher"]) < 3:
        return no_data(
            MANDAL_GUO, name, "decreasing", test, "fewer than 3 T", QUOTES["accuracy_trend"]
        )
    pairs = {}
    for role, curve in curves.items():
        stage = _stage_of(ctx.sweep, role)
        high, low = curve.index[-1], curve.index[0]
        pairs[role] = ((high, stage[high]), (low, stage[low]))
    if len(seeds_of(ctx.sweep)) > 1:
        return _seed_level_trend_claim(ctx, pairs)
    found = _accuracy_comparisons(ctx, ctx.sweep, pairs)
    parts = [
        f"{role} {100 * d.estimate:+.2f} {interval_text(d, 2, 100)}{found.detail(role)} "
        f"({rho_text(curves[role])})"
        for role, d in found.differences.items()
    ]
    return Claim(
        MANDAL_GUO,
        name,
        "decreasing",
        "; ".join(parts),
        "per role, in points",
        n_label(next(iter(found.differences.values()))),
        f"{test} for every role; {found.how().replace('pairs', 'roles')}",
        statistics.combine(found.verdicts("negative", 1 - ctx.ci_level)),
        QUOTES["accuracy_trend"],
    )


def _more_accurate_claims(ctx: Context) -> list[Claim]:
    pairs = _distilled_pairs(ctx.sweep) if "test_accuracy" in ctx.sweep else {}
    if not pairs:
        return []
    found = _accuracy_comparisons(ctx, ctx.sweep, pairs)
    verdicts = found.verdicts("positive", 1 - ctx.ci_level)
    more, less = verdicts.count(AGREES), verdicts.count(DISAGREES)
    firm = "Holm-adjusted McNemar" if found.paired else "95% CI of each difference"
    return [
        Claim(
            MANDAL_GUO,
            MORE_ACCURATE_CLAIM,
            "most cases",
            f"{more} of {len(pairs)} (T, stage) pairs more accurate, {less} less ({firm}): "
            + "; ".join(
                f"{label} {100 * d.estimate:+.2f}" for label, d in found.differences.items()
            )
            + " points",
            "per pair",
            n_label(next(iter(found.differences.values()))),
            f"more than half the pairs significantly above 0; {found.how()}",
            most_cases(verdicts),
            QUOTES["more_accurate"],
        )
    ]


@dataclasses.dataclass(frozen=True)
class _OverSeeds:
    """One quantity over seeds: its mean with the t-interval over seeds
    (`replicates.seed_mean`) and each seed's value."""

    mean: Estimate
    per_seed: dict[int, float]

    def text(self, scale: float = 100, digits: int = 2) -> str:
        """ "+0.05 [-0.02, +0.12] (per seed: 0 +0.01, 1 +0.09)", times `scale`."""
        return (
            f"{scale * self.mean.estimate:+.{digits}f} {interval_text(self.mean, digits, scale)} "
            f"({per_seed_text(self.per_seed, digits, scale)})"
        )


def _over_seeds(ctx: Context, rows: pd.DataFrame, pairs: dict, column: str) -> dict:
    """{label: `_OverSeeds` of column(a) - column(b)} for each pair {label: ((T, stage) of a,
    (T, stage) of b or None for column(a) alone)}: per seed, from that seed's own models (a
    seed lacking either model is left out); labels no seed has, or all without `column`, are
    left out."""
    out = {}
    if column not in rows:
        return out
    values = {
        seed: chosen.dropna(subset=[column]).set_index(["temperature", "stage"])[column]
        for seed, chosen in rows.assign(stage=rows["stage"].astype(int)).groupby(SEED_COLUMN)
    }
    for label, (a, b) in pairs.items():
        per_seed = {
            int(seed): float(v[a]) - (float(v[b]) if b is not None else 0.0)
            for seed, v in values.items()
            if a in v.index and (b is None or b in v.index)
        }
        if per_seed:
            out[label] = _OverSeeds(seed_mean(list(per_seed.values()), ctx.ci_level), per_seed)
    return out


def _seeds_label(found: dict) -> str:
    """ "3 seeds": the most seeds any of `found`'s quantities rests on."""
    return f"{max(f.mean.n for f in found.values())} seeds"


def _seed_level_accuracy_claims(ctx: Context) -> list[Claim]:
    """Claims 1-4 over several seeds: per seed the one-seed quantity from the seed's own
    models, across seeds its mean and t-interval, decided by the claim's own rule."""
    sweep, claims = ctx.sweep, []
    test = f"95% t-interval over seeds within {100 * BASELINE_TOLERANCE:.1f} points of the paper's"
    found = _over_seeds(ctx, sweep, {"T = 1 teacher": ((1.0, 1), None)}, "test_accuracy")
    if not found or ctx.dataset not in BASELINE:
        why = "no T = 1 teacher"
        claims.append(no_data(MANDAL_GUO, BASELINE_CLAIM, "", test, why, QUOTES["baseline"]))
    else:
        ours, paper = found["T = 1 teacher"], BASELINE[ctx.dataset]
        claims.append(
            Claim(
                MANDAL_GUO,
                BASELINE_CLAIM,
                pct(paper),
                f"{pct(ours.mean.estimate)}, mean over {ours.mean.n} seeds (per seed: "
                + ", ".join(f"{seed} {pct(v)}" for seed, v in ours.per_seed.items())
                + ")",
                _percent_interval(ours.mean) + " (t over seeds)",
                f"{ours.mean.n} seeds",
                test,
                statistics.within(
                    ours.mean, paper - BASELINE_TOLERANCE, paper + BASELINE_TOLERANCE
                ),
                QUOTES["baseline"],
            )
        )
    claims += _variation_claims(ctx, sweep, VARIATION_CLAIM, QUOTES["variation"])
    claims.append(_accuracy_trend_claim(ctx))
    claims += _seed_level_more_accurate_claims(ctx)
    return claims


def _seed_level_variation_claim(ctx, rows, pairs, name, quote, bound) -> Claim:
    """Every |distilled - teacher|, each a mean over seeds, within the paper's bound."""
    found = _over_seeds(ctx, rows, pairs, "test_accuracy")
    verdicts = [statistics.within(f.mean, -bound, bound) for f in found.values()]
    verdict = DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts)
    label, worst = max(found.items(), key=lambda pair: abs(pair[1].mean.estimate))
    return Claim(
        MANDAL_GUO,
        name,
        f"<= {pct(bound)}",
        f"largest {100 * worst.mean.estimate:+.2f} points, mean over seeds ({label}; "
        f"{per_seed_text(worst.per_seed, 2, 100)}); {verdicts.count(DISAGREES)} of "
        f"{len(verdicts)} t-intervals beyond the bound",
        interval_text(worst.mean, 2, 100) + " points (t over seeds)",
        _seeds_label(found),
        "per distilled model, accuracy - its teacher's per seed; every t-interval over seeds "
        "within the paper's bound",
        verdict,
        quote,
    )


def _seed_level_trend_claim(ctx: Context, pairs: dict) -> Claim:
    """Accuracy at the highest T - at the lowest, per role a mean over seeds, below 0."""
    found = _over_seeds(ctx, ctx.sweep, pairs, "test_accuracy")
    return Claim(
        MANDAL_GUO,
        ACCURACY_TREND_CLAIM,
        "decreasing",
        "; ".join(f"{role} {f.text()}" for role, f in found.items()),
        "per role, in points (t over seeds)",
        _seeds_label(found),
        "per role, accuracy at the highest T - at the lowest T per seed; the t-interval over "
        "seeds below 0 for every role",
        statistics.combine([statistics.verdict(f.mean, "negative") for f in found.values()]),
        QUOTES["accuracy_trend"],
    )


def _seed_level_more_accurate_claims(ctx: Context) -> list[Claim]:
    """Distilled - teacher at each (T, stage), a mean over seeds, above 0 at most pairs."""
    pairs = _distilled_pairs(ctx.sweep) if "test_accuracy" in ctx.sweep else {}
    found = _over_seeds(ctx, ctx.sweep, pairs, "test_accuracy")
    if not found:
        return []
    verdicts = [statistics.verdict(f.mean, "positive") for f in found.values()]
    more, less = verdicts.count(AGREES), verdicts.count(DISAGREES)
    return [
        Claim(
            MANDAL_GUO,
            MORE_ACCURATE_CLAIM,
            "most cases",
            f"{more} of {len(found)} (T, stage) pairs more accurate, {less} less (t-interval "
            "over seeds of each difference): "
            + "; ".join(f"{label} {f.text()}" for label, f in found.items())
            + " points",
            "per pair (t over seeds)",
            _seeds_label(found),
            "per pair, distilled - teacher accuracy per seed; more than half the pairs' "
            "t-intervals over seeds above 0",
            most_cases(verdicts),
            QUOTES["more_accurate"],
        )
    ]


def _sensitivity_claims(ctx: Context) -> list[Claim]:
    test = "teachers' fraction at the highest T - at the lowest T > 0"
    source = MANDAL_GUO
    claims = []
    for of, what in SENSITIVITIES.items():
        name = f"higher T: more gradients < 1e-10 (Fig. 4), {what}"
        column = f"sensitivity_{of}_zero_fraction"
        teachers = by_role(ctx.sweep, column).get("teacher")
        if teachers is None or len(teachers) < 3:
            claims.append(
                no_data(source, name, "increasing", test, "fewer than 3 T", QUOTES["sensitivity"])
            )
            continue
        if len(seeds_of(ctx.sweep)) > 1:
            claims.append(_seed_level_sensitivity_claim(ctx, name, column, teachers.index))
            continue
        rows = ctx.sweep[ctx.sweep["role"] == "teacher"].set_index("temperature")
        high = proportion_of(rows.loc[teachers.index[-1]], column, ctx)
        low = proportion_of(rows.loc[teachers.index[0]], column, ctx)
        difference = statistics.proportion_difference(high, low, ctx.ci_level)
        ours = (
            f"{pct(low.estimate)} at T = {teachers.index[0]:g}, {pct(high.estimate)} at "
            f"T = {teachers.index[-1]:g} ({rho_text(teachers)})"
        )
        interval = interval_text(difference, 2, 100)
        claims.append(
            Claim(
                source,
                name,
                "increasing",
                ours,
                interval + " points" if interval != "no interval" else interval,
                n_label(high),
                test,
                statistics.verdict(difference, "positive"),
                QUOTES["sensitivity"],
            )
        )
    return claims


def _seed_level_sensitivity_claim(ctx: Context, name: str, column: str, temperatures) -> Claim:
    """The teachers' fraction at the highest T - at the lowest T per seed, a mean over seeds
    whose t-interval lies above 0."""
    low, high = temperatures[0], temperatures[-1]
    found = _over_seeds(ctx, ctx.sweep, {"d": ((high, 1), (low, 1))}, column)
    levels = _over_seeds(
        ctx, ctx.sweep, {"low": ((low, 1), None), "high": ((high, 1), None)}, column
    )
    difference = found["d"]
    return Claim(
        MANDAL_GUO,
        name,
        "increasing",
        f"{pct(levels['low'].mean.estimate)} at T = {low:g}, {pct(levels['high'].mean.estimate)} "
        f"at T = {high:g}, means over seeds; difference {difference.text()} points",
        interval_text(difference.mean, 2, 100) + " points (t over seeds)",
        f"{difference.mean.n} seeds",
        "teachers' fraction at the highest T - at the lowest T per seed; the t-interval over "
        "seeds above 0",
        statistics.verdict(difference.mean, "positive"),
        QUOTES["sensitivity"],
    )


def _stage_of(rows: pd.DataFrame, role: str) -> dict[float, int]:
    """{temperature: stage} of a role in the sweep."""
    chosen = rows[rows["role"] == role]
    return dict(zip(chosen["temperature"], chosen["stage"].astype(int), strict=True))


def _mean_tests(ctx: Context, images: pd.DataFrame, pairs: dict) -> dict:
    """{label: MeanTest} of later - earlier model for each `pairs` entry {label: (later
    (T, stage), earlier (T, stage))}, on the images both fooled; Holm-adjusted over the family
    of `pairs`."""
    tests = {}
    for label, (later, earlier) in pairs.items():
        both = model_distances(images, [later, earlier])
        tests[label] = paired_mean_test(both.iloc[:, 0], both.iloc[:, 1], ctx.ci_level, ctx.seed)
    return with_holm(tests)


def _unvalidated(ctx: Context, images: pd.DataFrame, pairs: dict) -> dict[str, str]:
    """{label: why the pair's comparison may not be decided, or ""} for each `pairs` entry
    {label: (later (T, stage), earlier (T, stage))} (`Context.unvalidated_in`)."""
    return {label: ctx.unvalidated_in(images, list(models)) for label, models in pairs.items()}


def _gated_verdict(test: MeanTest, why_not: str, alpha: float) -> str:
    """`mean_verdict` of a claim that the later model is more robust, `gated` by its measure."""
    return gated(mean_verdict(test, "positive", alpha), why_not)


def _why_text(why_not: str) -> str:
    """ "; <why>" for a claim's ours column, or "" when the measure may decide."""
    return f"; {why_not}" if why_not else ""


def _per_t_pairs(images: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """{(better, worse): {T: ((T, stage of better), (T, stage of worse))}} for each of
    `COMPARISONS` at the temperatures of both roles."""
    out = {}
    for better, worse in COMPARISONS:
        stages_better, stages_worse = _stage_of(images, better), _stage_of(images, worse)
        temperatures = sorted(set(stages_better) & set(stages_worse))
        pairs = {t: ((t, stages_better[t]), (t, stages_worse[t])) for t in temperatures}
        if pairs:
            out[(better, worse)] = pairs
    return out


def _central_claims(ctx: Context, attack: str) -> list[Claim]:
    """Section V-C as worded (student vs teacher and vs assistant, on average, in most
    temperatures), then each comparison pooled over T and at each T as detail."""
    images = ctx.norm_images(attack)
    if images is None:
        return []
    name, rule = measure_name(attack, images), gate_rule(images["attack"])
    pairs = _per_t_pairs(images)
    per_t = {c: _mean_tests(ctx, images, p) for c, p in pairs.items()}
    why_not = {c: _unvalidated(ctx, images, p) for c, p in pairs.items()}
    claims = [_as_worded_claim(ctx, name, per_t, why_not, rule)] if per_t else []
    for (better, worse), tests in per_t.items():
        claims.append(_pooled_claim(ctx, name, images, better, worse, sorted(tests), rule))
        for t, test in tests.items():
            claims.append(
                _mean_claim(
                    ctx,
                    f"{name}: the {better} is more robust than the {worse} at T = {t:g}",
                    f"{better} > {worse}",
                    test,
                    _measured(
                        name,
                        f"paired t-test of the mean difference {better} - {worse}, Holm over "
                        f"{len(tests)} T: adjusted p < {1 - ctx.ci_level:.2g} and mean > 0",
                    )
                    + rule,
                    why_not[(better, worse)][t],
                )
            )
    return claims


def _measured(name: str, test: str) -> str:
    """A claim's test, with `SMALLEST_FOUND` where its measure takes several attacks."""
    return f"{test}; {SMALLEST_FOUND}" if "smallest of" in name else test


def _as_worded_claim(ctx: Context, name: str, per_t: dict, why_not: dict, rule: str) -> Claim:
    """Student - teacher and student - assistant: each agrees at most temperatures (mean test,
    Holm over the temperatures); both must (an intersection: no further adjustment). A
    temperature whose measure is not validated (`why_not`) counts as undecided."""
    alpha, parts, verdicts = 1 - ctx.ci_level, [], []
    for worse in ("teacher", "assistant"):
        tests = per_t.get(("student", worse))
        if tests is None:
            return no_data(MANDAL_GUO, CENTRAL_CLAIM, "", "", f"no student - {worse} pairs")
        why = why_not[("student", worse)]
        each = [_gated_verdict(test, why[t], alpha) for t, test in tests.items()]
        verdicts.append(most_cases(each))
        parts.append(
            f"student - {worse}: above 0 at {each.count(AGREES)} of {len(each)} T, below at "
            f"{each.count(DISAGREES)} ("
            + ", ".join(f"T = {t:g} {test.difference.estimate:+.3f}" for t, test in tests.items())
            + ")"
        )
    return Claim(
        MANDAL_GUO,
        f"{name}: {CENTRAL_CLAIM}",
        "student > teacher, assistant",
        "; ".join(parts),
        "per T below",
        ", ".join(str(t.difference.n) for t in per_t[("student", "teacher")].values()),
        _measured(
            name,
            "for student - teacher and for student - assistant, the mean difference above 0 "
            f"(paired t, Holm over the T, p < {alpha:.2g}) at more than half the T; disagrees "
            "when either is below 0 at half the T or more",
        )
        + rule,
        DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts),
        QUOTES["central"],
    )


def _pooled_claim(ctx, name, images, better, worse, temperatures, rule) -> Claim:
    """better - worse, each image's difference averaged over the temperatures (one test);
    undecided where its measure is not validated at one of them."""
    stages_better, stages_worse = _stage_of(images, better), _stage_of(images, worse)
    keys = [(t, s) for t in temperatures for s in (stages_better[t], stages_worse[t])]
    table = model_distances(images, keys)
    pooled = pd.DataFrame(
        {t: table[(t, stages_better[t])] - table[(t, stages_worse[t])] for t in temperatures}
    ).mean(axis=1)
    test = paired_mean_test(pooled, np.zeros(len(pooled)), ctx.ci_level, ctx.seed)
    return _mean_claim(
        ctx,
        f"{name}: the {better} is more robust than the {worse} (pooled over T)",
        f"{better} > {worse}",
        test,
        _measured(
            name,
            f"paired t-test of the mean over T = {', '.join(f'{t:g}' for t in temperatures)} "
            f"of each image's difference {better} - {worse}: p < {1 - ctx.ci_level:.2g} and "
            "mean > 0",
        )
        + rule,
        ctx.unvalidated_in(images, keys),
    )


def _mean_claim(
    ctx: Context, claim: str, paper: str, test: MeanTest, how: str, why_not: str = ""
) -> Claim:
    """A claim that the later model is more robust, decided by `test` where its measure may
    decide (`why_not` empty)."""
    estimate = test.difference
    return Claim(
        MANDAL_GUO,
        claim,
        paper,
        (
            f"{estimate.estimate:+.4f} ({p_text(test)}){_why_text(why_not)}"
            if math.isfinite(estimate.estimate)
            else "no image that both models classify correctly and both attacks fool"
        ),
        interval_text(estimate, 4),
        str(estimate.n),
        how,
        _gated_verdict(test, why_not, 1 - ctx.ci_level),
        QUOTES["central"],
    )


def _t_trend_claims(ctx: Context, attack: str) -> list[Claim]:
    """Section V-C, "increasing the distillation temperature improves the robustness": per
    role, the mean of highest-T - lowest-T, paired on images; Holm over the roles."""
    images = ctx.norm_images(attack)
    name = f"{measure_name(attack, images)}: robustness increases with T"
    alpha = 1 - ctx.ci_level
    test = _measured(
        name,
        "per role, paired t-test of the mean difference highest T - lowest T, Holm over the "
        f"roles: adjusted p < {alpha:.2g} and mean > 0, every role",
    )
    curves = by_role(ctx.sweep, f"{attack}_mean")
    quote = QUOTES["temperature"]
    if not curves and images is None:
        return [no_data(MANDAL_GUO, name, "increasing", test, "no data", quote)]
    if images is None:
        rhos = ", ".join(f"{role} {rho_text(c)}" for role, c in curves.items())
        return [
            Claim(
                MANDAL_GUO,
                name,
                "increasing",
                f"of the means: {rhos}",
                NO_PER_IMAGE,
                "",
                test,
                INCONCLUSIVE,
                quote,
            )
        ]
    pairs = _t_trend_pairs(images)
    if not pairs:
        return [no_data(MANDAL_GUO, name, "increasing", test, "fewer than 2 T", quote)]
    tests, why_not = _mean_tests(ctx, images, pairs), _unvalidated(ctx, images, pairs)
    (high, _), (low, _) = next(iter(pairs.values()))  # the roles of a sweep share their T
    parts = [
        f"{role} {t.difference.estimate:+.3f} {interval_text(t.difference, 3)} "
        f"(Holm p = {t.holm_p:.2g}{_why_text(why_not[role])})"
        for role, t in tests.items()
    ]
    return [
        Claim(
            MANDAL_GUO,
            name,
            "increasing",
            f"T = {high:g} - T = {low:g}: " + "; ".join(parts),
            "per role",
            ", ".join(str(t.difference.n) for t in tests.values()),
            test + gate_rule(images["attack"]),
            statistics.combine(
                [_gated_verdict(t, why_not[role], alpha) for role, t in tests.items()]
            ),
            quote,
        )
    ]


def _t_trend_pairs(images: pd.DataFrame) -> dict:
    """{role: ((highest T, stage), (lowest T, stage))} of the roles with 2 T or more."""
    pairs = {}
    for role in ROLES:
        stages = _stage_of(images, role)
        if len(stages) >= 2:
            low, high = min(stages), max(stages)
            pairs[role] = ((high, stages[high]), (low, stages[low]))
    return pairs


def _robustness_claims(ctx: Context) -> list[Claim]:
    if _seed_count(ctx) >= 2:
        claims = seed_level_claims(ctx, ctx.primary_comparison)
        return claims + [_seed_level_t_trend_claim(ctx, attack) for attack in schema.ATTACKS]
    claims = []
    for attack in schema.ATTACKS:
        claims += _t_trend_claims(ctx, attack)
        central = _central_claims(ctx, attack)
        if central:
            claims += central
        elif ctx.per_image is None:
            means = {r: float(c.mean()) for r, c in by_role(ctx.sweep, f"{attack}_mean").items()}
            if "student" in means and len(means) > 1:
                claims.append(
                    Claim(
                        MANDAL_GUO,
                        f"{attack_name(attack)}: the student is the most robust on average",
                        "student > assistant, teacher",
                        ", ".join(f"{role} {m:.4g}" for role, m in means.items()),
                        NO_PER_IMAGE,
                        "",
                        "paired differences student - others > 0 (95% CI)",
                        INCONCLUSIVE,
                        QUOTES["central"],
                    )
                )
    return claims


def _confidence_claims(ctx: Context) -> list[Claim]:
    """Fig. 6 is of the CIFAR-10 models: tested on CIFAR-10 results only."""
    curves = by_role(ctx.sweep, "confidence")
    test = "no per-image confidences: reported, not decided"
    quote = QUOTES["confidence"]
    if ctx.dataset != CONFIDENCE_DATASET:
        why = "the paper's Fig. 6 is of CIFAR-10 models; these results hold no CIFAR-10"
        return [Claim(MANDAL_GUO, CONFIDENCE_CLAIM, "no trend", why, "", "", "", NOT_TESTED, quote)]
    if not curves:
        return [no_data(MANDAL_GUO, CONFIDENCE_CLAIM, "", test, "no data", quote)]
    rhos = ", ".join(f"{role} {rho_text(c)}" for role, c in curves.items())
    return [
        Claim(
            MANDAL_GUO,
            CONFIDENCE_CLAIM,
            "no trend",
            f"of the means: {rhos}",
            "no interval",
            "",
            test,
            INCONCLUSIVE,
            quote,
        )
    ]


def _multistep_claims(ctx: Context) -> list[Claim]:
    chains, source = ctx.chains, MANDAL_GUO
    if chains.empty:
        return [no_data(source, "multi-step distillation (section VI)", "", "", "no chain > 3")]
    claims = _variation_claims(
        ctx,
        chains,
        "multi-step: accuracy varies little with the step (Fig. 7)",
        QUOTES["multistep_accuracy"],
        multistep=True,
    )
    for attack in schema.ATTACKS:  # each norm, measured by C&W's attack or FMN's
        columns = [f"{a}_mean" for a in NORM_ATTACKS[attack]]
        columns = [c for c in columns if c in chains and chains[c].notna().any()]
        if columns:
            claims.append(_multistep_robustness_claim(ctx, attack, chains, columns[0]))
    return claims


def _multistep_robustness_claim(ctx: Context, attack, chains, column) -> Claim:
    """Section VI: per T, the mean of last step - teacher, paired on images; Holm over T."""
    alpha, quote = 1 - ctx.ci_level, QUOTES["multistep_robustness"]
    seeds = ctx.image_seeds(*NORM_ATTACKS[attack], multistep=True)
    sample = ctx.norm_images(attack, multistep=True, seed=seeds[0]) if seeds else None
    measure = measure_name(attack, sample) if seeds else attack_name(column[: -len("_mean")])
    name = f"multi-step: {measure} robustness rises with the step (Fig. 8)"
    test = (
        "per T, paired t-test of the mean difference last step - teacher, Holm over the T: "
        f"adjusted p < {alpha:.2g} and mean > 0, every T"
    )
    if len(seeds) > 1:
        return _seed_level_multistep_claim(ctx, attack, name)
    images = ctx.norm_images(attack, multistep=True)
    if images is None:
        by_step = chains.groupby("stage")[column].mean().dropna().sort_index()
        over = "T and seeds" if len(seeds_of(chains)) > 1 else "T"
        ours = f"of the means over {over}: {rho_text(by_step)}"
        return Claim(
            MANDAL_GUO, name, "increasing", ours, NO_PER_IMAGE, "", test, INCONCLUSIVE, quote
        )
    pairs = _last_step_pairs(images)
    tests, why_not = _mean_tests(ctx, images, pairs), _unvalidated(ctx, images, pairs)
    parts = [
        f"T = {t:g}: {test.difference.estimate:+.3f} {interval_text(test.difference, 3)} "
        f"(Holm p = {test.holm_p:.2g}{_why_text(why_not[t])})"
        for t, test in tests.items()
    ]
    return Claim(
        MANDAL_GUO,
        name,
        "increasing",
        "; ".join(parts),
        "per T",
        ", ".join(str(t.difference.n) for t in tests.values()),
        test + gate_rule(images["attack"]),
        statistics.combine([_gated_verdict(tt, why_not[t], alpha) for t, tt in tests.items()]),
        quote,
    )


def _last_step_pairs(images: pd.DataFrame) -> dict:
    """{T: ((T, last step), (T, teacher))} of each T of the long chains."""
    pairs = {}
    for t, rows in images.groupby("temperature"):
        first, last = int(rows["stage"].min()), int(rows["stage"].max())
        pairs[t] = ((t, last), (t, first))
    return pairs


@dataclasses.dataclass(frozen=True)
class _SeedTest:
    """A paired mean difference over seeds (`replicates.seed_level`), its t-test's p-value
    Holm-adjusted over the claim's family, and each seed's mean difference."""

    level: SeedLevel
    holm_p: float
    seed_means: dict[int, float]
    why_not: str = ""  # why its measure may not decide on some seed (`Context.unvalidated`)

    def text(self) -> str:
        """ "+0.031 [+0.012, +0.050] (t p = 0.01, Holm p = 0.02; per seed: 0 +0.0300, ...)"."""
        level = self.level
        return (
            f"{level.estimate:+.3f} [{level.t_low:+.3f}, {level.t_high:+.3f}] (t p = "
            f"{level.p_value:.2g}, Holm p = {self.holm_p:.2g}; {per_seed_text(self.seed_means)}"
            f"{_why_text(self.why_not)})"
        )

    def verdict(self, alpha: float) -> str:
        """Above 0 by the Holm-adjusted t-test of the seed means: agrees (`gated`)."""
        level = self.level
        verdict = seed_verdict(level.estimate, self.holm_p, level.seeds, "positive", alpha)
        return gated(verdict, self.why_not)


def _seed_tests(ctx: Context, attack: str, pairs_of, multistep: bool = False) -> dict:
    """{label: `_SeedTest` of later - earlier} for each pair of `pairs_of(one seed's images)`
    ({label: (later (T, stage), earlier (T, stage))}): per seed the per-image differences on
    the images both models of that seed fooled, across seeds `replicates.seed_level`; the
    labels one Holm family."""
    by_label: dict = {}
    why_not: dict = {}  # the first seed's reason its measure may not decide, per label
    for seed in ctx.image_seeds(*NORM_ATTACKS[attack], multistep=multistep):
        images = ctx.norm_images(attack, multistep, seed)
        for label, (later, earlier) in pairs_of(images).items():
            both = model_distances(images, [later, earlier])
            if len(both):
                differences = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy(float)
                by_label.setdefault(label, {})[int(seed)] = differences
                why_not[label] = why_not.get(label) or ctx.unvalidated_in(images, [later, earlier])
    levels = {
        label: seed_level(list(d.values()), ctx.ci_level, ctx.seed) for label, d in by_label.items()
    }
    adjusted = holm([level.p_value for level in levels.values()])
    return {
        label: _SeedTest(
            level,
            float(p),
            {s: float(d.mean()) for s, d in by_label[label].items()},
            why_not[label],
        )
        for (label, level), p in zip(levels.items(), adjusted, strict=True)
    }


def _seed_level_t_trend_claim(ctx: Context, attack: str) -> Claim:
    """Section V-C's T trend over seeds: per role and seed, the mean paired difference highest
    T - lowest T; across seeds their mean, t-interval and t-test, Holm over the roles."""
    seeds = ctx.image_seeds(*NORM_ATTACKS[attack])
    images = ctx.norm_images(attack, seed=seeds[0]) if seeds else None
    name = f"{measure_name(attack, images)}, seed level: robustness increases with T"
    alpha = 1 - ctx.ci_level
    test = _measured(
        name,
        "per role and seed, the mean paired difference highest T - lowest T; t-test of the "
        f"seed means (scipy.stats.ttest_1samp), Holm over the roles: adjusted p < {alpha:.2g} "
        "and mean > 0, every role",
    ) + _seed_gate_rule(ctx, attack)
    quote = QUOTES["temperature"]
    tests = _seed_tests(ctx, attack, _t_trend_pairs) if images is not None else {}
    if not tests:
        why = "no data" if images is None else "fewer than 2 T"
        return no_data(MANDAL_GUO, name, "increasing", test, why, quote)
    (high, _), (low, _) = next(iter(_t_trend_pairs(images).values()))
    return _seed_tests_claim(
        name, f"T = {high:g} - T = {low:g}: ", tests, "per role", test, alpha, quote
    )


def _seed_level_multistep_claim(ctx: Context, attack: str, name: str) -> Claim:
    """Section VI over seeds: per T and seed the mean paired difference last step - teacher;
    across seeds their mean, t-interval and t-test, Holm over the T."""
    alpha = 1 - ctx.ci_level
    tests = _seed_tests(ctx, attack, _last_step_pairs, multistep=True)
    tests = {f"T = {t:g}": found for t, found in tests.items()}
    test = (
        "per T and seed, the mean paired difference last step - teacher; t-test of the seed "
        f"means, Holm over the T: adjusted p < {alpha:.2g} and mean > 0, every T"
    ) + _seed_gate_rule(ctx, attack, multistep=True)
    quote = QUOTES["multistep_robustness"]
    return _seed_tests_claim(f"{name}, seed level", "", tests, "per T", test, alpha, quote)


def _seed_gate_rule(ctx: Context, norm: str, multistep: bool = False) -> str:
    """`gate_rule` of the attacks of `norm` with per-image rows of any seed."""
    ran = [a for a in NORM_ATTACKS[norm] if ctx.image_seeds(a, multistep=multistep)]
    return gate_rule(ran)


def _seed_tests_claim(name, prefix, tests, per, test, alpha, quote) -> Claim:
    """A claim that every one of `tests` (a `_SeedTest` per role or T) lies above 0."""
    return Claim(
        MANDAL_GUO,
        name,
        "increasing",
        prefix + "; ".join(f"{label} {found.text()}" for label, found in tests.items()),
        f"{per}, t over seeds",
        f"{max(t.level.seeds for t in tests.values())} seeds; "
        + ", ".join(str(t.level.images) for t in tests.values())
        + " images",
        test,
        statistics.combine([found.verdict(alpha) for found in tests.values()]),
        quote,
    )


def _seed_count(ctx: Context) -> int:
    """How many seeds the per-image rows of the dataset hold (0 without per-image rows)."""
    if ctx.per_image is None:
        return 0
    rows = ctx.per_image[ctx.per_image["dataset"] == ctx.dataset]
    return int(rows[SEED_COLUMN].nunique()) if SEED_COLUMN in rows else int(not rows.empty)


def seed_level_claims(ctx: Context, primary: str | None = None) -> list[Claim]:
    """The robustness comparisons at the seed level: per attack, comparison and T, the mean
    over seeds of each seed's paired mean difference (`replicates.seed_level_differences`).

    A cheaper measure (FMN, `replicates.REFERENCES`) decides a comparison alone only at a T
    where its ratio to C&W's, on the same images of the same models, has its interval within
    1 +- `replicates.VALIDATION_TOLERANCE` (`replicates.measure_validation`, issue 25);
    elsewhere its verdict is "inconclusive (FMN not validated)". Each T's validation is a
    claim of its own.

    Args:
        ctx: the dataset's context, its per-image rows with a `seed` column.
        primary: the declared primary comparison, e.g. "student-teacher@40"
            (`replicates.parse_comparison`); its claims come first, decided by their own
            unadjusted test; None: none declared.

    Returns:
        The primary comparison's claims, then per attack section V-C as worded (the student
        above the teacher and the assistant at most T) and one claim per (comparison, T),
        then the validation of each cheaper measure per T.

    Raises:
        ValueError: `primary` is not a comparison.
    """
    declared = parse_comparison(primary) if primary else None
    rows = ctx.per_image[ctx.per_image["dataset"] == ctx.dataset]
    table = seed_level_differences(rows, ctx.ci_level, ctx.seed)
    first, rest = [], []
    for attack, comparisons in table.groupby("attack", sort=False):
        rest.append(_seed_level_as_worded(ctx, attack, comparisons))
        for row in comparisons.itertuples(index=False):
            later, earlier = row.comparison.split(" - ")
            is_primary = declared == (later, earlier, float(row.temperature))
            claim = _seed_level_claim(ctx, row, is_primary)
            (first if is_primary else rest).append(claim)
    validation = ctx.measure_validation.itertuples(index=False)
    return first + rest + [_validation_claim(ctx, v) for v in validation]


def _row_unvalidated(ctx: Context, row) -> str:
    """`Context.unvalidated` of a seed-level comparison (`seed_level_differences`' row)."""
    return ctx.unvalidated(row.stages, row.temperature, row.attack)


def _seed_row_verdict(row, p_value: float, alpha: float) -> str:
    """`seed_verdict` of a seed-level comparison (`seed_level_differences`' row): the later
    model claimed more robust."""
    return seed_verdict(row.estimate, p_value, row.seeds, "positive", alpha)


def _seed_level_as_worded(ctx: Context, attack: str, comparisons: pd.DataFrame) -> Claim:
    """Section V-C as worded, at the seed level: student - teacher and student - assistant
    each above 0 (t-test of the seed means, Holm over the T) at more than half the T."""
    alpha, parts, verdicts = 1 - ctx.ci_level, [], []
    name = f"{attack_name(attack)}, seed level: {CENTRAL_CLAIM}"
    for worse in ("teacher", "assistant"):
        rows = comparisons[comparisons["comparison"] == f"student - {worse}"]
        if rows.empty:
            return no_data(MANDAL_GUO, name, "", "", f"no student - {worse} pairs")
        each = [
            gated(_seed_row_verdict(r, r.holm_p, alpha), _row_unvalidated(ctx, r))
            for r in rows.itertuples(index=False)
        ]
        verdicts.append(most_cases(each))
        parts.append(
            f"student - {worse}: above 0 at {each.count(AGREES)} of {len(each)} T, below at "
            f"{each.count(DISAGREES)} ("
            + ", ".join(f"T = {r.temperature:g} {r.estimate:+.3f}" for r in rows.itertuples())
            + ")"
        )
    seeds = int(comparisons["seeds"].max())
    return Claim(
        MANDAL_GUO,
        name,
        "student > teacher, assistant",
        "; ".join(parts),
        "per T below",
        f"{seeds} seeds",
        "for student - teacher and for student - assistant, the mean over seeds above 0 "
        f"(t-test of the seed means, Holm over the T, p < {alpha:.2g}) at more than half the "
        "T; disagrees when either is below 0 at half the T or more" + gate_rule([attack]),
        DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts),
        QUOTES["central"],
    )


def _seed_level_claim(ctx: Context, row, primary: bool) -> Claim:
    """One seed-level comparison as a claim; `primary`: decided by its unadjusted p."""
    alpha = 1 - ctx.ci_level
    later, earlier = row.comparison.split(" - ")
    why_not = _row_unvalidated(ctx, row)
    verdict = gated(_seed_row_verdict(row, row.p_value if primary else row.holm_p, alpha), why_not)
    per_seed = ", ".join(f"{s} {m:+.4f}" for s, m in row.seed_means.items())
    ours = (
        f"{row.estimate:+.4f} over {row.seeds} seeds (t-test of the seed means p = "
        f"{row.p_value:.2g}, Holm p = {row.holm_p:.2g}; two-level bootstrap "
        f"[{row.bootstrap_low:+.4f}, {row.bootstrap_high:+.4f}]; between-seed SD "
        f"{row.between_sd:.4f}, within-seed SD {row.within_sd:.4f}; per seed: {per_seed})"
    )
    interval = f"[{row.t_low:+.4f}, {row.t_high:+.4f}] (t over seeds)"
    if row.seeds < 2:  # nothing about the spread between seeds: no interval, no p
        ours = (
            f"{row.estimate:+.4f} on seed {per_seed.split()[0]} alone (within-seed SD "
            f"{row.within_sd:.4f}): a seed-level interval needs 2 seeds"
        )
        interval = "no interval"
    elif ctx.seed_half_width is not None:
        needed = seeds_needed(row.between_sd, ctx.seed_half_width, ctx.ci_level)
        ours += f"; seeds for a +-{ctx.seed_half_width:g} t-interval: {needed}"
    if why_not:
        ours += f"; {why_not}"
    family = "its own test, declared before the run" if primary else "Holm over the T"
    name = (
        f"{attack_name(row.attack)}, seed level: the {later} is more robust than the "
        f"{earlier} at T = {row.temperature:g}"
    )
    return Claim(
        MANDAL_GUO,
        f"primary comparison: {name}" if primary else name,
        f"{later} > {earlier}",
        ours,
        interval,
        f"{row.seeds} seeds, {row.images} images",
        "t-test of the mean over seeds of each seed's mean paired difference "
        f"(scipy.stats.ttest_1samp), {family}: p < {alpha:.2g} and mean > 0"
        + gate_rule([row.attack]),
        verdict,
        QUOTES["central"],
    )


def _validation_claim(ctx: Context, row) -> Claim:
    """A cheaper measure against its reference at one T (`replicates.measure_validation`):
    agrees when the ratio's interval sits within 1 +- the tolerance."""
    measure, reference = attack_name(row.measure), attack_name(row.reference)
    detail = ", ".join(
        f"{'seed' if run == 0 else 'validation run seed'} {int(s)} stage {int(k)} {r:.3f}"
        for (run, s, k), r in sorted(row.model_ratios.items())
    )
    return Claim(
        MANDAL_GUO,
        f"the replicates' measure: {measure} measures as {reference} at T = "
        f"{row.temperature:g} (issue 25)",
        f"{measure} / {reference} within 1 +- {VALIDATION_TOLERANCE:g}",
        f"{row.ratio.estimate:.3f} over {row.models} models of {row.chains} chains (per model: "
        f"{detail})",
        unsigned_interval_text(row.ratio),
        f"{row.images} images, {row.pairs} pairs",
        f"ratio of the summed distances on the (model, image) pairs both fooled, BCa "
        "resampling images (replicates.measure_validation); validated when the interval sits "
        f"within 1 +- {VALIDATION_TOLERANCE:g} on at least {VALIDATION_CHAINS} chains",
        _validation_verdict(row.ratio, row.validated),
    )


def _validation_verdict(ratio: Estimate, validated: bool) -> str:
    """Agrees: validated (the interval within the band, on enough chains); disagrees: the
    interval wholly outside the band; else inconclusive."""
    if validated:
        return AGREES
    low, high = 1 - VALIDATION_TOLERANCE, 1 + VALIDATION_TOLERANCE
    if not math.isnan(ratio.low) and (ratio.high < low or ratio.low > high):
        return DISAGREES
    return INCONCLUSIVE
