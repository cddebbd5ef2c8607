"""Checks results against the claims of Mandal & Guo, Papernot et al. and Carlini & Wagner.

Each `Claim` sets what a paper says beside what our results show, with the estimate's
confidence interval, the number of observations it rests on, the test applied and a verdict
(`keras_takd.core.statistics`):

* "agrees": the interval lies wholly on the side the paper claims;
* "disagrees": it lies wholly on the other side (or beyond a bound the paper states);
* "inconclusive": anything else, including a claim whose data carry no interval;
* "no data": the columns or rows it needs are missing (e.g. no multi-step chain was run).

Robustness claims need the per-image table of the evaluation (`per_image.csv`, see
`keras_takd.takd.evaluation.per_image`): models are compared image by image on the same
images, those that both models classify correctly and both attacks fool (the paired
difference of the minimal perturbations, a bootstrap interval resampling images, the Wilcoxon
p-value). Without it a robustness claim is "inconclusive", its numbers given without interval.
Accuracy-type claims rest on proportions of `metric_images` test images (Wilson intervals;
differences between models unpaired, the conservative side).

The claims (Mandal & Guo sections V-VI unless noted), per dataset:

1. Baseline accuracy of the T = 1 teacher (99.38% MNIST, 77.72% CIFAR-10), within
   `BASELINE_TOLERANCE`.
2. Accuracy varies little with distillation: |distilled - teacher at the same T| <= 0.15%
   (MNIST), 1.2% (CIFAR-10), for every distilled model.
3. Accuracy decreases with T: the highest T's accuracy below the lowest T's, every role.
4. At a fixed T the distilled models are more accurate "in most cases".
5. Higher T makes more input gradients vanish (Fig. 4), for the gradient of the sum of logits
   (the authors' code) and of the T = 1 softmax (Papernot's): the teachers' fraction of images
   with sensitivity < 1e-10 is higher at the highest T than at the lowest.
6. Robustness (the minimal perturbation) increases with T, per attack: the mean over images of
   Spearman's rho between T and the image's perturbation > 0, for every role.
7. The teacher assistant makes distillation more robust (the paper's central claim, V-C): at
   the same T the student (stage 3) is more robust than the assistant (stage 2), and both are
   more robust than the teacher; per attack, pooled over T (each image's mean difference over
   the temperatures) and at each T.
8. Confidence shows no concrete trend over T (Fig. 6): cannot be decided without per-image
   confidences; reported as inconclusive with Spearman's rho of the means.
9. Multi-step (section VI): accuracy varies little with the step (bound of 2), and robustness
   rises with the step (mean per-image rho(step, perturbation) > 0, at each T).
10. Papernot et al. (arXiv:1511.04508): distillation at high T cuts the adversarial success rate
    (95.89% -> 0.45%). Ours: C&W L2 success within the L2 budget, T = 1 teacher vs the
    highest-T student, on the same images; agrees if it falls by more than half.
11. Carlini & Wagner (arXiv:1608.04644): distillation does not stop their attacks: the L2 attack
    on the logits succeeds on >= 95% of images of every model; and the same attack against
    softmax(logits / T) (the gradient-masking check) succeeds less often at the highest T.
12. Croce & Hein (arXiv:2003.01690), when the evaluation ran APGD-CE and APGD-DLR at the same
    eps: cross-entropy attacks underrate a distilled model and the logit-scale-invariant DLR
    loss does not, so at the highest T APGD-DLR fools more images than APGD-CE, every stage,
    on the same images (McNemar).

The command line is `python -m keras_takd.takd.compare` (it prints these tables as Markdown).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from keras_takd.core import statistics
from keras_takd.core.statistics import AGREES, DISAGREES, INCONCLUSIVE, NO_DATA, Estimate
from keras_takd.takd import schema
from keras_takd.takd.figures import ROLES, chain_length, dataset_label

BASELINE = {"mnist": 0.9938, "cifar10": 0.7772}
ACCURACY_VARIATION = {"mnist": 0.0015, "cifar10": 0.012}
BASELINE_TOLERANCE = 0.005

BASELINE_CLAIM = "baseline accuracy (T = 1 teacher)"
VARIATION_CLAIM = "accuracy varies little with distillation"
CONFIDENCE_CLAIM = "confidence has no concrete trend over T (Fig. 6)"
PAPERNOT_CLAIM = "distillation at high T cuts the adversarial success rate"
CARLINI_CLAIM = "distillation does not stop the L2 attack on the logits"
MASKING_CLAIM = "attacking softmax(z / T) instead of the logits masks the gradient"
APGD_CLAIM = "cross-entropy attacks underrate a distilled model; APGD-DLR does not"
# Fig. 4 of Mandal & Guo: the fraction of test images whose mean |input gradient| < 1e-10, of
# the sum of the logits (the authors' code) and of the T = 1 softmax (Papernot's gradient).
SENSITIVITIES = {
    "logits": "gradient of the sum of logits (the authors' code)",
    "softmax": "gradient of the T = 1 softmax (Papernot)",
}
# The paper's central comparison (V-C): (more robust, less robust) stages of a 3-model chain.
COMPARISONS = (("student", "assistant"), ("assistant", "teacher"), ("student", "teacher"))
NO_PER_IMAGE = "no interval: no per-image data"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim: who says it, what they report, what we measured, its interval and verdict."""

    source: str
    claim: str
    paper: str
    ours: str
    interval: str
    n: str
    test: str
    verdict: str  # "agrees", "disagrees", "inconclusive" or "no data"


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every claim of one dataset reads: its rows, per-image rows and settings."""

    rows: pd.DataFrame
    per_image: pd.DataFrame | None
    dataset: str
    confidence: float
    seed: int

    @property
    def sweep(self) -> pd.DataFrame:
        """Rows of three-model chains (teacher, assistant, student)."""
        return self.rows[chain_length(self.rows) <= 3]

    @property
    def chains(self) -> pd.DataFrame:
        """Rows of the multi-step chains (more than three models)."""
        return self.rows[chain_length(self.rows) > 3]

    def images(self, attack: str, multistep: bool = False) -> pd.DataFrame | None:
        """Per-image rows of one attack on the sweep's (or the long chains') models."""
        if self.per_image is None:
            return None
        table = self.per_image[
            (self.per_image["dataset"] == self.dataset) & (self.per_image["attack"] == attack)
        ]
        long = table[schema.CHAIN_LENGTH_COLUMN] > 3
        table = table[long] if multistep else table[~long]
        return table if not table.empty else None


def _no_data(source: str, claim: str, paper: str, test: str, why: str) -> Claim:
    return Claim(source, claim, paper, why, "", "", test, NO_DATA)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _interval(estimate: Estimate, digits: int = 3, scale: float = 1.0) -> str:
    if math.isnan(estimate.low):
        return "no interval"
    return f"[{scale * estimate.low:+.{digits}f}, {scale * estimate.high:+.{digits}f}]"


def _rho(curve: pd.Series) -> float:
    """Spearman's rho between a curve's index (T or step) and its values (NaN below 3 points,
    0 for a constant curve), `scipy.stats.spearmanr` through `statistics.rank_correlation`."""
    curve = curve.dropna()
    if curve.index.nunique() < 3:
        return math.nan
    return statistics.rank_correlation(curve.index.to_numpy(float), curve.to_numpy(float))


def _by_role(df: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """{role: column by temperature} for the roles with data."""
    out = {}
    for role in ROLES:
        rows = df[(df["role"] == role)].dropna(subset=[column]) if column in df else df.iloc[:0]
        if not rows.empty:
            out[role] = rows.groupby("temperature")[column].mean().sort_index()
    return out


# --------------------------------------------------------------------------- proportions


def _proportion(row: pd.Series, column: str, ctx: _Context) -> Estimate:
    """An accuracy-type column of one model as a proportion of its metric images."""
    n = row.get("metric_images")
    value = float(row[column])
    if n is None or pd.isna(n):
        return Estimate(value, math.nan, math.nan, 0, ctx.confidence)
    return statistics.proportion(round(value * int(n)), int(n), ctx.confidence)


def _n_label(estimate: Estimate) -> str:
    return str(estimate.n) if estimate.n else "unknown: no metric_images column"


def _accuracy_claims(ctx: _Context) -> list[Claim]:
    sweep, source = ctx.sweep, "Mandal & Guo"
    claims = []
    teacher_t1 = sweep[(sweep["role"] == "teacher") & (sweep["temperature"] == 1.0)]
    test = f"95% CI within {100 * BASELINE_TOLERANCE:.1f} points of the paper's"
    if teacher_t1.empty or ctx.dataset not in BASELINE or "test_accuracy" not in sweep:
        claims.append(_no_data(source, BASELINE_CLAIM, "", test, "no T = 1 teacher"))
    else:
        ours = _proportion(teacher_t1.iloc[0], "test_accuracy", ctx)
        paper = BASELINE[ctx.dataset]
        verdict = statistics.within(ours, paper - BASELINE_TOLERANCE, paper + BASELINE_TOLERANCE)
        claims.append(
            Claim(
                source,
                BASELINE_CLAIM,
                _pct(paper),
                _pct(ours.estimate),
                _interval(ours, 2, 100).replace("[+", "[").replace(", +", ", ") + " %"
                if not math.isnan(ours.low)
                else "no interval",
                _n_label(ours),
                test,
                verdict,
            )
        )
    claims += _variation_claims(ctx, sweep, VARIATION_CLAIM)
    claims.append(_accuracy_trend_claim(ctx))
    claims += _more_accurate_claims(ctx)
    return claims


def _differences(ctx: _Context, rows: pd.DataFrame, column: str) -> list[tuple[str, Estimate]]:
    """(label, distilled - teacher at the same T) for every distilled row, as proportions."""
    out = []
    teachers = {r["temperature"]: r for _, r in rows[rows["stage"] == 1].iterrows()}
    for _, row in rows[rows["stage"] > 1].dropna(subset=[column]).iterrows():
        teacher = teachers.get(row["temperature"])
        if teacher is None or pd.isna(teacher.get(column)):
            continue
        difference = statistics.proportion_difference(
            _proportion(row, column, ctx), _proportion(teacher, column, ctx), ctx.confidence
        )
        out.append((f"T = {row['temperature']:g} stage {int(row['stage'])}", difference))
    return out


def _variation_claims(ctx: _Context, rows: pd.DataFrame, name: str) -> list[Claim]:
    bound = ACCURACY_VARIATION.get(ctx.dataset)
    test = "every |distilled - teacher| CI within the paper's bound"
    diffs = _differences(ctx, rows, "test_accuracy") if "test_accuracy" in rows else []
    if not diffs or bound is None:
        return [_no_data("Mandal & Guo", name, "", test, "no distilled rows")]
    verdicts = [statistics.within(d, -bound, bound) for _, d in diffs]
    verdict = DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts)
    label, worst = max(diffs, key=lambda pair: abs(pair[1].estimate))
    return [
        Claim(
            "Mandal & Guo",
            name,
            f"<= {_pct(bound)}",
            f"largest {100 * worst.estimate:+.2f} points ({label}); "
            f"{verdicts.count(DISAGREES)} of {len(diffs)} CIs beyond the bound",
            _interval(worst, 2, 100) + " points" if not math.isnan(worst.low) else "no interval",
            _n_label(worst),
            test,
            verdict,
        )
    ]


def _accuracy_trend_claim(ctx: _Context) -> Claim:
    curves = _by_role(ctx.sweep, "test_accuracy")
    name, test = "accuracy decreases with T", "accuracy at the highest T - at the lowest T < 0"
    if not curves or any(len(c) < 2 for c in curves.values()) or len(curves["teacher"]) < 3:
        return _no_data("Mandal & Guo", name, "decreasing", test, "fewer than 3 T")
    parts, verdicts = [], []
    for role, curve in curves.items():
        rows = ctx.sweep[ctx.sweep["role"] == role].set_index("temperature")
        high = _proportion(rows.loc[curve.index[-1]], "test_accuracy", ctx)
        low = _proportion(rows.loc[curve.index[0]], "test_accuracy", ctx)
        difference = statistics.proportion_difference(high, low, ctx.confidence)
        verdicts.append(statistics.verdict(difference, "negative"))
        parts.append(
            f"{role} {100 * difference.estimate:+.2f} {_interval(difference, 2, 100)} "
            f"(rho {_rho(curve):+.2f})"
        )
    return Claim(
        "Mandal & Guo",
        name,
        "decreasing",
        "; ".join(parts),
        "per role, in points",
        _n_label(high),
        test + " for every role",
        statistics.combine(verdicts),
    )


def _more_accurate_claims(ctx: _Context) -> list[Claim]:
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
            _n_label(diffs[0][1]),
            "more than half the pairs' CIs above 0",
            verdict,
        )
    ]


def _sensitivity_claims(ctx: _Context) -> list[Claim]:
    test = "teachers' fraction at the highest T - at the lowest T > 0"
    source = "Mandal & Guo"
    claims = []
    for of, what in SENSITIVITIES.items():
        name = f"higher T: more gradients < 1e-10 (Fig. 4), {what}"
        column = f"sensitivity_{of}_zero_fraction"
        teachers = _by_role(ctx.sweep, column).get("teacher")
        if teachers is None or len(teachers) < 3:
            claims.append(_no_data(source, name, "increasing", test, "fewer than 3 T"))
            continue
        rows = ctx.sweep[ctx.sweep["role"] == "teacher"].set_index("temperature")
        high = _proportion(rows.loc[teachers.index[-1]], column, ctx)
        low = _proportion(rows.loc[teachers.index[0]], column, ctx)
        difference = statistics.proportion_difference(high, low, ctx.confidence)
        ours = (
            f"{_pct(low.estimate)} at T = {teachers.index[0]:g}, {_pct(high.estimate)} at "
            f"T = {teachers.index[-1]:g} (rho {_rho(teachers):+.2f})"
        )
        interval = _interval(difference, 2, 100)
        claims.append(
            Claim(
                source,
                name,
                "increasing",
                ours,
                interval + " points" if interval != "no interval" else interval,
                _n_label(high),
                test,
                statistics.verdict(difference, "positive"),
            )
        )
    return claims


# --------------------------------------------------------------------------- robustness


def _attack_name(attack: str) -> str:
    return {"l0": "C&W L0", "l2": "C&W L2", "linf": "C&W L-inf"}.get(attack, attack)


def _distances(images: pd.DataFrame, keys: Sequence[tuple]) -> pd.DataFrame:
    """[image x model] distances for the models `keys` ((temperature, stage) pairs), keeping
    the images that every one of them classified correctly and the attack fooled."""
    columns = {}
    for temperature, stage in keys:
        rows = images[(images["temperature"] == temperature) & (images["stage"] == stage)]
        columns[(temperature, stage)] = rows.set_index("image")["distance"].where(
            rows.set_index("image")["success"]
        )
    return pd.DataFrame(columns).dropna()


def _stage_of(rows: pd.DataFrame, role: str) -> dict[float, int]:
    """{temperature: stage} of a role in the sweep."""
    chosen = rows[rows["role"] == role]
    return dict(zip(chosen["temperature"], chosen["stage"].astype(int), strict=True))


def _central_claims(ctx: _Context, attack: str) -> list[Claim]:
    images = ctx.images(attack)
    name = _attack_name(attack)
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
        table = _distances(images, keys)
        per_t = {
            t: table[(t, stages_better[t])] - table[(t, stages_worse[t])] for t in temperatures
        }
        test = f"95% CI of the paired mean difference {better} - {worse} > 0"
        pooled = statistics.mean_interval(
            pd.DataFrame(per_t).mean(axis=1).to_numpy(), ctx.confidence, ctx.seed
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
            both = _distances(images, [(t, stages_better[t]), (t, stages_worse[t])])
            difference = statistics.paired_difference(
                both.iloc[:, 0], both.iloc[:, 1], ctx.confidence, ctx.seed
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
        f"{estimate.estimate:+.4f} ({detail}{p})",
        _interval(estimate, 4),
        str(estimate.n),
        test,
        statistics.verdict(estimate, "positive"),
    )


def _t_trend_claims(ctx: _Context, attack: str) -> list[Claim]:
    name = f"{_attack_name(attack)}: robustness increases with T"
    test = "mean per-image Spearman rho(T, perturbation) > 0 (95% CI), every role"
    curves = _by_role(ctx.sweep, f"{attack}_mean")
    if not curves:
        return [_no_data("Mandal & Guo", name, "increasing", test, "no data")]
    images = ctx.images(attack)
    if images is None:
        rhos = ", ".join(f"{role} {_rho(c):+.2f}" for role, c in curves.items())
        return [
            Claim(
                "Mandal & Guo",
                name,
                "increasing",
                f"rho of the means: {rhos}",
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
        table = _distances(images, sorted(stages.items()))
        estimate = statistics.trend(sorted(stages), table.to_numpy(), ctx.confidence, ctx.seed)
        verdicts.append(statistics.verdict(estimate, "positive"))
        parts.append(f"{role} {estimate.estimate:+.2f} {_interval(estimate, 2)}")
        ns.append(str(estimate.n))
    if not parts:
        return [_no_data("Mandal & Guo", name, "increasing", test, "fewer than 3 T")]
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


def _robustness_claims(ctx: _Context) -> list[Claim]:
    claims = []
    for attack in schema.ATTACKS:
        claims += _t_trend_claims(ctx, attack)
        central = _central_claims(ctx, attack)
        if central:
            claims += central
        elif ctx.per_image is None:
            means = {r: float(c.mean()) for r, c in _by_role(ctx.sweep, f"{attack}_mean").items()}
            if "student" in means and len(means) > 1:
                claims.append(
                    Claim(
                        "Mandal & Guo",
                        f"{_attack_name(attack)}: the student is the most robust on average",
                        "student > assistant, teacher",
                        ", ".join(f"{role} {m:.4g}" for role, m in means.items()),
                        NO_PER_IMAGE,
                        "",
                        "paired differences student - others > 0 (95% CI)",
                        INCONCLUSIVE,
                    )
                )
    return claims


def _confidence_claims(ctx: _Context) -> list[Claim]:
    curves = _by_role(ctx.sweep, "confidence")
    test = "no per-image confidences: reported, not decided"
    if not curves:
        return [_no_data("Mandal & Guo", CONFIDENCE_CLAIM, "", test, "no data")]
    rhos = ", ".join(f"{role} {_rho(c):+.2f}" for role, c in curves.items())
    return [
        Claim(
            "Mandal & Guo",
            CONFIDENCE_CLAIM,
            "no trend",
            f"rho of the means: {rhos}",
            "no interval",
            "",
            test,
            INCONCLUSIVE,
        )
    ]


def _multistep_claims(ctx: _Context) -> list[Claim]:
    chains, source = ctx.chains, "Mandal & Guo"
    if chains.empty:
        return [_no_data(source, "multi-step distillation (section VI)", "", "", "no chain > 3")]
    claims = _variation_claims(
        ctx, chains, "multi-step: accuracy varies little with the step (Fig. 7)"
    )
    for attack in schema.ATTACKS:
        column = f"{attack}_mean"
        if column not in chains or chains[column].isna().all():
            continue
        name = f"multi-step: {_attack_name(attack)} robustness rises with the step (Fig. 8)"
        test = "mean per-image Spearman rho(step, perturbation) > 0 (95% CI), every T"
        images = ctx.images(attack, multistep=True)
        by_step = chains.groupby("stage")[column].mean().dropna().sort_index()
        if images is None:
            claims.append(
                Claim(
                    source,
                    name,
                    "increasing",
                    f"rho of the means over T {_rho(by_step):+.2f}",
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
            table = _distances(rows, [(t, s) for s in steps])
            estimate = statistics.trend(steps, table.to_numpy(), ctx.confidence, ctx.seed)
            verdicts.append(statistics.verdict(estimate, "positive"))
            parts.append(f"T = {t:g}: {estimate.estimate:+.2f} {_interval(estimate, 2)}")
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


# --------------------------------------------------------------------------- attacks' papers


def _success(row: pd.Series, prefix: str, ctx: _Context, within: bool = False) -> Estimate:
    attacked = row.get(f"{prefix}_attacked")
    rate = row[f"{prefix}_budget_success_rate" if within else f"{prefix}_success_rate"]
    if attacked is None or pd.isna(attacked) or pd.isna(rate):
        return Estimate(float(rate), math.nan, math.nan, 0, ctx.confidence)
    return statistics.proportion(round(float(rate) * int(attacked)), int(attacked), ctx.confidence)


def _papernot_claims(ctx: _Context) -> list[Claim]:
    column, source = "l2_budget_success_rate", "Papernot et al."
    sweep = ctx.sweep
    test = "success within the budget at the highest T < half the T = 1 teacher's (95% CI)"
    if column not in sweep or sweep[column].isna().all():
        return [_no_data(source, PAPERNOT_CLAIM, "", test, "no data")]
    rows = sweep.dropna(subset=[column])
    base = rows[(rows["stage"] == 1) & (rows["temperature"] == rows["temperature"].min())]
    last = rows[rows["stage"] == rows["stage"].max()]
    last = last[last["temperature"] == last["temperature"].max()]
    if base.empty or last.empty:
        return [_no_data(source, PAPERNOT_CLAIM, "", test, "no data")]
    base, last = base.iloc[0], last.iloc[0]
    if last["temperature"] <= max(base["temperature"], 1.0):  # no distillation at a high T
        return [_no_data(source, PAPERNOT_CLAIM, "", test, "no T above 1")]
    budget = float(base.get("l2_budget", math.nan))
    images = ctx.images("l2")
    if images is not None:
        within = {}
        for key, row in (("base", base), ("last", last)):
            chosen = images[
                (images["temperature"] == row["temperature"]) & (images["stage"] == row["stage"])
            ].set_index("image")
            within[key] = chosen["success"] & (chosen["distance"] <= budget)
            within[key] = within[key].where(chosen["correct"])
        pair = pd.DataFrame(within).dropna().astype(float)
        estimate = statistics.paired_difference(
            pair["last"], 0.5 * pair["base"], ctx.confidence, ctx.seed
        )
        before, after = pair["base"].mean(), pair["last"].mean()
        n = str(estimate.n)
    else:
        first, second = _success(base, "l2", ctx, True), _success(last, "l2", ctx, True)
        half = dataclasses.replace(
            first, estimate=first.estimate / 2, low=first.low / 2, high=first.high / 2
        )
        estimate = statistics.proportion_difference(second, half, ctx.confidence)
        before, after, n = first.estimate, second.estimate, str(min(first.n, second.n))
    return [
        Claim(
            source,
            PAPERNOT_CLAIM,
            "95.89% -> 0.45% (JSMA, MNIST, T = 100)",
            f"C&W L2 within {budget:g}: {_pct(before)} (T = {base['temperature']:g} teacher) "
            f"-> {_pct(after)} (T = {last['temperature']:g}, stage {int(last['stage'])})",
            _interval(estimate, 3) + " (after - before / 2)",
            n,
            test,
            statistics.verdict(estimate, "negative"),
        )
    ]


def _carlini_claims(ctx: _Context) -> list[Claim]:
    source, claims, df = "Carlini & Wagner", [], ctx.rows
    if "l2_success_rate" in df and df["l2_success_rate"].notna().any():
        rows = df.dropna(subset=["l2_success_rate"])
        rates = [_success(row, "l2", ctx) for _, row in rows.iterrows()]
        verdicts = [statistics.within(r, 0.95, 1.0) for r in rates]
        verdict = DISAGREES if DISAGREES in verdicts else statistics.combine(verdicts)
        worst = min(rates, key=lambda r: r.estimate)
        claims.append(
            Claim(
                source,
                CARLINI_CLAIM,
                "100%",
                f"lowest {_pct(worst.estimate)} of {len(rates)} models",
                _interval(worst, 3) + " (lowest model)",
                str(worst.n) if worst.n else "unknown",
                "every model's success CI >= 95%",
                verdict,
            )
        )
    else:
        claims.append(_no_data(source, CARLINI_CLAIM, "", "", "no l2 columns"))
    masked = f"{schema.MASKED_L2_PREFIX}_success_rate"
    if masked in ctx.sweep and ctx.sweep[masked].notna().any():
        rows = ctx.sweep.dropna(subset=[masked])
        high = rows[rows["temperature"] == rows["temperature"].max()]
        softmax, logits, differences = _success_differences(
            ctx, high, schema.MASKED_L2_PREFIX, "l2"
        )
        verdicts = [statistics.verdict(d, "negative") for d in differences]
        claims.append(
            Claim(
                source,
                MASKING_CLAIM,
                "attack fails on the softmax of a distilled model",
                f"T = {high['temperature'].iloc[0]:g}: softmax(z/T) "
                f"{', '.join(_pct(s.estimate) for s in softmax)} vs logits "
                f"{', '.join(_pct(lg.estimate) for lg in logits)} (per stage)",
                ", ".join(_interval(d, 2) for d in differences),
                ", ".join(str(d.n) for d in differences),
                "softmax success - logits success < 0 at the highest T, every stage",
                statistics.combine(verdicts),
            )
        )
    return claims


def _croce_hein_claims(ctx: _Context) -> list[Claim]:
    """Claim 12, only when both APGD attacks ran (at one eps) on the highest T's models."""
    columns = [f"{a}_{c}" for a in schema.APGD_ATTACKS for c in ("success_rate", "eps")]
    if not all(c in ctx.sweep and ctx.sweep[c].notna().any() for c in columns):
        return []
    rows = ctx.sweep.dropna(subset=columns)
    high = rows[rows["temperature"] == rows["temperature"].max()]
    source, test = (
        "Croce & Hein",
        "APGD-DLR success - APGD-CE success > 0 at the highest T, every stage",
    )
    if not np.allclose(high["apgd_ce_eps"], high["apgd_dlr_eps"]):
        return [_no_data(source, APGD_CLAIM, "", test, "APGD-CE and APGD-DLR ran at other eps")]
    dlr, ce, differences = _success_differences(ctx, high, "apgd_dlr", "apgd_ce")
    return [
        Claim(
            source,
            APGD_CLAIM,
            "CE-based attacks look weaker on distilled models",
            f"T = {high['temperature'].iloc[0]:g}, eps = {high['apgd_ce_eps'].iloc[0]:g}: "
            f"APGD-DLR fools {', '.join(_pct(d.estimate) for d in dlr)} vs APGD-CE "
            f"{', '.join(_pct(c.estimate) for c in ce)} (per stage)",
            ", ".join(_interval(d, 2) for d in differences),
            ", ".join(str(d.n) for d in differences),
            test,
            statistics.combine([statistics.verdict(d, "positive") for d in differences]),
        )
    ]


