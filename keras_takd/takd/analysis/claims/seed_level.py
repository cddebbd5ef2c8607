"""Mandal & Guo's claims (arXiv:2305.08076, sections V-VI) over several independently trained
chains (issue 25). `claims.mandal_guo` hands a claim here when its rows hold two seeds or more
(a `seed` column); one seed keeps the claims there unchanged. Each claim is made per seed from
that seed's own models, never two seeds mixed, then across seeds:

* the central comparisons (claim 7, `seed_level_claims`): per comparison and T, the mean over
  seeds of each seed's mean paired difference, its t-interval over seeds and two-level
  bootstrap interval, the between- and within-seed SDs, and the t-test of the seed means,
  Holm over the T; the per-seed means stay as detail. The primary comparison declared before
  the study ran (`--primary_comparison`, run.json) comes first, decided by its own, unadjusted
  test;
* accuracy (claims 1-4, and the multi-step accuracy) and sensitivity (claim 5): per seed the
  one-seed quantity (the T = 1 teacher's accuracy; each distilled model - its teacher; highest
  T - lowest T per role; the teachers' fraction of vanishing gradients at the highest T - the
  lowest), across seeds its mean and t-interval over seeds (`replicates.seed_mean`), decided
  by the claim's own rule on that interval (within the bound, its sign, in most cases);
* the T trend (claim 6) and the multi-step robustness (claim 9): per role (per T) and seed the
  mean paired difference highest T - lowest T (last step - teacher), across seeds
  `replicates.seed_level` (mean, t-interval, t-test of the seed means), Holm over the roles
  (the T), agreeing when every one is above 0.

A comparison resting on a cheaper measure (FMN) alone at a T where it is not validated
against C&W is never firm (`Context.unvalidated`); each T's validation is a claim of its own.
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
    NORM_ATTACKS,
    NOT_VALIDATED,
    Claim,
    Context,
    attack_name,
    gate_rule,
    gated,
    interim,
    interval_text,
    measure_name,
    measured_on,
    most_cases,
    no_data,
    pct,
    per_seed_text,
    seed_verdict,
    unsigned_interval_text,
)
from keras_takd.takd.analysis.claims.mandal_guo_paper import (
    ACCURACY_TREND_CLAIM,
    BASELINE,
    BASELINE_CLAIM,
    BASELINE_TOLERANCE,
    CENTRAL_CLAIM,
    MANDAL_GUO,
    MORE_ACCURATE_CLAIM,
    QUOTES,
    distilled_pairs,
    last_step_pairs,
    measured,
    percent_interval,
    t_trend_pairs,
    why_text,
)
from keras_takd.takd.analysis.replicates import (
    LAST_STEP,
    VALIDATION_CHAINS,
    VALIDATION_TOLERANCE,
    SeedLevel,
    is_interim,
    parse_comparison,
    seed_level,
    seed_level_differences,
    seed_mean,
    seeds_needed,
    seeds_with,
)
from keras_takd.takd.analysis.statistics import (
    holm,
    model_distances,
)
from keras_takd.takd.analysis.tables import SEED_COLUMN, chain_length


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


def baseline_claim(ctx: Context) -> Claim:
    """Claim 1 over seeds: the mean over seeds of the T = 1 teacher's accuracy, its t-interval
    within `BASELINE_TOLERANCE` of the paper's."""
    test = f"95% t-interval over seeds within {100 * BASELINE_TOLERANCE:.1f} points of the paper's"
    found = _over_seeds(ctx, ctx.sweep, {"T = 1 teacher": ((1.0, 1), None)}, "test_accuracy")
    if not found or ctx.dataset not in BASELINE:
        return no_data(MANDAL_GUO, BASELINE_CLAIM, "", test, "no T = 1 teacher", QUOTES["baseline"])
    ours, paper = found["T = 1 teacher"], BASELINE[ctx.dataset]
    return Claim(
        MANDAL_GUO,
        BASELINE_CLAIM,
        pct(paper),
        f"{pct(ours.mean.estimate)}, mean over {ours.mean.n} seeds (per seed: "
        + ", ".join(f"{seed} {pct(v)}" for seed, v in ours.per_seed.items())
        + ")",
        percent_interval(ours.mean) + " (t over seeds)",
        f"{ours.mean.n} seeds",
        test,
        statistics.within(ours.mean, paper - BASELINE_TOLERANCE, paper + BASELINE_TOLERANCE),
        QUOTES["baseline"],
    )


def variation_claim(ctx, rows, pairs, name, quote, bound) -> Claim:
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


def accuracy_trend_claim(ctx: Context, pairs: dict) -> Claim:
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


def more_accurate_claims(ctx: Context) -> list[Claim]:
    """Distilled - teacher at each (T, stage), a mean over seeds, above 0 at most pairs."""
    pairs = distilled_pairs(ctx.sweep) if "test_accuracy" in ctx.sweep else {}
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


def sensitivity_claim(ctx: Context, name: str, column: str, temperatures) -> Claim:
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
            f"{why_text(self.why_not)})"
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


