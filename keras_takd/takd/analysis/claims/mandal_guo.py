"""Mandal & Guo's claims, "Improving Defensive Distillation using Teacher Assistant" (sections
V-VI), checked against a results table and its per-image table; claims 1-9 of
`keras_takd.takd.analysis.claims`.

Accuracy-type claims rest on proportions of `metric_images` test images (Wilson intervals;
differences between models unpaired, the conservative side). Robustness claims compare models
image by image on the images every model compared classifies correctly and the attack fools
(`analysis.statistics.model_distances`): paired differences with a bootstrap interval and the
Wilcoxon p-value, and trends as the mean per-image Spearman rho. Without per-image data a
robustness claim is "inconclusive", its numbers given without interval.
"""

from __future__ import annotations

import math

import pandas as pd

from keras_takd.core import statistics
from keras_takd.core.statistics import AGREES, DISAGREES, INCONCLUSIVE, Estimate
from keras_takd.takd import schema
from keras_takd.takd.analysis.claims.common import (
    NO_PER_IMAGE,
    Claim,
    Context,
    attack_name,
    by_role,
    interval_text,
    n_label,
    no_data,
    pct,
    proportion_of,
)
from keras_takd.takd.analysis.statistics import curve_rho, model_distances
from keras_takd.takd.analysis.tables import ROLES

BASELINE = {"mnist": 0.9938, "cifar10": 0.7772}
ACCURACY_VARIATION = {"mnist": 0.0015, "cifar10": 0.012}
BASELINE_TOLERANCE = 0.005

BASELINE_CLAIM = "baseline accuracy (T = 1 teacher)"
VARIATION_CLAIM = "accuracy varies little with distillation"
CONFIDENCE_CLAIM = "confidence has no concrete trend over T (Fig. 6)"
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
    sweep, source = ctx.sweep, "Mandal & Guo"
    claims = []
    teacher_t1 = sweep[(sweep["role"] == "teacher") & (sweep["temperature"] == 1.0)]
    test = f"95% CI within {100 * BASELINE_TOLERANCE:.1f} points of the paper's"
    if teacher_t1.empty or ctx.dataset not in BASELINE or "test_accuracy" not in sweep:
        claims.append(no_data(source, BASELINE_CLAIM, "", test, "no T = 1 teacher"))
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
                interval_text(ours, 2, 100).replace("[+", "[").replace(", +", ", ") + " %"
                if not math.isnan(ours.low)
                else "no interval",
                n_label(ours),
                test,
                verdict,
            )
        )
    claims += _variation_claims(ctx, sweep, VARIATION_CLAIM)
    claims.append(_accuracy_trend_claim(ctx))
    claims += _more_accurate_claims(ctx)
    return claims


def _differences(ctx: Context, rows: pd.DataFrame, column: str) -> list[tuple[str, Estimate]]:
    """(label, distilled - teacher at the same T) for every distilled row, as proportions."""
    out = []
    teachers = {r["temperature"]: r for _, r in rows[rows["stage"] == 1].iterrows()}
    for _, row in rows[rows["stage"] > 1].dropna(subset=[column]).iterrows():
        teacher = teachers.get(row["temperature"])
        if teacher is None or pd.isna(teacher.get(column)):
            continue
        difference = statistics.proportion_difference(
            proportion_of(row, column, ctx), proportion_of(teacher, column, ctx), ctx.ci_level
        )
        out.append((f"T = {row['temperature']:g} stage {int(row['stage'])}", difference))
    return out


def _variation_claims(ctx: Context, rows: pd.DataFrame, name: str) -> list[Claim]:
    bound = ACCURACY_VARIATION.get(ctx.dataset)
    test = "every |distilled - teacher| CI within the paper's bound"
    diffs = _differences(ctx, rows, "test_accuracy") if "test_accuracy" in rows else []
    if not diffs or bound is None:
        return [no_data("Mandal & Guo", name, "", test, "no distilled rows")]
    verdicts = [statistics.within(d, -bound, bound) for _, d in diffs]
    verdict = DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts)
    label, worst = max(diffs, key=lambda pair: abs(pair[1].estimate))
    return [
        Claim(
            "Mandal & Guo",
            name,
            f"<= {pct(bound)}",
            f"largest {100 * worst.estimate:+.2f} points ({label}); "
            f"{verdicts.count(DISAGREES)} of {len(diffs)} CIs beyond the bound",
            interval_text(worst, 2, 100) + " points"
            if not math.isnan(worst.low)
            else "no interval",
            n_label(worst),
            test,
            verdict,
        )
    ]


