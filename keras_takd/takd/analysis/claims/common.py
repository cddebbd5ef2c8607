"""What every paper's claims share: the `Claim` row, the `Context` of one dataset, and how
numbers are written (percentages, intervals, n) and proportions and success rates estimated.

The verdicts follow `keras_takd.core.statistics`: "agrees" when the interval lies wholly on the
side the paper claims, "disagrees" when wholly on the other (or beyond a bound the paper
states), "inconclusive" otherwise, "no data" when the columns or rows a claim needs are missing.
A claim about a mean is decided by a test of the mean (`mean_verdict`: the paired t-test's
p-value, Holm-adjusted over the claim's family of temperatures, below 1 - ci_level, and the
mean's sign). A claim the paper makes about another dataset is "not tested on this dataset".

Tables of several seeds (independent chains, issue 25): `Context.seeds` and
`Context.image_seeds` list them, `Context.images(..., seed=)` gives one seed's per-image rows
and refuses to hand out several seeds at once, and a claim made over seeds is decided by
`seed_verdict` (a test of the mean over seeds) or by its t-interval over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Sequence

import pandas as pd

from keras_takd.core import statistics
from keras_takd.core.statistics import (
    AGREES,
    DEFAULT_CONFIDENCE,
    DISAGREES,
    INCONCLUSIVE,
    NO_DATA,
    Estimate,
)
from keras_takd.takd import schema
from keras_takd.takd.analysis.replicates import (
    REFERENCES,
    RUN_COLUMN,
    VALIDATION_CHAINS,
    VALIDATION_TOLERANCE,
    measure_validation,
    measured_alone,
    within_tolerance,
)
from keras_takd.takd.analysis.statistics import (
    SEED_COLUMN,
    MeanTest,
    PairedRateTest,
    attacked,
    with_seed,
)
from keras_takd.takd.analysis.tables import ROLES, chain_length

NO_PER_IMAGE = "no interval: no per-image data"
NORM_ATTACKS = {norm: (norm, f"fmn_{norm}") for norm in schema.ATTACKS}
"""The minimal-norm attacks of each norm: C&W's and FMN's."""
NOT_TESTED = "not tested on this dataset"
"""The verdict of a claim the paper makes about another dataset than the results hold."""
NOT_VALIDATED = f"{INCONCLUSIVE} (FMN not validated)"
"""The verdict of a comparison a cheaper measure decides alone at a T where it is not
validated against its reference (`Context.unvalidated`)."""


def interim(seeds: int, declared: int) -> str:
    """The verdict of a declared test looked at before all the seeds it was declared for: not
    decided, whatever its p (stopping at the first p < 0.05 would inflate its error rate)."""
    return f"{INCONCLUSIVE} (interim: {seeds} of {declared} declared seeds)"


def measured_on(seeds: int, declared: int) -> str:
    """The verdict of a declared test whose seeds are all trained but fewer are measured (an
    attack not yet run on them, or run on a few seeds only): not decided either."""
    return f"{INCONCLUSIVE} (measured on {seeds} of {declared} declared seeds)"


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
    verdict: str  # "agrees", "disagrees", "inconclusive", "no data" or NOT_TESTED
    quote: str = ""  # the paper's sentence and its section, e.g. 'V-C: "..."'


@dataclasses.dataclass(frozen=True)
class Context:
    """What every claim of one dataset reads: its rows, per-image rows, the intervals' level,
    the bootstraps' seed, the models' per-image predictions (None: none kept), the primary
    comparison a study declared (e.g. "student-teacher@40", None: none) and the half-width a
    seed-level interval should reach, for the seeds each comparison needs (None: not asked)
    and the per-image rows of another run of the same settings, only to validate a cheaper
    measure against C&W (`replicates.measure_validation`; None: none), and the seeds the
    study declared its primary comparison for (None: not known): with fewer, it is not
    decided."""

    rows: pd.DataFrame
    per_image: pd.DataFrame | None
    dataset: str
    ci_level: float
    seed: int
    predictions: pd.DataFrame | None = None
    primary_comparison: str | None = None
    seed_half_width: float | None = None
    validation: pd.DataFrame | None = None
    declared_seeds: int | None = None

    @property
    def sweep(self) -> pd.DataFrame:
        """Rows of three-model chains (teacher, assistant, student)."""
        return self.rows[chain_length(self.rows) <= 3]

    @property
    def chains(self) -> pd.DataFrame:
        """Rows of the multi-step chains (more than three models)."""
        return self.rows[chain_length(self.rows) > 3]

    @property
    def seeds(self) -> list:
        """The seeds of the dataset's model rows, in order ([0] without a seed column)."""
        return seeds_of(self.rows)

    def image_seeds(self, *attacks: str, multistep: bool = False) -> list:
        """The seeds of the per-image rows of these attacks ([] without any)."""
        table = self._attack_rows(attacks, multistep)
        if table is None:
            return []
        return sorted(table[SEED_COLUMN].unique().tolist()) if SEED_COLUMN in table else [0]

    def images(
        self, *attacks: str, multistep: bool = False, seed: int | None = None
    ) -> pd.DataFrame | None:
        """Per-image rows of these attacks on the sweep's (or the long chains') models, of one
        seed: `seed`, or the only one the rows hold.

        Raises:
            ValueError: the rows hold several seeds and `seed` is None (a claim compares one
                trained chain per (T, stage); `image_seeds` lists them).
        """
        table = self._attack_rows(attacks, multistep)
        if table is None or SEED_COLUMN not in table:
            return table if seed in (None, 0) else None
        if seed is None:
            seeds = sorted(table[SEED_COLUMN].unique().tolist())
            if len(seeds) > 1:
                raise ValueError(
                    f"per-image rows of seeds {seeds}: the claims compare one trained chain per "
                    "(T, stage); expected one seed (pass seed=, see Context.image_seeds)"
                )
            return table
        table = table[table[SEED_COLUMN] == seed]
        return table if not table.empty else None

    def _attack_rows(self, attacks: tuple[str, ...], multistep: bool) -> pd.DataFrame | None:
        """Per-image rows of the dataset, `attacks` and chain kind, of every seed, or None."""
        if self.per_image is None:
            return None
        table = self.per_image[
            (self.per_image["dataset"] == self.dataset) & self.per_image["attack"].isin(attacks)
        ]
        long = table[schema.CHAIN_LENGTH_COLUMN] > 3
        table = table[long] if multistep else table[~long]
        return table if not table.empty else None

    def norm_images(
        self, norm: str, multistep: bool = False, seed: int | None = None
    ) -> pd.DataFrame | None:
        """Per-image rows of every minimal-norm attack of `norm` ("l0", "l2", "linf"): C&W's and
        FMN's (`NORM_ATTACKS`), for `analysis.statistics.model_distances` to take each image's
        smallest perturbation any of them found; of one seed, as `images`."""
        return self.images(*NORM_ATTACKS[norm], multistep=multistep, seed=seed)

    @functools.cached_property
    def measure_validation(self) -> pd.DataFrame:
        """Each cheaper measure against its reference per T (`replicates.measure_validation`),
        on the dataset's per-image rows (run 0) and those of the other run given for the
        validation only (`validation`, run 1, whose chains never pair with the run's);
        computed once."""
        rows = self.per_image[self.per_image["dataset"] == self.dataset]
        if self.validation is not None:
            other = with_seed(self.validation[self.validation["dataset"] == self.dataset])
            rows = pd.concat(
                [with_seed(rows).assign(**{RUN_COLUMN: 0}), other.assign(**{RUN_COLUMN: 1})],
                ignore_index=True,
            )
        return measure_validation(rows, self.ci_level, self.seed)

    def unvalidated(self, stages: int, temperature: float, measure: str) -> str:
        """Why `measure` may not decide a comparison alone on the models of `stages` and
        `temperature`, or "" when it may: a reference attack always may, a cheaper measure
        (`replicates.REFERENCES`) only where `measure_validation` validated it (its ratio's
        interval within 1 +- `replicates.VALIDATION_TOLERANCE`, on at least
        `replicates.VALIDATION_CHAINS` chains).

        The validation is per T (issue 25). The check on chains of this length decides where
        it is validated or its interval leaves 1 +- the tolerance (a measured disagreement on
        these very models); where it is absent or rests on too few chains, a validated check
        of the same T on chains of another length (the one over most models) stands for
        them, e.g. a 7-model chain's steps at T = 40 by the 3-model chains' teacher,
        assistant and student at T = 40 (the claims' validation rows name its models)."""
        if measure not in REFERENCES:
            return ""
        name, reference = attack_name(measure), attack_name(REFERENCES[measure])
        checks = self.measure_validation
        at_t = checks[(checks["temperature"] == temperature) & (checks["measure"] == measure)]
        check = _deciding_check(at_t, stages)
        if check is None:
            return f"no {reference} on these models at T = {temperature:g} to validate it"
        if check["validated"]:
            return ""
        ratio, problems = check["ratio"], []
        if not within_tolerance(ratio):
            problems.append(f"not within 1 +- {VALIDATION_TOLERANCE:g}")
        if check["chains"] < VALIDATION_CHAINS:
            problems.append(f"rests on {check['chains']} chain(s), fewer than {VALIDATION_CHAINS}")
        return (
            f"{name} / {reference} at T = {temperature:g} is {ratio.estimate:.3f} "
            f"{unsigned_interval_text(ratio)}: {' and '.join(problems)}"
        )

    def unvalidated_in(self, images: pd.DataFrame, models: Sequence[tuple]) -> str:
        """Why a comparison of `models` ((temperature, stage) pairs) on `images` (one norm's
        rows, `norm_images`) may not be decided, or "": the first reason `unvalidated` gives
        for a cheaper measure standing alone on some image (`replicates.measured_alone`)."""
        for stages, temperature, measure in sorted(measured_alone(images, models)):
            why = self.unvalidated(stages, temperature, measure)
            if why:
                return why
        return ""

    def correct(self, multistep: bool = False) -> pd.DataFrame | None:
        """The prediction rows of the sweep's (or the long chains') models, or None."""
        if self.predictions is None:
            return None
        table = self.predictions[self.predictions["dataset"] == self.dataset]
        long = table[schema.CHAIN_LENGTH_COLUMN] > 3
        table = table[long] if multistep else table[~long]
        return table if not table.empty else None