def t_trend_claim(ctx: Context, attack: str) -> Claim:
    """Section V-C's T trend over seeds: per role and seed, the mean paired difference highest
    T - lowest T; across seeds their mean, t-interval and t-test, Holm over the roles."""
    seeds = ctx.image_seeds(*NORM_ATTACKS[attack])
    images = ctx.norm_images(attack, seed=seeds[0]) if seeds else None
    name = f"{measure_name(attack, images)}, seed level: robustness increases with T"
    alpha = 1 - ctx.ci_level
    test = measured(
        name,
        "per role and seed, the mean paired difference highest T - lowest T; t-test of the "
        f"seed means (scipy.stats.ttest_1samp), Holm over the roles: adjusted p < {alpha:.2g} "
        "and mean > 0, every role",
    ) + _seed_gate_rule(ctx, attack)
    quote = QUOTES["temperature"]
    tests = _seed_tests(ctx, attack, t_trend_pairs) if images is not None else {}
    if not tests:
        why = "no data" if images is None else "fewer than 2 T"
        return no_data(MANDAL_GUO, name, "increasing", test, why, quote)
    (high, _), (low, _) = next(iter(t_trend_pairs(images).values()))
    return _seed_tests_claim(
        name, f"T = {high:g} - T = {low:g}: ", tests, "per role", test, alpha, quote
    )


def multistep_claim(ctx: Context, attack: str, name: str) -> Claim:
    """Section VI over seeds: per T and seed the mean paired difference last step - teacher;
    across seeds their mean, t-interval and t-test, Holm over the T."""
    alpha = 1 - ctx.ci_level
    tests = _seed_tests(ctx, attack, last_step_pairs, multistep=True)
    tests = {f"T = {t:g}": found for t, found in tests.items()}
    test = (
        "per T and seed, the mean paired difference last step - teacher; t-test of the seed "
        f"means, Holm over the T: adjusted p < {alpha:.2g} and mean > 0, every T"
    ) + _seed_gate_rule(ctx, attack, multistep=True)
    quote = QUOTES["multistep_robustness"]
    if not tests:  # every long chain still short of its last step, or not yet attacked there
        why = "no seed's last step shares a fooled image with its teacher yet"
        return no_data(MANDAL_GUO, f"{name}, seed level", "increasing", test, why, quote)
    return _seed_tests_claim(f"{name}, seed level", "", tests, "per T", test, alpha, quote)


def multistep_primary_claim(ctx: Context, attack: str) -> Claim | None:
    """Section VI's test as a study declared it before it ran
    (`--primary_comparison=last-teacher@<T>`, `replicates.LAST_STEP`): per seed the mean
    paired difference last step - teacher at that T, across seeds its t-test, decided by its
    own unadjusted p and only with every declared seed (`_comparison_claim`). With chains of
    several lengths at that T (the tables of several runs), each seed's longest chain is its
    last step, as in `multistep_claim`. None when the study declared no such test."""
    declared = parse_comparison(ctx.primary_comparison) if ctx.primary_comparison else None
    if declared is None or declared[:2] != LAST_STEP:
        return None
    temperature = declared[2]
    seeds = ctx.image_seeds(*NORM_ATTACKS[attack], multistep=True)
    images = ctx.norm_images(attack, multistep=True, seed=seeds[0]) if seeds else None
    name = (
        f"{measure_name(attack, images)}, seed level: the last step is more robust than the "
        f"teacher at T = {temperature:g}"
    )
    tests = _seed_tests(ctx, attack, last_step_pairs, multistep=True) if seeds else {}
    found = [test for t, test in tests.items() if math.isclose(t, temperature)]
    rule = measured(name, "") + _seed_gate_rule(ctx, attack, multistep=True)
    quote = QUOTES["multistep_robustness"]
    if not found:
        why = _no_last_step(ctx, attack, temperature)
        return no_data(
            MANDAL_GUO, f"primary comparison: {name}", "last step > teacher", "", why, quote
        )
    trained = seeds_with(ctx.chains, ("student", "teacher", temperature))  # a long chain's last
    return _comparison_claim(ctx, name, "last step > teacher", found[0], rule, quote, trained)


def _no_last_step(ctx: Context, attack: str, temperature: float) -> str:
    """Why the declared multi-step test has no seed at `temperature`: nothing attacked there,
    no chain's last step attacked yet, or no image both the last step and the teacher were
    fooled on."""
    seeds = ctx.image_seeds(*NORM_ATTACKS[attack], multistep=True)
    at = [ctx.norm_images(attack, multistep=True, seed=s) for s in seeds]
    at = [rows[np.isclose(rows["temperature"], temperature)] for rows in at]
    at = [rows for rows in at if not rows.empty]
    if not at:
        return f"no chain of more than 3 models is attacked at T = {temperature:g}"
    if not any((rows["stage"] == chain_length(rows)).any() for rows in at):
        return f"no chain's last step is attacked at T = {temperature:g} yet"
    return f"no seed's last step and teacher at T = {temperature:g} share a fooled image"


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