def _accuracy_trend_claim(ctx: Context) -> Claim:
    curves = by_role(ctx.sweep, "test_accuracy")
    name, test = "accuracy decreases with T", "accuracy at the highest T - at the lowest T < 0"
    if not curves or any(len(c) < 2 for c in curves.values()) or len(curves["teacher"]) < 3:
        return no_data("Mandal & Guo", name, "decreasing", test, "fewer than 3 T")
    parts, verdicts = [], []
    for role, curve in curves.items():
        rows = ctx.sweep[ctx.sweep["role"] == role].set_index("temperature")
        high = proportion_of(rows.loc[curve.index[-1]], "test_accuracy", ctx)
        low = proportion_of(rows.loc[curve.index[0]], "test_accuracy", ctx)
        difference = statistics.proportion_difference(high, low, ctx.ci_level)
        verdicts.append(statistics.verdict(difference, "negative"))
        parts.append(
            f"{role} {100 * difference.estimate:+.2f} {interval_text(difference, 2, 100)} "
            f"({rho_text(curve)})"
        )
    return Claim(
        "Mandal & Guo",
        name,
        "decreasing",
        "; ".join(parts),
        "per role, in points",
        n_label(high),
        test + " for every role",
        statistics.combine(verdicts),
    )


def _more_accurate_claims(ctx: Context) -> list[Claim]:
    diffs = _differences(ctx, ctx.sweep, "test_accuracy") if "test_accuracy" in ctx.sweep else []
    if not diffs:
        return []
    verdicts = [statistics.verdict(d, "positive") for _, d in diffs]
    more, less = verdicts.count(AGREES), verdicts.count(DISAGREES)
    if more > len(diffs) / 2:
        verdict = AGREES
    elif less >= len(diffs) / 2:
        verdict = DISAGREES
    else:
        verdict = INCONCLUSIVE
    return [
        Claim(
            "Mandal & Guo",
            "at a fixed T distilled models are more accurate in most cases",
            "most cases",
            f"{more} of {len(diffs)} (T, stage) pairs more accurate, {less} less "
            f"(95% CI of each difference)",
            "per pair",
            n_label(diffs[0][1]),
            "more than half the pairs' CIs above 0",
            verdict,
        )
    ]


def _sensitivity_claims(ctx: Context) -> list[Claim]:
    test = "teachers' fraction at the highest T - at the lowest T > 0"
    source = "Mandal & Guo"
    claims = []
    for of, what in SENSITIVITIES.items():
        name = f"higher T: more gradients < 1e-10 (Fig. 4), {what}"
        column = f"sensitivity_{of}_zero_fraction"
        teachers = by_role(ctx.sweep, column).get("teacher")
        if teachers is None or len(teachers) < 3:
            claims.append(no_data(source, name, "increasing", test, "fewer than 3 T"))
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
            )
        )
    return claims


def _stage_of(rows: pd.DataFrame, role: str) -> dict[float, int]:
    """{temperature: stage} of a role in the sweep."""
    chosen = rows[rows["role"] == role]
    return dict(zip(chosen["temperature"], chosen["stage"].astype(int), strict=True))


def _central_claims(ctx: Context, attack: str) -> list[Claim]:
    images = ctx.images(attack)
    name = attack_name(attack)
    source = "Mandal & Guo"
    if images is None:
        return []
    claims = []
    for better, worse in COMPARISONS:
        stages_better, stages_worse = _stage_of(images, better), _stage_of(images, worse)
        temperatures = sorted(set(stages_better) & set(stages_worse))
        if not temperatures:
            continue
        keys = [(t, s) for t in temperatures for s in (stages_better[t], stages_worse[t])]
        table = model_distances(images, keys)
        per_t = {
            t: table[(t, stages_better[t])] - table[(t, stages_worse[t])] for t in temperatures
        }
        test = f"95% CI of the paired mean difference {better} - {worse} > 0"
        pooled = statistics.mean_interval(
            pd.DataFrame(per_t).mean(axis=1).to_numpy(), ctx.ci_level, ctx.seed
        )
        claims.append(
            _robustness_claim(
                f"{name}: the {better} is more robust than the {worse} (pooled over T)",
                f"{better} > {worse}",
                pooled,
                f"mean over T = {', '.join(f'{t:g}' for t in temperatures)} of each image's "
                "difference",
                test,
                source,
            )
        )
        for t in temperatures:
            both = model_distances(images, [(t, stages_better[t]), (t, stages_worse[t])])
            difference = statistics.paired_difference(
                both.iloc[:, 0], both.iloc[:, 1], ctx.ci_level, ctx.seed
            )
            claims.append(
                _robustness_claim(
                    f"{name}: the {better} is more robust than the {worse} at T = {t:g}",
                    f"{better} > {worse}",
                    difference,
                    f"mean {both.iloc[:, 0].mean():.4g} vs {both.iloc[:, 1].mean():.4g}",
                    test,
                    source,
                )
            )
    return claims