def _deciding_check(at_t: pd.DataFrame, stages: int) -> pd.Series | None:
    """Of one T's `measure_validation` rows, the one that decides for chains of `stages`
    models (`Context.unvalidated`): their own where validated or its interval out of
    tolerance, else a validated one of another length (over most models), else their own,
    else another's."""
    own = at_t[at_t[schema.CHAIN_LENGTH_COLUMN] == stages]
    others = at_t[at_t[schema.CHAIN_LENGTH_COLUMN] != stages]
    others = others.sort_values(["validated", "models"], ascending=False, kind="stable")
    if not own.empty:
        check = own.iloc[0]
        measured = not math.isnan(check["ratio"].low)  # an interval, not "no spread"
        if check["validated"] or (measured and not within_tolerance(check["ratio"])):
            return check
    if not others.empty and others.iloc[0]["validated"]:
        return others.iloc[0]
    if not own.empty:
        return own.iloc[0]
    return None if others.empty else others.iloc[0]


def seeds_of(rows: pd.DataFrame) -> list:
    """The seeds of some model rows, in order ([0] without a seed column: one seed)."""
    if SEED_COLUMN not in rows:
        return [0]
    return sorted(int(s) for s in rows[SEED_COLUMN].dropna().unique())


def per_seed_text(values: dict, digits: int = 4, scale: float = 1.0) -> str:
    """ "per seed: 0 +0.0321, 1 +0.0330": each seed's value (times `scale`), the detail of a
    claim made over seeds."""
    return "per seed: " + ", ".join(f"{s} {scale * v:+.{digits}f}" for s, v in values.items())