def seed_count(ctx: Context) -> int:
    """How many seeds the per-image rows of the dataset hold (0 without per-image rows)."""
    if ctx.per_image is None:
        return 0
    rows = ctx.per_image[ctx.per_image["dataset"] == ctx.dataset]
    return int(rows[SEED_COLUMN].nunique()) if SEED_COLUMN in rows else int(not rows.empty)


def robustness_claims(ctx: Context) -> list[Claim]:
    """Claims 6-7 over seeds: the central comparisons (`seed_level_claims`, the declared
    primary first), then the T trend of each norm."""
    claims = seed_level_claims(ctx, ctx.primary_comparison)
    return claims + [t_trend_claim(ctx, attack) for attack in schema.ATTACKS]


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
    """One seed-level comparison (`seed_level_differences`' row) as a claim; `primary`: the
    declared one, decided by its unadjusted p."""
    later, earlier = row.comparison.split(" - ")
    fields = {field.name: getattr(row, field.name) for field in dataclasses.fields(SeedLevel)}
    test = _SeedTest(SeedLevel(**fields), row.holm_p, row.seed_means, _row_unvalidated(ctx, row))
    name = (
        f"{attack_name(row.attack)}, seed level: the {later} is more robust than the "
        f"{earlier} at T = {row.temperature:g}"
    )
    compared = (later, earlier, float(row.temperature))
    trained = seeds_with(ctx.sweep, compared) if primary else None  # chains trained so far
    return _comparison_claim(
        ctx, name, f"{later} > {earlier}", test, gate_rule([row.attack]), QUOTES["central"], trained
    )


def _comparison_claim(
    ctx: Context,
    name: str,
    claimed: str,
    test: _SeedTest,
    rule: str,
    quote: str,
    trained: int | None = None,
) -> Claim:
    """A seed-level comparison as a claim: the later model claimed the more robust.

    Args:
        ctx: the dataset's context.
        name: the claim, without "primary comparison: ".
        claimed: what the paper says, e.g. "student > teacher".
        test: the comparison over seeds.
        rule: the end of the test column (`gate_rule`).
        quote: the paper's words.
        trained: for the declared primary comparison, how many seeds have trained both its
            models: below the declared seeds it is an interim look, and with fewer seeds in
            `test` (models not yet attacked, or an attack run on some seeds only) it is not
            decided either. None: not the primary, decided by its Holm-adjusted p.
    """
    alpha, level, primary = 1 - ctx.ci_level, test.level, trained is not None
    p_value = level.p_value if primary else test.holm_p
    verdict = gated(
        seed_verdict(level.estimate, p_value, level.seeds, "positive", alpha), test.why_not
    )
    per_seed = ", ".join(f"{s} {m:+.4f}" for s, m in test.seed_means.items())
    ours = (
        f"{level.estimate:+.4f} over {level.seeds} seeds (t-test of the seed means p = "
        f"{level.p_value:.2g}, Holm p = {test.holm_p:.2g}; two-level bootstrap "
        f"[{level.bootstrap_low:+.4f}, {level.bootstrap_high:+.4f}]; between-seed SD "
        f"{level.between_sd:.4f}, within-seed SD {level.within_sd:.4f}; per seed: {per_seed})"
    )
    interval = f"[{level.t_low:+.4f}, {level.t_high:+.4f}] (t over seeds)"
    if level.seeds < 2:  # nothing about the spread between seeds: no interval, no p
        ours = (
            f"{level.estimate:+.4f} on seed {per_seed.split()[0]} alone (within-seed SD "
            f"{level.within_sd:.4f}): a seed-level interval needs 2 seeds"
        )
        interval = "no interval"
    elif ctx.seed_half_width is not None:
        needed = seeds_needed(level.between_sd, ctx.seed_half_width, ctx.ci_level)
        ours += f"; seeds for a +-{ctx.seed_half_width:g} t-interval: {needed}"
    if test.why_not:
        ours += f"; {test.why_not}"
    declared = ctx.declared_seeds
    if primary and verdict != NOT_VALIDATED and is_interim(trained, declared):
        verdict = interim(trained, declared)
        ours += f"; an interim look: the test was declared for {declared} seeds"
    elif primary and verdict != NOT_VALIDATED and is_interim(level.seeds, declared):
        # every seed trained, fewer measured: not yet attacked, or this attack ran on a few
        verdict = measured_on(level.seeds, declared)
        ours += f"; measured on {level.seeds} of the {declared} seeds the test was declared for"
    family = "Holm over the T"
    if primary:
        family = "its own test, declared before the run"
        if ctx.declared_seeds is not None:
            family += f" for {ctx.declared_seeds} seeds (decided only with all of them)"
    return Claim(
        MANDAL_GUO,
        f"primary comparison: {name}" if primary else name,
        claimed,
        ours,
        interval,
        f"{level.seeds} seeds, {level.images} images",
        "t-test of the mean over seeds of each seed's mean paired difference "
        f"(scipy.stats.ttest_1samp), {family}: p < {alpha:.2g} and mean > 0" + rule,
        verdict,
        quote,
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
