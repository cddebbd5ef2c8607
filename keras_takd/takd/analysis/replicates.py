"""Seed-level statistics: is an effect a property of the method, or of one set of weights?

Each (T, stage) of a chain is one trained network, so an interval that resamples images only
speaks about those weights. With several independently trained chains (a `seed` column in the
per-image table, issue 25; absent, one seed, seed 0) the unit of replication is the seed:

* per seed, the paired per-image mean difference, later model - earlier model, on the images
  both classify correctly and both attacks fool (`statistics.image_differences`);
* across seeds, the mean of those seed means with a 95% t-interval over seeds
  (`scipy.stats.t`) and a two-level bootstrap (resample seeds, then images within each drawn
  seed; percentile interval, numpy Generator with a fixed seed);
* the between-seed SD (of the seed means) and the within-seed SD (of the per-image
  differences, pooled over seeds), and the t-test of the seed means against 0, Holm-adjusted
  over the family of temperatures of one comparison (`statistics.holm`).

The comparisons are Mandal & Guo's (arXiv:2305.08076, section V-C): student - assistant,
assistant - teacher and student - teacher, at each T, for every minimal-perturbation attack of
the table (C&W's and Fast Minimum-Norm's, `MEASURES`). A study declares one of them its primary
comparison before it runs (`--primary_comparison=student-teacher@40`, `parse_comparison`); a
study of chains of more than 3 models declares section VI's test, last step - teacher
(`--primary_comparison=last-teacher@40`, `LAST_STEP`; `step_trend` has its rows).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from keras_takd.core import statistics
from keras_takd.core.results import recorded_declaration
from keras_takd.core.statistics import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, NO_SPREAD, Estimate
from keras_takd.takd import schema
from keras_takd.takd.analysis.statistics import (
    MODEL_KEYS,
    SEED_COLUMN,
    attacks_run,
    fooled,
    holm,
    perturbation_intervals,
    with_seed,
)

COMPARISONS = (("student", "assistant"), ("assistant", "teacher"), ("student", "teacher"))
"""(later, earlier) roles compared at each T: Mandal & Guo's central comparisons."""
LAST_STEP = ("last", "teacher")
"""(later, earlier) of section VI's multi-step test: a chain of more than 3 models, its last
step - its teacher (declared as "last-teacher@<T>")."""
FAMILY_KEYS = ["dataset", "stages", "attack", "comparison"]
"""One Holm family: a comparison's tests at every T."""
MEASURES = schema.ATTACKS + schema.FMN_ATTACKS
"""The attacks whose per-image distance is a minimal perturbation: the robustness measures."""


def parse_comparison(text: str) -> tuple[str, str, float]:
    """A declared comparison, "student-teacher@40", as (later role, earlier role, T);
    "last-teacher@40" (`LAST_STEP`) is the last step of a chain of more than 3 models.

    Raises:
        ValueError: not "<later>-<earlier>@<T>" with one of `COMPARISONS` or `LAST_STEP` and a
            T > 0.
    """
    roles, _, temperature = str(text).partition("@")
    later, _, earlier = roles.partition("-")
    try:
        t = float(temperature)
    except ValueError:
        t = math.nan
    if (later, earlier) not in (*COMPARISONS, LAST_STEP) or not (math.isfinite(t) and t > 0):
        expected = ", ".join(f"{a}-{b}@<T>" for a, b in (*COMPARISONS, LAST_STEP))
        raise ValueError(f"comparison {text!r}: expected one of {expected}, with T > 0")
    return later, earlier, t