def _success_differences(ctx: _Context, rows: pd.DataFrame, first: str, second: str):
    """Per model row: success of `first`, of `second`, and first - second (paired on the same
    images where per-image rows exist, else unpaired)."""
    a = [_success(r, first, ctx) for _, r in rows.iterrows()]
    b = [_success(r, second, ctx) for _, r in rows.iterrows()]
    differences = [
        _paired_success(ctx, row, first, second)
        or statistics.proportion_difference(x, y, ctx.confidence)
        for (_, row), x, y in zip(rows.iterrows(), a, b, strict=True)
    ]
    return a, b, differences


def _paired_success(ctx: _Context, row: pd.Series, first: str, second: str) -> Estimate | None:
    """Success of attack `first` - success of attack `second` on one model, on the same
    images (McNemar), or None without per-image rows of both attacks."""
    tables = {"first": ctx.images(first), "second": ctx.images(second)}
    if any(table is None for table in tables.values()):
        return None
    success = {}
    for name, table in tables.items():
        chosen = table[
            (table["temperature"] == row["temperature"]) & (table["stage"] == row["stage"])
        ]
        success[name] = chosen[chosen["correct"]].set_index("image")["success"]
    pair = pd.DataFrame(success).dropna()
    if pair.empty:
        return None
    return statistics.paired_rate_difference(
        pair["first"].astype(bool), pair["second"].astype(bool), ctx.confidence, ctx.seed
    )