def _robustness_claim(claim, paper, estimate: Estimate, detail, test, source) -> Claim:
    p = "" if math.isnan(estimate.p_value) else f"; Wilcoxon p = {estimate.p_value:.2g}"
    return Claim(
        source,
        claim,
        paper,
        (
            f"{estimate.estimate:+.4f} ({detail}{p})"
            if math.isfinite(estimate.estimate)
            else "no image that both models classify correctly and both attacks fool"
        ),
        interval_text(estimate, 4),
        str(estimate.n),
        test,
        statistics.verdict(estimate, "positive"),
    )


def _t_trend_claims(ctx: Context, attack: str) -> list[Claim]:
    name = f"{attack_name(attack)}: robustness increases with T"
    test = "mean per-image Spearman rho(T, perturbation) > 0 (95% CI), every role"
    curves = by_role(ctx.sweep, f"{attack}_mean")
    if not curves:
        return [no_data("Mandal & Guo", name, "increasing", test, "no data")]
    images = ctx.images(attack)
    if images is None:
        rhos = ", ".join(f"{role} {rho_text(c)}" for role, c in curves.items())
        return [
            Claim(
                "Mandal & Guo",
                name,
                "increasing",
                f"of the means: {rhos}",
                NO_PER_IMAGE,
                "",
                test,
                INCONCLUSIVE,
            )
        ]
    parts, verdicts, ns = [], [], []
    for role in ROLES:
        stages = _stage_of(images, role)
        if len(stages) < 3:
            continue
        table = model_distances(images, sorted(stages.items()))
        estimate = statistics.trend(sorted(stages), table.to_numpy(), ctx.ci_level, ctx.seed)
        verdicts.append(statistics.verdict(estimate, "positive"))
        parts.append(f"{role} {estimate.estimate:+.2f} {interval_text(estimate, 2)}")
        ns.append(str(estimate.n))
    if not parts:
        return [no_data("Mandal & Guo", name, "increasing", test, "fewer than 3 T")]
    return [
        Claim(
            "Mandal & Guo",
            name,
            "increasing",
            "; ".join(parts),
            "per role",
            ", ".join(ns),
            test,
            statistics.combine(verdicts),
        )
    ]


def _robustness_claims(ctx: Context) -> list[Claim]:
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
                        "Mandal & Guo",
                        f"{attack_name(attack)}: the student is the most robust on average",
                        "student > assistant, teacher",
                        ", ".join(f"{role} {m:.4g}" for role, m in means.items()),
                        NO_PER_IMAGE,
                        "",
                        "paired differences student - others > 0 (95% CI)",
                        INCONCLUSIVE,
                    )
                )
    return claims


def _confidence_claims(ctx: Context) -> list[Claim]:
    curves = by_role(ctx.sweep, "confidence")
    test = "no per-image confidences: reported, not decided"
    if not curves:
        return [no_data("Mandal & Guo", CONFIDENCE_CLAIM, "", test, "no data")]
    rhos = ", ".join(f"{role} {rho_text(c)}" for role, c in curves.items())
    return [
        Claim(
            "Mandal & Guo",
            CONFIDENCE_CLAIM,
            "no trend",
            f"of the means: {rhos}",
            "no interval",
            "",
            test,
            INCONCLUSIVE,
        )
    ]


def _multistep_claims(ctx: Context) -> list[Claim]:
    chains, source = ctx.chains, "Mandal & Guo"
    if chains.empty:
        return [no_data(source, "multi-step distillation (section VI)", "", "", "no chain > 3")]
    claims = _variation_claims(
        ctx, chains, "multi-step: accuracy varies little with the step (Fig. 7)"
    )
    for attack in schema.ATTACKS:
        column = f"{attack}_mean"
        if column not in chains or chains[column].isna().all():
            continue
        name = f"multi-step: {attack_name(attack)} robustness rises with the step (Fig. 8)"
        test = "mean per-image Spearman rho(step, perturbation) > 0 (95% CI), every T"
        images = ctx.images(attack, multistep=True)
        by_step = chains.groupby("stage")[column].mean().dropna().sort_index()
        if images is None:
            claims.append(
                Claim(
                    source,
                    name,
                    "increasing",
                    f"rho of the means over T: {rho_text(by_step)}",
                    NO_PER_IMAGE,
                    "",
                    test,
                    INCONCLUSIVE,
                )
            )
            continue
        parts, verdicts, ns = [], [], []
        for t, rows in images.groupby("temperature"):
            steps = sorted(rows["stage"].unique())
            table = model_distances(rows, [(t, s) for s in steps])
            estimate = statistics.trend(steps, table.to_numpy(), ctx.ci_level, ctx.seed)
            verdicts.append(statistics.verdict(estimate, "positive"))
            parts.append(f"T = {t:g}: {estimate.estimate:+.2f} {interval_text(estimate, 2)}")
            ns.append(str(estimate.n))
        claims.append(
            Claim(
                source,
                name,
                "increasing",
                "; ".join(parts),
                "per T",
                ", ".join(ns),
                test,
                statistics.combine(verdicts),
            )
        )
    return claims