@dataclasses.dataclass(frozen=True)
class SeedLevel:
    """A paired mean difference over seeds.

    Attributes:
        estimate: the mean over seeds of each seed's mean per-image difference.
        t_low, t_high: the t-interval over seeds (NaN below 2 seeds).
        bootstrap_low, bootstrap_high: the two-level bootstrap's percentile interval (NaN below
            2 seeds: one seed says nothing about the spread between seeds).
        p_value: the t-test of the seed means against 0 (NaN below 2 seeds, or when the seed
            means are equal but for float rounding).
        between_sd: the SD of the seed means (ddof 1).
        within_sd: the SD of the per-image differences within a seed, pooled over seeds.
        seeds: how many seeds; images: how many image pairs over all seeds.
        confidence: the intervals' level.
    """

    estimate: float
    t_low: float
    t_high: float
    bootstrap_low: float
    bootstrap_high: float
    p_value: float
    between_sd: float
    within_sd: float
    seeds: int
    images: int
    confidence: float = DEFAULT_CONFIDENCE


def seed_level(
    differences: Sequence[Sequence[float]],
    ci_level: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> SeedLevel:
    """The seed-level mean of per-image paired differences, with its intervals and SDs.

    Args:
        differences: per seed, its per-image differences (later - earlier model), finite, at
            least one image each.
        ci_level: the intervals' level, in (0, 1).
        seed: the bootstrap Generator's seed.
        n_resamples: bootstrap resamples.

    Returns:
        A `SeedLevel`.

    Raises:
        ValueError: no seeds, a seed without images, a non-finite difference, or a `ci_level`
            outside (0, 1).
    """
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), e.g. 0.95, got {ci_level!r}")
    samples = [np.asarray(d, np.float64).ravel() for d in differences]
    if not samples or any(len(d) == 0 for d in samples):
        sizes = [len(d) for d in samples]
        raise ValueError(f"need one or more seeds of one or more images each, got sizes {sizes}")
    if not all(np.isfinite(d).all() for d in samples):
        raise ValueError("differences must be finite numbers, got a NaN or an infinity")
    means = np.array([d.mean() for d in samples])
    k, estimate = len(means), float(means.mean())
    t_low = t_high = p_value = between_sd = boot_low = boot_high = math.nan
    if k >= 2:
        between_sd = float(means.std(ddof=1))
        t_low, t_high = _t_interval(means, ci_level)
        if not _no_spread(means):
            p_value = float(stats.ttest_1samp(means, 0.0).pvalue)
        boot = _two_level_means(samples, n_resamples, np.random.default_rng(seed))
        tail = 100 * (1 - ci_level) / 2
        boot_low, boot_high = (float(x) for x in np.percentile(boot, [tail, 100 - tail]))
    return SeedLevel(
        estimate,
        t_low,
        t_high,
        boot_low,
        boot_high,
        p_value,
        between_sd,
        _pooled_sd(samples),
        k,
        sum(len(d) for d in samples),
        ci_level,
    )


def _no_spread(means: np.ndarray) -> bool:
    """Whether the seed values are all equal, but for float rounding (differences of equal
    means): a t-test of them would read rounding noise as a firm effect."""
    return bool(np.ptp(means) <= 1e-12 * max(1.0, float(np.abs(means).max())))


def _t_interval(means: np.ndarray, ci_level: float) -> tuple[float, float]:
    """The t-interval of the mean of `means` (k - 1 degrees of freedom)."""
    sem = float(stats.sem(means))
    if sem == 0:
        return float(means.mean()), float(means.mean())
    low, high = stats.t.interval(ci_level, len(means) - 1, loc=means.mean(), scale=sem)
    return float(low), float(high)


def _pooled_sd(samples: list[np.ndarray]) -> float:
    """The within-seed SD: sqrt of the seeds' variances pooled by their degrees of freedom."""
    dof = sum(len(d) - 1 for d in samples)
    if dof == 0:
        return math.nan
    return math.sqrt(sum(((d - d.mean()) ** 2).sum() for d in samples) / dof)