def check_claims(
    df: pd.DataFrame,
    dataset: str,
    per_image: pd.DataFrame | None = None,
    confidence: float = statistics.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[Claim]:
    """Every claim of the module docstring for one dataset of a results table.

    Args:
        df: the results table (results.csv of one or more runs).
        dataset: which dataset's rows to check.
        per_image: the per-image table of the same runs (`evaluation.read_per_image`), or
            None: the robustness claims are then inconclusive, without interval.
        confidence: the level of every interval.
        seed: the bootstraps' seed.

    Raises:
        ValueError: no rows of `dataset`, or a confidence outside (0, 1).
    """
    rows = df[df["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"no rows of dataset {dataset!r} in the results")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    ctx = _Context(rows, per_image, dataset, confidence, seed)
    return [
        *_accuracy_claims(ctx),
        *_sensitivity_claims(ctx),
        *_robustness_claims(ctx),
        *_confidence_claims(ctx),
        *_multistep_claims(ctx),
        *_papernot_claims(ctx),
        *_carlini_claims(ctx),
        *_croce_hein_claims(ctx),
    ]


def to_markdown(claims: Sequence[Claim], dataset: str, confidence: float = 0.95) -> str:
    """A Markdown table of the claims, headed by the dataset's name."""
    lines = [
        f"### {dataset_label(dataset)}",
        "",
        f"| source | claim | paper | ours | {confidence:.0%} CI | n | test | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        cells = (c.source, c.claim, c.paper, c.ours, c.interval, c.n, c.test, f"**{c.verdict}**")
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_COLUMNS = {
    "test_accuracy": ("accuracy", lambda v: f"{100 * v:.2f}%"),
    "sensitivity_logits_zero_fraction": ("logits grad < 1e-10", lambda v: f"{100 * v:.1f}%"),
    "sensitivity_softmax_zero_fraction": ("softmax grad < 1e-10", lambda v: f"{100 * v:.1f}%"),
    "confidence": ("confidence", lambda v: f"{v:.3f}"),
    "l0_mean": ("L0 mean (px)", lambda v: f"{v:.1f}"),
    "l2_mean": ("L2 mean", lambda v: f"{v:.3f}"),
    "linf_mean": ("L-inf mean", lambda v: f"{v:.3f}"),
    "l2_budget_success_rate": ("L2 <= budget", lambda v: f"{100 * v:.0f}%"),
    "l2_softmax_T_success_rate": ("L2 on softmax(z/T)", lambda v: f"{100 * v:.0f}%"),
}


def summary_markdown(df: pd.DataFrame, dataset: str) -> str:
    """The numbers behind the claims: one row per (chain length, T, stage) of `dataset`."""
    rows = df[df["dataset"] == dataset].assign(_chain=lambda d: chain_length(d).astype(int))
    rows = rows.sort_values(["_chain", "temperature", "stage"], kind="stable")
    columns = [c for c in SUMMARY_COLUMNS if c in rows and rows[c].notna().any()]
    header = ["chain", "T", "stage", "role"] + [SUMMARY_COLUMNS[c][0] for c in columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for _, row in rows.iterrows():
        cells = [str(row["_chain"]), f"{row['temperature']:g}", str(int(row["stage"])), row["role"]]
        cells += ["" if pd.isna(row[c]) else SUMMARY_COLUMNS[c][1](row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