def seed_verdict(estimate: float, p_value: float, seeds: int, claimed: str, alpha: float) -> str:
    """The verdict on a claim about the sign of a mean over seeds, from a test of that mean.

    Args:
        estimate: the mean over seeds.
        p_value: its test's p-value (Holm-adjusted where a family was set).
        seeds: how many seeds it rests on.
        claimed: "positive" (the claim says mean > 0) or "negative".
        alpha: the level, 1 - ci_level.

    Returns:
        "agrees" / "disagrees": at least 2 seeds, p < alpha and the mean on the claimed / the
        other side; "inconclusive" otherwise.

    Raises:
        ValueError: for another `claimed`.
    """
    if claimed not in ("positive", "negative"):
        raise ValueError(f"claimed must be 'positive' or 'negative', got {claimed!r}")
    if seeds < 2 or math.isnan(p_value) or p_value >= alpha or estimate == 0:
        return INCONCLUSIVE
    return AGREES if (estimate > 0) == (claimed == "positive") else DISAGREES


def gated(verdict: str, why_not: str) -> str:
    """`verdict`, or `NOT_VALIDATED` in place of a firm one when the comparison rests on a
    measure not validated (`why_not`, from `Context.unvalidated`, is not empty)."""
    return NOT_VALIDATED if why_not and verdict in (AGREES, DISAGREES) else verdict