def _two_level_means(
    samples: list[np.ndarray], n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """`n_resamples` two-level bootstrap means: draw k seeds with replacement, then each drawn
    seed's images with replacement (a seed drawn twice is resampled twice, independently)."""
    k = len(samples)
    drawn = rng.integers(0, k, size=(n_resamples, k))
    seed_means = np.empty(drawn.shape)
    for j, values in enumerate(samples):
        where = drawn == j
        picks = rng.integers(0, len(values), size=(int(where.sum()), len(values)))
        seed_means[where] = values[picks].mean(axis=1)
    return seed_means.mean(axis=1)


def seed_level_differences(
    per_image: pd.DataFrame,
    ci_level: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> pd.DataFrame:
    """Every comparison of `COMPARISONS` at every T, per seed and over seeds.

    Args:
        per_image: the per-image table (`tables.PER_IMAGE_REQUIRED` columns; `seed` optional).
        ci_level: the intervals' level.
        seed: the bootstraps' seed.
        n_resamples: bootstrap resamples.

    Returns:
        One row per (dataset, stages, temperature, attack, comparison): the `SeedLevel` fields
        as columns (estimate, t_low, t_high, bootstrap_low, bootstrap_high, p_value,
        between_sd, within_sd, seeds, images), holm_p (p_value Holm-adjusted over the
        temperatures of the same dataset, chain length, attack and comparison) and
        seed_means (a dict seed -> that seed's mean difference, the per-seed detail).
    """
    keys = ["dataset", "stages", "temperature", "attack", "comparison"]
    fields = [f.name for f in dataclasses.fields(SeedLevel)]
    records = []
    for key, by_seed in _seed_differences(per_image):
        level = seed_level(list(by_seed.values()), ci_level, seed, n_resamples)
        records.append(
            dict(zip(keys, key, strict=True))
            | dataclasses.asdict(level)
            | {"seed_means": {s: float(d.mean()) for s, d in by_seed.items()}}
        )
    table = pd.DataFrame(records, columns=[*keys, *fields, "seed_means"])
    table["holm_p"] = np.nan
    for _, family in table.groupby(FAMILY_KEYS, sort=False):
        table.loc[family.index, "holm_p"] = holm(family["p_value"].to_numpy())
    return table


CONTROL_KEYS = ["dataset", "stages", "attack", "comparison"]
"""A comparison across temperatures: the same attack, comparison and chain length."""


def against_control(table: pd.DataFrame, ci_level: float = DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """Each comparison at each T above the lowest, minus the same comparison at the lowest T
    (the control: at T = 1 distillation cannot smooth the softmax), paired by seed.

    A seed's chains at every T start from the same warm-start weights (`layout.init_folder`)
    and are attacked on the same images, so per seed the difference of its two seed means, e.g.
    (student - teacher at T = 40) - (student - teacher at T = 1), says what the temperature
    adds to the chain's effect; across seeds their mean with its t-interval and t-test
    (`seed_mean`). No study declares this comparison before it runs: it is exploratory, and
    its p is not adjusted.

    Args:
        table: `seed_level_differences`'s table (its `seed_means` column).
        ci_level: the intervals' level.

    Returns:
        One row per (dataset, stages, attack, comparison, T above the lowest): control (the
        lowest T), estimate, low, high, p_value, seeds (those with both T), reason (the
        `Estimate`'s, e.g. `FEWER_THAN_TWO_SEEDS`) and seed_differences (seed -> its
        difference); empty where no comparison has two T.
    """
    records = []
    for key, family in table.groupby(CONTROL_KEYS, sort=False):
        family = family.sort_values("temperature")
        control = family.iloc[0]
        for row in family.iloc[1:].itertuples(index=False):
            seeds = sorted(set(row.seed_means) & set(control.seed_means))
            if not seeds:
                continue
            by_seed = {s: row.seed_means[s] - control.seed_means[s] for s in seeds}
            records.append(
                dict(zip(CONTROL_KEYS, key, strict=True))
                | {"temperature": row.temperature, "control": control.temperature}
                | _over_seeds(by_seed, ci_level)
                | {"seed_differences": by_seed}
            )
    columns = [*CONTROL_KEYS, "temperature", "control", "estimate", "low", "high"]
    columns += ["p_value", "seeds", "reason", "seed_differences"]
    return pd.DataFrame(records, columns=columns)


_TREND_KEYS = ["dataset", schema.CHAIN_LENGTH_COLUMN, "temperature", "attack"]
"""One long chain of `step_trend`."""


def step_trend(per_image: pd.DataFrame, ci_level: float = DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """Mandal & Guo's multi-step claim (section VI) at the seed level, for chains of more than
    three models: per seed, each step's paired mean difference from the teacher, and the slope
    of robustness over the steps.

    Per seed and step k > 1, the mean of the per-image differences step k - teacher on the
    images both fooled (as `seed_level_differences`); per seed the slope is the least-squares
    slope (`scipy.stats.linregress`) of the steps' mean distances over the images every step
    of that seed fooled, in distance per step, for seeds whose chain holds every step. Across
    seeds, `seed_mean` of each (t-interval over seeds, t-test). A step's row rests on the
    seeds that reached it, the slope on those whose chain is whole (`seeds` says how many).
    Not adjusted for the number of steps.

    Args:
        per_image: the per-image table (`seed` optional).
        ci_level: the intervals' level.

    Returns:
        One row per (dataset, stages, temperature, attack, step) of the long chains, step 2
        to the last, then a row of step "slope": estimate, low, high (the t-interval over
        seeds, NaN with `reason` below 2 seeds or without spread), p_value, seeds, images
        (image pairs over the seeds; 0 for the slope), reason, confidence (`ci_level`) and
        seed_values (seed -> its value); empty without a chain of more than three models.
    """
    hit = fooled(with_seed(per_image))
    hit = hit[(hit[schema.CHAIN_LENGTH_COLUMN] > 3) & hit["attack"].isin(MEASURES)]
    hit = hit.astype({schema.CHAIN_LENGTH_COLUMN: int, "stage": int})
    records = []
    for key, group in hit.groupby(_TREND_KEYS, sort=True):
        by_step = {
            s: rows.pivot_table(index="image", columns="stage", values="distance")
            for s, rows in group.groupby(SEED_COLUMN, sort=True)
        }
        for step in sorted(group["stage"].unique())[1:]:
            differences = {
                s: (table[step] - table[1]).dropna()
                for s, table in by_step.items()
                if {1, step} <= set(table.columns)
            }
            means = {s: float(d.mean()) for s, d in differences.items() if len(d)}
            if means:
                images = sum(len(d) for d in differences.values())
                records.append(_trend_row(key, str(step), means, images, ci_level))
        slopes = {
            s: _slope(table.dropna()) for s, table in by_step.items() if _whole(table, key[1])
        }
        if slopes:
            records.append(_trend_row(key, "slope", slopes, 0, ci_level))
    columns = [*_TREND_KEYS, "step", "estimate", "low", "high", "p_value", "seeds", "images"]
    columns.append("reason")
    table = pd.DataFrame(records, columns=[*columns, "seed_values"])
    return table.assign(confidence=ci_level)[[*columns, "confidence", "seed_values"]]


def _trend_row(key: tuple, step: str, by_seed: dict, images: int, ci_level: float) -> dict:
    """A row of `step_trend`: `seed_mean` of one value per seed."""
    return (
        dict(zip(_TREND_KEYS, key, strict=True))
        | {"step": step}
        | _over_seeds(by_seed, ci_level)
        | {"images": images, "seed_values": by_seed}
    )


def _over_seeds(by_seed: dict, ci_level: float) -> dict:
    """`seed_mean` of {seed: value} as a table row's estimate, low, high, p_value, seeds and
    reason columns."""
    found = seed_mean(list(by_seed.values()), ci_level)
    return {
        "estimate": found.estimate,
        "low": found.low,
        "high": found.high,
        "p_value": found.p_value,
        "seeds": found.n,
        "reason": found.reason,
    }


def _whole(by_step: pd.DataFrame, stages: int) -> bool:
    """Whether a seed's (image x step) distances hold every step of its `stages`-model chain
    and an image every step fooled: a slope over fewer steps would not compare with others."""
    return set(by_step.columns) == set(range(1, stages + 1)) and by_step.notna().all(1).any()


def _slope(by_step: pd.DataFrame) -> float:
    """The least-squares slope of the steps' mean distances over the step number."""
    means = by_step.mean()
    return float(stats.linregress(means.index.to_numpy(float), means.to_numpy(float)).slope)


def declaration(run_json: Mapping) -> tuple[str | None, int | None]:
    """The primary comparison a run's run.json declares and the seeds it was declared for:
    `run_info.declared` (written once, before the study ran), else the recorded flags of runs
    made before it was kept apart (`--primary_comparison`, `--num_seeds`); (None, None) when
    none is declared."""
    declared = recorded_declaration(run_json.get("run_info", {}) or {}) or {}
    if not declared.get("primary_comparison"):
        return None, None
    seeds = declared.get("num_seeds")
    return str(declared["primary_comparison"]), None if seeds is None else int(seeds)


def is_interim(seeds: int, declared_seeds: int | None) -> bool:
    """Whether a declared comparison is still an interim look: fewer `seeds` hold both its
    models than the `declared_seeds` it was declared for (never, when that is not known).

    Args:
        seeds: how many seeds hold both models of the comparison (`seeds_with`).
        declared_seeds: the seeds the comparison was declared for, or None.

    Returns:
        True when `declared_seeds` is known and `seeds` is below it.
    """
    return declared_seeds is not None and seeds < declared_seeds


def seeds_with(rows: pd.DataFrame, comparison: tuple[str, str, float]) -> int:
    """How many seeds of `rows` hold both models of `comparison` (later, earlier, T), however
    many images they share: a seed whose chain has not reached the later model does not count.
    """
    later, earlier, temperature = comparison
    at = with_seed(rows)
    at = at[np.isclose(at["temperature"].astype(float), temperature)]
    roles = at.groupby(SEED_COLUMN)["role"].agg(set)
    return int(sum({later, earlier} <= found for found in roles))


def has_seed_differences(per_image: pd.DataFrame) -> bool:
    """Whether two models of a chain share, in some seed, an image both classify correctly and
    the attack fools: whether `seed_level_differences` has a row."""
    return next(_seed_differences(per_image), None) is not None


def _seed_differences(per_image: pd.DataFrame):
    """Per (dataset, stages, T, attack, comparison) of three-model chains and `MEASURES`, in
    order: the key and {seed: later - earlier distance on each image both fooled, in image
    order}, seeds without such an image left out."""
    hit = fooled(with_seed(per_image))
    hit = hit[(hit[schema.CHAIN_LENGTH_COLUMN] <= 3) & hit["attack"].isin(MEASURES)]
    keys = ["dataset", schema.CHAIN_LENGTH_COLUMN, "temperature", "attack"]
    for key, group in hit.groupby(keys, sort=True):
        roles = {
            s: {r: g.groupby("image")["distance"].mean() for r, g in rows.groupby("role")}
            for s, rows in group.groupby(SEED_COLUMN, sort=True)
        }
        for later, earlier in COMPARISONS:
            by_seed = {}
            for s, by_role in roles.items():
                if later in by_role and earlier in by_role:
                    a, b = by_role[later].align(by_role[earlier], join="inner")
                    if len(a):
                        by_seed[s] = (a - b).to_numpy(float)
            if by_seed:
                yield (*key, f"{later} - {earlier}"), by_seed


def perturbation_intervals_by_seed(
    per_image: pd.DataFrame, ci_level: float = DEFAULT_CONFIDENCE
) -> pd.DataFrame:
    """`statistics.perturbation_intervals` of each seed's models apart, so that no mean over
    images mixes the networks of two seeds.

    Args:
        per_image: the per-image table (`tables.PER_IMAGE_REQUIRED` columns; `seed` optional:
            absent, every row is seed 0).
        ci_level: the intervals' level.

    Returns:
        The columns of `perturbation_intervals` with `seed` after stage: one row per
        (dataset, stages, temperature, stage, seed, attack) with images fooled.
    """
    frames = [
        perturbation_intervals(rows, ci_level).assign(**{SEED_COLUMN: s})
        for s, rows in with_seed(per_image).groupby(SEED_COLUMN, sort=True)
    ]
    columns = [*MODEL_KEYS, SEED_COLUMN, "attack", "estimate", "low", "high", "n"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


VALIDATION_TOLERANCE = 0.02
"""A cheaper measure decides a seed-level claim alone only where the interval of its ratio to
the reference measure sits within 1 +- this (issue 25: FMN against C&W at the paper's
settings)."""
VALIDATION_CHAINS = 2
"""The fewest independent chains (each with all its stages) a validation rests on: the issue
asks for at least 2 seeds x 3 stages per T."""
REFERENCES = {"fmn_l2": "l2", "fmn_l0": "l0", "fmn_linf": "linf"}
"""Each cheaper measure and the attack it stands in for: Fast Minimum-Norm for C&W's."""
RUN_COLUMN = "run"
"""Which run a validation row is of (0: the run compared; others: runs of the same settings
given to validate the measure only), so chains of two runs never pair up."""


def measure_validation(
    per_image: pd.DataFrame,
    ci_level: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    tolerance: float = VALIDATION_TOLERANCE,
) -> pd.DataFrame:
    """Per T, each cheaper measure (`REFERENCES`) against its reference on the same images.

    Over every model of the T (every chain and stage) that both attacks ran on, the ratio of
    the cheaper measure's summed distances to the reference's, on the (model, image) pairs
    both fooled. The images are the resampling unit: each image's distances are summed over
    the models first, so the BCa interval (`core.statistics.ratio_of_means`) resamples test
    images, which every model shares, not (model, image) pairs as if independent. The spread
    between models is not in the interval; each model's own ratio is the detail.

    Args:
        per_image: the per-image table (`seed` optional; `RUN_COLUMN` optional, to tell the
            chains of several runs apart).
        ci_level: the interval's level.
        seed: the bootstrap's seed.
        tolerance: the validation band, 1 +- `tolerance`.

    Returns:
        One row per (dataset, stages, temperature, measure) with reference rows: reference,
        chains and models (how many of each had both attacks; a chain is a (run, seed)),
        images, pairs, ratio (an `Estimate`), model_ratios ({(run, seed, stage): that model's
        ratio of means}) and validated (the ratio's interval within 1 +- `tolerance`, on at
        least `VALIDATION_CHAINS` chains).
    """
    hit = fooled(with_seed(per_image))
    if RUN_COLUMN not in hit:
        hit = hit.assign(**{RUN_COLUMN: 0})
    keys = ["dataset", schema.CHAIN_LENGTH_COLUMN, "temperature"]
    columns = [*keys, "measure", "reference", "chains", "models", "images", "pairs", "ratio"]
    records = []
    for measure, reference in REFERENCES.items():
        rows = hit[hit["attack"].isin([measure, reference])]
        for key, group in rows.groupby(keys, sort=True):
            pairs = group.pivot_table(
                index=[RUN_COLUMN, SEED_COLUMN, "stage", "image"],
                columns="attack",
                values="distance",
                aggfunc="min",
            )
            if measure not in pairs or reference not in pairs:
                continue
            pairs = pairs[[measure, reference]].dropna()
            if pairs.empty:
                continue
            by_image = pairs.groupby(level="image").sum()
            ratio = statistics.ratio_of_means(
                by_image[measure].to_numpy(), by_image[reference].to_numpy(), ci_level, seed
            )
            models = pairs.groupby(level=[RUN_COLUMN, SEED_COLUMN, "stage"]).sum()
            chains = models.index.droplevel("stage").nunique()
            records.append(
                dict(zip(keys, key, strict=True))
                | {"measure": measure, "reference": reference}
                | {"chains": chains}
                | {"models": len(models), "images": len(by_image), "pairs": len(pairs)}
                | {"ratio": ratio}
                | {"model_ratios": (models[measure] / models[reference]).to_dict()}
                | {"validated": chains >= VALIDATION_CHAINS and within_tolerance(ratio, tolerance)}
            )
    return pd.DataFrame(records, columns=[*columns, "model_ratios", "validated"])


def measured_alone(images: pd.DataFrame, models: Sequence[tuple]) -> set[tuple[int, float, str]]:
    """Where a cheaper measure stands alone in a comparison of `models` on `images`: on some
    image run on every model (`statistics.attacks_run`, the images `model_distances`
    compares), a cheaper measure (`REFERENCES`) ran and its reference did not.

    Args:
        images: per-image rows of one norm's attacks, of one seed (`Context.norm_images`).
        models: the (temperature, stage) of each model compared.

    Returns:
        The (stages, temperature, measure) of each model and cheaper measure standing alone:
        the validations (`measure_validation`) the comparison rests on; empty when none.
    """
    run = attacks_run(images, models)
    ran = pd.Series(run.get_level_values("attack"), index=run.get_level_values("image"))
    alone = {
        measure
        for attacks in ran.groupby(level=0).agg(set)
        for measure in attacks
        if measure in REFERENCES and REFERENCES[measure] not in attacks
    }
    found = set()
    for t, stage in models:
        chosen = images[
            (images["temperature"] == t) & (images["stage"] == stage) & images["attack"].isin(alone)
        ]
        found |= {
            (int(k), float(t), str(a))
            for k, a in zip(chosen[schema.CHAIN_LENGTH_COLUMN], chosen["attack"], strict=True)
        }
    return found


def within_tolerance(ratio: Estimate, tolerance: float = VALIDATION_TOLERANCE) -> bool:
    """Whether the ratio's interval sits within 1 +- `tolerance` (False without one)."""
    return 1 - tolerance <= ratio.low and ratio.high <= 1 + tolerance


def seeds_needed(between_sd: float, half_width: float, ci_level: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest seeds whose t-interval over seeds is at most +-`half_width` wide, if the
    seed means spread with SD `between_sd`: the smallest k >= 2 with
    t(ci_level, k - 1) * between_sd / sqrt(k) <= half_width.

    Raises:
        ValueError: a `between_sd` that is not a finite number >= 0, or a `half_width` <= 0.
    """
    if not (math.isfinite(between_sd) and between_sd >= 0):
        raise ValueError(f"between_sd must be a finite number >= 0, got {between_sd!r}")
    if not (math.isfinite(half_width) and half_width > 0):
        raise ValueError(f"half_width must be a number > 0, got {half_width!r}")
    k = 2
    while stats.t.ppf(0.5 + ci_level / 2, k - 1) * between_sd / math.sqrt(k) > half_width:
        k += 1
    return k


FEWER_THAN_TWO_SEEDS = "fewer than 2 seeds"
"""`Estimate.reason` of a mean over seeds resting on one seed: nothing about their spread."""


def seed_mean(values: Sequence[float], ci_level: float = DEFAULT_CONFIDENCE) -> Estimate:
    """The mean over seeds of one plain value per seed (e.g. each seed's accuracy difference),
    with its t-interval over seeds and the t-test of that mean against 0.

    Args:
        values: one finite value per seed.
        ci_level: the interval's level, in (0, 1).

    Returns:
        An `Estimate` (n: the seeds; p_value: `scipy.stats.ttest_1samp`); below 2 seeds, or
        when every seed gives the same value, no interval and no p (reason
        `FEWER_THAN_TWO_SEEDS` or `NO_SPREAD`).

    Raises:
        ValueError: no values, a non-finite value, or a `ci_level` outside (0, 1).
    """
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), e.g. 0.95, got {ci_level!r}")
    means = np.asarray(values, np.float64).ravel()
    if len(means) == 0 or not np.isfinite(means).all():
        raise ValueError(f"expected one finite value per seed, got {means.tolist()}")
    estimate = float(means.mean())
    reason = FEWER_THAN_TWO_SEEDS if len(means) < 2 else NO_SPREAD if _no_spread(means) else ""
    if reason:
        return Estimate(estimate, math.nan, math.nan, len(means), ci_level, reason=reason)
    low, high = _t_interval(means, ci_level)
    p_value = float(stats.ttest_1samp(means, 0.0).pvalue)
    return Estimate(estimate, low, high, len(means), ci_level, p_value)
