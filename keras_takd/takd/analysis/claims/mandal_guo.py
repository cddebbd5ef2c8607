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

With rows of several seeds (independent chains, issue 25) each claim is made at the seed level
instead (`claims.seed_level`); one seed keeps the claims above unchanged. What the paper states
and which models each claim compares is in `claims.mandal_guo_paper`.
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
from keras_takd.takd.analysis.claims import seed_level
from keras_takd.takd.analysis.claims.common import (
    NO_PER_IMAGE,
    NORM_ATTACKS,
    NOT_TESTED,
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
    proportion_of,
    seeds_of,
)
from keras_takd.takd.analysis.claims.mandal_guo_paper import (
    ACCURACY_TREND_CLAIM,
    ACCURACY_VARIATION,
    BASELINE,
    BASELINE_CLAIM,
    BASELINE_TOLERANCE,
    CENTRAL_CLAIM,
    COMPARISONS,
    CONFIDENCE_CLAIM,
    CONFIDENCE_DATASET,
    MANDAL_GUO,
    MORE_ACCURATE_CLAIM,
    QUOTES,
    SENSITIVITIES,
    VARIATION_CLAIM,
    distilled_pairs,
    last_step_pairs,
    measured,
    percent_interval,
    rho_text,
    stage_of,
    t_trend_pairs,
    why_text,
)
from keras_takd.takd.analysis.statistics import (
    MeanTest,
    PairedRateTest,
    model_distances,
    paired_accuracy_tests,
    paired_mean_test,
    with_holm,
)


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
    """Claims 1-4: the baseline, the variation with distillation, the trend over T and the
    distilled models' accuracy."""
    return [
        _baseline_claim(ctx),
        *_variation_claims(ctx, ctx.sweep, VARIATION_CLAIM, QUOTES["variation"]),
        _accuracy_trend_claim(ctx),
        *_more_accurate_claims(ctx),
    ]


def _baseline_claim(ctx: Context) -> Claim:
    sweep = ctx.sweep
    if len(seeds_of(sweep)) > 1:  # one T = 1 teacher per seed
        return seed_level.baseline_claim(ctx)
    teacher_t1 = sweep[(sweep["role"] == "teacher") & (sweep["temperature"] == 1.0)]
    test = f"95% CI within {100 * BASELINE_TOLERANCE:.1f} points of the paper's"
    if teacher_t1.empty or ctx.dataset not in BASELINE or "test_accuracy" not in sweep:
        return no_data(MANDAL_GUO, BASELINE_CLAIM, "", test, "no T = 1 teacher", QUOTES["baseline"])
    ours = proportion_of(teacher_t1.iloc[0], "test_accuracy", ctx)
    paper = BASELINE[ctx.dataset]
    return Claim(
        MANDAL_GUO,
        BASELINE_CLAIM,
        pct(paper),
        pct(ours.estimate),
        percent_interval(ours),
        n_label(ours),
        test,
        statistics.within(ours, paper - BASELINE_TOLERANCE, paper + BASELINE_TOLERANCE),
        QUOTES["baseline"],
    )


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


def _variation_claims(
    ctx: Context, rows: pd.DataFrame, name: str, quote: str, multistep: bool = False
) -> list[Claim]:
    bound = ACCURACY_VARIATION.get(ctx.dataset)
    test = "every |distilled - teacher| CI within the paper's bound"
    pairs = distilled_pairs(rows) if "test_accuracy" in rows else {}
    if not pairs or bound is None:
        return [no_data(MANDAL_GUO, name, "", test, "no distilled rows", quote)]
    if len(seeds_of(rows)) > 1:
        return [seed_level.variation_claim(ctx, rows, pairs, name, quote, bound)]
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
        stage = stage_of(ctx.sweep, role)
        high, low = curve.index[-1], curve.index[0]
        pairs[role] = ((high, stage[high]), (low, stage[low]))
    if len(seeds_of(ctx.sweep)) > 1:
        return seed_level.accuracy_trend_claim(ctx, pairs)
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
    if len(seeds_of(ctx.sweep)) > 1:
        return seed_level.more_accurate_claims(ctx)
    pairs = distilled_pairs(ctx.sweep) if "test_accuracy" in ctx.sweep else {}
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
            claims.append(seed_level.sensitivity_claim(ctx, name, column, teachers.index))
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


def _per_t_pairs(images: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """{(better, worse): {T: ((T, stage of better), (T, stage of worse))}} for each of
    `COMPARISONS` at the temperatures of both roles."""
    out = {}
    for better, worse in COMPARISONS:
        stages_better, stages_worse = stage_of(images, better), stage_of(images, worse)
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
                    measured(
                        name,
                        f"paired t-test of the mean difference {better} - {worse}, Holm over "
                        f"{len(tests)} T: adjusted p < {1 - ctx.ci_level:.2g} and mean > 0",
                    )
                    + rule,
                    why_not[(better, worse)][t],
                )
            )
    return claims


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
        measured(
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
    stages_better, stages_worse = stage_of(images, better), stage_of(images, worse)
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
        measured(
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
            f"{estimate.estimate:+.4f} ({p_text(test)}){why_text(why_not)}"
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
    test = measured(
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
    pairs = t_trend_pairs(images)
    if not pairs:
        return [no_data(MANDAL_GUO, name, "increasing", test, "fewer than 2 T", quote)]
    tests, why_not = _mean_tests(ctx, images, pairs), _unvalidated(ctx, images, pairs)
    (high, _), (low, _) = next(iter(pairs.values()))  # the roles of a sweep share their T
    parts = [
        f"{role} {t.difference.estimate:+.3f} {interval_text(t.difference, 3)} "
        f"(Holm p = {t.holm_p:.2g}{why_text(why_not[role])})"
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


def _robustness_claims(ctx: Context) -> list[Claim]:
    if seed_level.seed_count(ctx) >= 2:
        return seed_level.robustness_claims(ctx)
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
    primary = []  # the test a study declared (last-teacher@<T>) leads the section
    for attack in schema.ATTACKS:  # each norm, measured by C&W's attack or FMN's
        columns = [f"{a}_mean" for a in NORM_ATTACKS[attack]]
        columns = [c for c in columns if c in chains and chains[c].notna().any()]
        if columns:
            primary.append(seed_level.multistep_primary_claim(ctx, attack))
            claims.append(_multistep_robustness_claim(ctx, attack, chains, columns[0]))
    return [claim for claim in primary if claim is not None] + claims


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
        return seed_level.multistep_claim(ctx, attack, name)
    images = ctx.norm_images(attack, multistep=True)
    if images is None:
        by_step = chains.groupby("stage")[column].mean().dropna().sort_index()
        over = "T and seeds" if len(seeds_of(chains)) > 1 else "T"
        ours = f"of the means over {over}: {rho_text(by_step)}"
        return Claim(
            MANDAL_GUO, name, "increasing", ours, NO_PER_IMAGE, "", test, INCONCLUSIVE, quote
        )
    pairs = last_step_pairs(images)
    tests, why_not = _mean_tests(ctx, images, pairs), _unvalidated(ctx, images, pairs)
    parts = [
        f"T = {t:g}: {test.difference.estimate:+.3f} {interval_text(test.difference, 3)} "
        f"(Holm p = {test.holm_p:.2g}{why_text(why_not[t])})"
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