def gate_rule(attacks: Iterable[str]) -> str:
    """The rule of `Context.unvalidated` for a claim's test column, for each cheaper measure
    among `attacks` ("" when there is none)."""
    return "".join(
        f"; decided by {attack_name(a)} alone only at a T where its ratio to "
        f"{attack_name(REFERENCES[a])} has its {DEFAULT_CONFIDENCE:.0%} interval within "
        f"1 +- {VALIDATION_TOLERANCE:g}"
        for a in sorted(set(attacks))
        if a in REFERENCES
    )


def row_seed(row: pd.Series) -> int | None:
    """The seed of one model row, or None for a table without a seed column."""
    seed = row.get(SEED_COLUMN)
    return None if seed is None or pd.isna(seed) else int(seed)


def no_data(source: str, claim: str, paper: str, test: str, why: str, quote: str = "") -> Claim:
    """A claim that cannot be checked: `why` in place of our number."""
    return Claim(source, claim, paper, why, "", "", test, NO_DATA, quote)


def mean_verdict(test: MeanTest | PairedRateTest, claimed: str, alpha: float) -> str:
    """The verdict on a claim about the sign of a mean, from a test of that mean.

    Args:
        test: the mean difference and its tests (`analysis.statistics.paired_mean_test`, or a
            paired rate difference with McNemar's test, `paired_rate_test`); its `p_value` is
            Holm-adjusted where a family was set.
        claimed: "positive" (the claim says mean > 0) or "negative".
        alpha: the level, 1 - ci_level.

    Returns:
        "agrees" / "disagrees": p < alpha and the mean on the claimed / the other side;
        "inconclusive": p >= alpha or no p; "inconclusive (too few images)" / "(no spread)"
        below `statistics.MIN_IMAGES` pairs or without spread; "no data": no mean.

    Raises:
        ValueError: for another `claimed`.
    """
    if claimed not in ("positive", "negative"):
        raise ValueError(f"claimed must be 'positive' or 'negative', got {claimed!r}")
    mean = test.difference.estimate
    undecided = statistics.insufficient(test.difference)
    if undecided:  # no mean, too few images or no spread: never a firm verdict
        return undecided
    if math.isnan(test.p_value) or test.p_value >= alpha or mean == 0:
        return INCONCLUSIVE
    return AGREES if (mean > 0) == (claimed == "positive") else DISAGREES


def most_cases(verdicts: list[str]) -> str:
    """The verdict on "in most cases": agrees when more than half the parts agree, disagrees
    when at least half disagree (so most can no longer agree), else inconclusive."""
    if not verdicts:
        return NO_DATA
    if verdicts.count(AGREES) > len(verdicts) / 2:
        return AGREES
    if verdicts.count(DISAGREES) >= len(verdicts) / 2:
        return DISAGREES
    return INCONCLUSIVE


def mcnemar_text(test: PairedRateTest) -> str:
    """ "McNemar p = 0.004 (12 vs 31 discordant), Holm p = 0.011"."""
    only_a, only_b = test.discordant
    text = f"McNemar p = {test.difference.p_value:.2g} ({only_a} vs {only_b} discordant)"
    return text if math.isnan(test.holm_p) else f"{text}, Holm p = {test.holm_p:.2g}"


def p_text(test: MeanTest) -> str:
    """ "t p = 0.004, Holm p = 0.011; Wilcoxon p = 0.0035": the test of the mean first."""
    parts = [f"t p = {test.difference.p_value:.2g}"]
    if not math.isnan(test.holm_p):
        parts.append(f"Holm p = {test.holm_p:.2g}")
    return ", ".join(parts) + f"; Wilcoxon p = {test.wilcoxon_p:.2g}"


def pct(value: float) -> str:
    """0.9938 -> "99.38%"."""
    return f"{100 * value:.2f}%"


def interval_text(estimate: Estimate, digits: int = 3, scale: float = 1.0) -> str:
    """ "[+low, +high]" of an estimate (times `scale`), or "no interval"."""
    if math.isnan(estimate.low):
        return "no interval"
    return f"[{scale * estimate.low:+.{digits}f}, {scale * estimate.high:+.{digits}f}]"


def unsigned_interval_text(estimate: Estimate, digits: int = 3, scale: float = 1.0) -> str:
    """ "[0.980, 1.004]": an interval (times `scale`) without "+" signs, for a ratio or a
    percentage, or "no interval"."""
    if math.isnan(estimate.low):
        return "no interval"
    return f"[{scale * estimate.low:.{digits}f}, {scale * estimate.high:.{digits}f}]"


def by_role(df: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """{role: column by temperature} for the roles with data."""
    out = {}
    for role in ROLES:
        rows = df[(df["role"] == role)].dropna(subset=[column]) if column in df else df.iloc[:0]
        if not rows.empty:
            out[role] = rows.groupby("temperature")[column].mean().sort_index()
    return out


def proportion_of(row: pd.Series, column: str, ctx: Context) -> Estimate:
    """An accuracy-type column of one model as a proportion of its metric images."""
    n = row.get("metric_images")
    value = float(row[column])
    if n is None or pd.isna(n):
        return Estimate(value, math.nan, math.nan, 0, ctx.ci_level)
    return statistics.proportion(round(value * int(n)), int(n), ctx.ci_level)


def n_label(estimate: Estimate) -> str:
    """The n of an estimate, or why it is unknown."""
    return str(estimate.n) if estimate.n else "unknown: no metric_images column"


def attack_name(attack: str) -> str:
    """ "C&W L2" for "l2", "FMN L0" for "fmn_l0"; other attacks by their prefix."""
    norms = {"l0": "L0", "l2": "L2", "linf": "L-inf"}
    if attack in norms:
        return f"C&W {norms[attack]}"
    if attack.startswith("fmn_") and attack[4:] in norms:
        return f"FMN {norms[attack[4:]]}"
    return attack


def measure_name(norm: str, images: pd.DataFrame | None) -> str:
    """How a norm's robustness was measured: "C&W L2" or "fmn_l0" when one attack ran, "L0
    (smallest of C&W L0, fmn_l0)" when several did (`Context.norm_images`)."""
    ran = [a for a in NORM_ATTACKS[norm] if images is not None and (images["attack"] == a).any()]
    if len(ran) <= 1:
        return attack_name(ran[0] if ran else norm)
    label = attack_name(norm).removeprefix("C&W ")
    return f"{label} (smallest of {', '.join(map(attack_name, ran))})"


SMALLEST_FOUND = (
    "each image's robustness is the smallest perturbation any of the attacks found on it, of "
    "the attacks run on that image for every model compared"
)
"""What a claim on several attacks of one norm says of its measure (`measure_name`)."""


def success_of(row: pd.Series, prefix: str, ctx: Context, within: bool = False) -> Estimate:
    """An attack's success rate on one model (within its budget if `within`), as a proportion
    of the images it attacked."""
    attacked = row.get(f"{prefix}_attacked")
    rate = row[f"{prefix}_budget_success_rate" if within else f"{prefix}_success_rate"]
    if attacked is None or pd.isna(attacked) or pd.isna(rate):
        return Estimate(float(rate), math.nan, math.nan, 0, ctx.ci_level)
    return statistics.proportion(round(float(rate) * int(attacked)), int(attacked), ctx.ci_level)


def success_differences(ctx: Context, rows: pd.DataFrame, first: str, second: str):
    """Per model row: success of `first`, of `second`, and first - second (paired on the same
    images where per-image rows exist, else unpaired)."""
    a = [success_of(r, first, ctx) for _, r in rows.iterrows()]
    b = [success_of(r, second, ctx) for _, r in rows.iterrows()]
    differences = [
        _paired_success(ctx, row, first, second)
        or statistics.proportion_difference(x, y, ctx.ci_level)
        for (_, row), x, y in zip(rows.iterrows(), a, b, strict=True)
    ]
    return a, b, differences


def _paired_success(ctx: Context, row: pd.Series, first: str, second: str) -> Estimate | None:
    """Success of attack `first` - success of attack `second` on one model, on the same
    images (McNemar), or None without per-image rows of both attacks (of the model's seed,
    where the rows hold several)."""
    seed = row_seed(row) if len(ctx.seeds) > 1 else None
    tables = {"first": ctx.images(first, seed=seed), "second": ctx.images(second, seed=seed)}
    if any(table is None for table in tables.values()):
        return None
    success = {}
    for name, table in tables.items():
        chosen = table[
            (table["temperature"] == row["temperature"]) & (table["stage"] == row["stage"])
        ]
        success[name] = attacked(chosen).set_index("image")["success"]
    pair = pd.DataFrame(success).dropna()
    if pair.empty:
        return None
    return statistics.paired_rate_difference(
        pair["first"].astype(bool), pair["second"].astype(bool), ctx.ci_level, ctx.seed
    )
