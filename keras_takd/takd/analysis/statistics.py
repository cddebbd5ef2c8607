"""Every statistic of the per-image table, computed once for figures, claims and the summary.

Which images count: a model's ATTACKED images are those it classifies correctly (the others
are excluded, not attacked); its FOOLED images are the attacked ones the attack succeeded on
with a finite distance, the minimal perturbation found (Carlini & Wagner, arXiv:1608.04644).
Every mean perturbation, paired difference and trend below rests on fooled images only, and a
comparison of models on the images fooled under every one of them (paired designs, Mandal &
Guo section V-C). The estimates and their intervals come from `keras_takd.core.statistics`
(`scipy.stats`: BCa bootstrap, Wilcoxon signed-rank, Spearman's rho, Wilson score). A claim
about a mean is tested on the mean (`paired_mean_test`: the paired t-test, Wilcoxon kept
beside it), and a family of such tests carries Holm-adjusted p-values (`holm`).

Accuracy is compared on the same test images too (`paired_accuracy_tests`, from the models'
per-image predictions): the exact McNemar test (the binomial test of the discordant images,
those only one of the two models classifies correctly) and a percentile bootstrap interval of
the accuracy difference resampling images (`statistics.paired_rate_difference`), Holm over a
family.

A per-image table with a `seed` column holds several independently trained chains (issue 25);
the pairs below never mix seeds. Without the column it is one seed, seed 0 (`SEED_COLUMN`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from keras_takd.core import statistics
from keras_takd.core.statistics import Estimate
from keras_takd.takd.analysis.tables import as_bool, chain_length, check_per_image
from keras_takd.takd.schema import ATTACKS, CHAIN_LENGTH_COLUMN

PAIRS = (("student", "assistant"), ("assistant", "teacher"))
"""The paired differences of `paired_differences`: later model minus the one it learnt from."""
MODEL_KEYS = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "stage"]
"""The columns that name one model of the per-image table (its chain length included)."""
SEED_COLUMN = "seed"
"""The per-image column naming the training seed of a chain; absent means one seed, seed 0."""


@dataclasses.dataclass(frozen=True)
class MeanTest:
    """A paired mean difference tested on the mean.

    Attributes:
        difference: mean(a - b) with its bootstrap interval; its `p_value` is the paired
            t-test's (`scipy.stats.ttest_1samp` of the differences against 0), a test of the mean.
        wilcoxon_p: the Wilcoxon signed-rank p-value, a test of another quantity (the
            differences' pseudo-median), kept as a secondary column.
        holm_p: the t-test's p-value Holm-adjusted over the family it was tested in (`holm`);
            NaN until a family is set.
    """

    difference: Estimate
    wilcoxon_p: float
    holm_p: float = math.nan

    @property
    def p_value(self) -> float:
        """The p-value a verdict uses: Holm-adjusted where a family is set, else the t-test's."""
        return self.difference.p_value if math.isnan(self.holm_p) else self.holm_p


def paired_mean_test(
    a: Sequence[float],
    b: Sequence[float],
    ci_level: float = statistics.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> MeanTest:
    """mean(a - b) over paired observations, with the paired t-test of that mean.

    Args:
        a, b: per-image values of two models, in the same image order, finite.
        ci_level: the bootstrap interval's level (`statistics.paired_difference`).
        seed: the bootstrap's seed.

    Returns:
        A `MeanTest`; the t-test's p is NaN below 2 pairs and for differences all equal but
        not 0 (no spread to test against), 1.0 when every difference is 0.

    Raises:
        ValueError: see `keras_takd.core.statistics.paired_difference`.
    """
    difference = statistics.paired_difference(a, b, ci_level, seed)
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(d) < 2 or np.ptp(d) == 0:
        t_p = 1.0 if len(d) >= 2 and not np.any(d) else math.nan
    else:
        t_p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return MeanTest(dataclasses.replace(difference, p_value=t_p), difference.p_value)


@dataclasses.dataclass(frozen=True)
class PairedRateTest:
    """A difference of two rates on the same images (e.g. two models' accuracies).

    Attributes:
        difference: rate(a) - rate(b) with its bootstrap interval (resampling images); its
            `p_value` is McNemar's exact test (`statistics.paired_rate_difference`).
        discordant: (images only a got right, images only b got right).
        holm_p: McNemar's p Holm-adjusted over the family it was tested in; NaN until set.
    """

    difference: Estimate
    discordant: tuple[int, int]
    holm_p: float = math.nan

    @property
    def p_value(self) -> float:
        """The p-value a verdict uses: Holm-adjusted where a family is set, else McNemar's."""
        return self.difference.p_value if math.isnan(self.holm_p) else self.holm_p


def paired_rate_test(
    a: Sequence[bool],
    b: Sequence[bool],
    ci_level: float = statistics.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> PairedRateTest:
    """rate(a) - rate(b) of two success indicators on the same images, with McNemar's test.

    Args:
        a, b: per-image booleans (e.g. classified correctly), in the same image order.
        ci_level: the interval's level.
        seed: the bootstrap's seed.

    Raises:
        ValueError: see `keras_takd.core.statistics.paired_rate_difference`.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    difference = statistics.paired_rate_difference(a, b, ci_level, seed)
    return PairedRateTest(difference, (int(np.sum(a & ~b)), int(np.sum(~a & b))))


def with_holm(tests: Mapping) -> dict:
    """The tests (`MeanTest` or `PairedRateTest`) with their p-values Holm-adjusted as one
    family, in the order given."""
    adjusted = holm([t.difference.p_value for t in tests.values()])
    return {
        label: dataclasses.replace(t, holm_p=float(p))
        for (label, t), p in zip(tests.items(), adjusted, strict=True)
    }


def correct_by_model(predictions: pd.DataFrame) -> pd.DataFrame:
    """[image x (temperature, stage)] whether each model classifies each test image correctly.

    Args:
        predictions: prediction rows (`tables.read_predictions`) of one dataset and chain
            length.
    """
    correct = predictions.assign(correct=predictions["label"] == predictions["prediction"])
    return correct.pivot(index="image", columns=["temperature", "stage"], values="correct")


def paired_accuracy_tests(
    predictions: pd.DataFrame,
    pairs: Mapping[object, tuple[tuple[float, int], tuple[float, int]]],
    ci_level: float = statistics.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict:
    """accuracy(a) - accuracy(b) on the test images both models predicted, for each pair.

    Args:
        predictions: prediction rows (`tables.read_predictions`) of one dataset and chain
            length.
        pairs: {label: ((T, stage) of a, (T, stage) of b)}; pairs with a model without
            predictions are left out.
        ci_level: the intervals' level.
        seed: the bootstraps' seed.

    Returns:
        {label: `PairedRateTest`}, McNemar's p Holm-adjusted over the pairs returned.
    """
    correct = correct_by_model(predictions)
    tests = {}
    for label, (a, b) in pairs.items():
        if a in correct.columns and b in correct.columns:
            both = correct[[a, b]].dropna().astype(bool)
            tests[label] = paired_rate_test(both[a], both[b], ci_level, seed)
    return with_holm(tests)


def attack_pair_test(
    a: pd.DataFrame,
    b: pd.DataFrame,
    ci_level: float = statistics.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> PairedRateTest:
    """success(a) - success(b) of a targeted attack on the (image, target) pairs it ran on
    under both models (images both classify correctly), e.g. JSMA's all-targets protocol.

    McNemar's exact test (`scipy.stats.binomtest` of the discordant pairs against 1/2) gives
    the p-value. The pairs of one image are not independent (one image, several targets), so
    the interval resamples images: a BCa bootstrap of the per-image mean difference
    (`statistics.paired_difference`); with every image attacked towards the same targets its
    mean is the pairs' mean. Neither for too few images or no spread (`Estimate.reason`).

    Args:
        a, b: per-image rows of the attack on one model each: image, target, correct, success.
        ci_level: the interval's level.
        seed: the bootstrap's seed.

    Returns:
        A `PairedRateTest` whose `difference.n` counts pairs.
    """
    success = {
        name: attacked(rows).set_index(["image", "target"])["success"]
        for name, rows in (("a", a), ("b", b))
    }
    pairs = pd.DataFrame(success).dropna().astype(bool)
    only_a, only_b = int((pairs["a"] & ~pairs["b"]).sum()), int((~pairs["a"] & pairs["b"]).sum())
    per_image = pairs.astype(float).groupby(level="image").mean()
    images = statistics.paired_difference(per_image["a"], per_image["b"], ci_level, seed)
    p_value = math.nan  # where the interval is withheld (too few images, no spread)
    if not images.reason and len(pairs):
        p_value = float(stats.binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
    estimate = float((pairs["a"].astype(float) - pairs["b"].astype(float)).mean())
    difference = dataclasses.replace(images, estimate=estimate, n=len(pairs), p_value=p_value)
    return PairedRateTest(difference, (only_a, only_b))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (Holm 1979).

    Written out here: scipy.stats has no Holm (`false_discovery_control` is Benjamini-Hochberg
    / -Yekutieli, which control another error rate). The i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) p_(j)). NaN p-values stay NaN and do not count in m.

    Args:
        p_values: the family's p-values, in any order.

    Returns:
        The adjusted p-values, in the order given.

    Raises:
        ValueError: a p-value outside [0, 1].
    """
    p = np.asarray(p_values, np.float64).ravel()
    known = ~np.isnan(p)
    if np.any((p[known] < 0) | (p[known] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[known].tolist()}")
    adjusted = np.full_like(p, math.nan)
    order = np.argsort(p[known])
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[known][order])
    adjusted_known = np.empty(m)
    adjusted_known[order] = np.maximum.accumulate(scaled)
    adjusted[known] = adjusted_known
    return adjusted


def with_seed(per_image: pd.DataFrame) -> pd.DataFrame:
    """The per-image table with its `seed` column (0 for a table without one)."""
    if SEED_COLUMN in per_image:
        return per_image
    return per_image.assign(**{SEED_COLUMN: 0})


def attacked(per_image: pd.DataFrame) -> pd.DataFrame:
    """The rows of images the model classified correctly: those an attack was run on."""
    return per_image[as_bool(per_image["correct"])]


def fooled(per_image: pd.DataFrame) -> pd.DataFrame:
    """The rows that count for a robustness comparison: images the model classified correctly
    and the attack fooled, with a finite distance; `stages` filled in (`chain_length`).

    Raises:
        ValueError: the table lacks a column of `tables.PER_IMAGE_REQUIRED`.
    """
    check_per_image(per_image)
    rows = per_image.assign(**{CHAIN_LENGTH_COLUMN: chain_length(per_image)})
    keep = as_bool(rows["correct"]) & as_bool(rows["success"])
    distance = pd.to_numeric(rows["distance"], errors="coerce")
    keep &= np.isfinite(distance)
    # distance[keep], not distance: assigning a longer Series to an empty frame adds its rows
    return rows[keep].assign(distance=distance[keep])


def model_robustness(
    per_image: pd.DataFrame, ci_level: float = statistics.DEFAULT_CONFIDENCE
) -> pd.DataFrame:
    """Per model and attack: images attacked and fooled, the share fooled and the mean
    minimal perturbation over the fooled images, each with its interval.

    Args:
        per_image: the per-image table (`tables.PER_IMAGE_REQUIRED` columns).
        ci_level: the intervals' level.

    Returns:
        One row per (dataset, stages, temperature, stage, role, attack), sorted: those columns,
        images (rows of the model), attacked, fooled (counts), success (an `Estimate`: Wilson
        interval of fooled / attacked) and distance (an `Estimate`: mean over the fooled images,
        BCa bootstrap interval, seed 0; NaN where none was fooled).
    """
    check_per_image(per_image)
    rows = per_image.assign(**{CHAIN_LENGTH_COLUMN: chain_length(per_image)})
    keys = [*MODEL_KEYS, "role", "attack"]
    records = []
    for key, group in rows.groupby(keys, sort=True):
        chosen, hit = attacked(group), fooled(group)
        records.append(
            dict(zip(keys, key, strict=True))
            | {"images": len(group), "attacked": len(chosen), "fooled": len(hit)}
            | {"success": statistics.proportion(len(hit), len(chosen), ci_level)}
            | {"distance": statistics.mean_interval(hit["distance"].to_numpy(), ci_level)}
        )
    columns = [*keys, "images", "attacked", "fooled", "success", "distance"]
    return pd.DataFrame(records, columns=columns)


def perturbation_intervals(
    per_image: pd.DataFrame, ci_level: float = statistics.DEFAULT_CONFIDENCE
) -> pd.DataFrame:
    """The mean minimal perturbation of each model and attack, with its interval.

    Args:
        per_image: the per-image table (`tables.PER_IMAGE_REQUIRED` columns).
        ci_level: the intervals' level.

    Returns:
        One row per (dataset, chain length, temperature, stage, attack) with images fooled:
        columns dataset, stages, temperature, stage, attack, estimate, low, high, n (images
        fooled), the `distance` of `model_robustness`.
    """
    table = model_robustness(per_image, ci_level)
    table = table[table["fooled"] > 0]
    distance = table["distance"]
    return pd.DataFrame(
        {
            **{c: table[c] for c in [*MODEL_KEYS, "attack"]},
            "estimate": [d.estimate for d in distance],
            "low": [d.low for d in distance],
            "high": [d.high for d in distance],
            "n": [d.n for d in distance],
        },
        columns=[*MODEL_KEYS, "attack", "estimate", "low", "high", "n"],
    ).reset_index(drop=True)


def attack_ratios(
    per_image: pd.DataFrame,
    first: str,
    second: str,
    ci_level: float = statistics.DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Two attacks of one norm on the same images of each model (FMN against C&W, say): the
    ratio of their mean distances on the images both fooled, with a paired BCa interval
    (`statistics.ratio_of_means`).

    Args:
        per_image: the per-image table.
        first, second: the attacks (the ratio is first / second).
        ci_level: the interval's level.
        seed: the bootstrap's seed.

    Returns:
        One row per model (`MODEL_KEYS`, role, and seed where the table has one) that both
        attacks fooled on some image, sorted: those columns, n (images both fooled), the mean
        distance of each attack there (`first`, `second`), ratio (an `Estimate`), and
        at_or_below (images where `first` found a distance at or below `second`'s).
    """
    hit = fooled(per_image)
    keys = [*MODEL_KEYS, "role"] + ([SEED_COLUMN] if SEED_COLUMN in hit else [])
    records = []
    for key, group in hit.groupby(keys, sort=True):
        distances = group.pivot_table(
            index="image", columns="attack", values="distance", aggfunc="min"
        )
        if first not in distances or second not in distances:
            continue
        both = distances[[first, second]].dropna()
        if both.empty:
            continue
        a, b = both[first].to_numpy(), both[second].to_numpy()
        records.append(
            dict(zip(keys, key, strict=True))
            | {"n": len(both), first: float(a.mean()), second: float(b.mean())}
            | {"ratio": statistics.ratio_of_means(a, b, ci_level, seed)}
            | {"at_or_below": int((a <= b).sum())}
        )
    return pd.DataFrame(records, columns=[*keys, "n", first, second, "ratio", "at_or_below"])


def model_distances(images: pd.DataFrame, models: Sequence[tuple]) -> pd.DataFrame:
    """[image x model] minimal perturbations of the `models` ((temperature, stage) pairs) on
    the images fooled under every one of them (`fooled`), in image order.

    With rows of several attacks of one norm (C&W's and FMN's, say), each image's distance is
    the smallest any of them found, among the attacks run on that image for every one of the
    models, so the models of a column pair are measured alike image by image (an attack run on
    some of the models only does not count on that image).

    Args:
        images: per-image rows of one dataset, norm and chain length (one attack or several).
        models: the (temperature, stage) of each model, one column each.
    """
    rows = _model_rows(images, models)
    run = attacks_run(images, models)
    columns = {}
    for model, chosen in rows.items():
        common = pd.MultiIndex.from_frame(chosen[["image", "attack"]]).isin(run)
        columns[model] = fooled(chosen[common]).groupby("image")["distance"].min()
    return pd.DataFrame(columns).dropna()


def attacks_run(images: pd.DataFrame, models: Sequence[tuple]) -> pd.MultiIndex:
    """The (image, attack) pairs of `images` run on every one of the `models` ((temperature,
    stage) pairs): the measurements `model_distances` compares image by image."""
    run = None
    for chosen in _model_rows(images, models).values():
        pairs = pd.MultiIndex.from_frame(chosen[["image", "attack"]])
        run = pairs if run is None else run.intersection(pairs)
    return run


def _model_rows(images: pd.DataFrame, models: Sequence[tuple]) -> dict[tuple, pd.DataFrame]:
    """{(temperature, stage): that model's rows of `images`} for each of `models`."""
    return {
        (t, s): images[(images["temperature"] == t) & (images["stage"] == s)] for t, s in models
    }


def _pairs(
    per_image: pd.DataFrame, pairs: Sequence[tuple[str, str]] = PAIRS
) -> Iterator[tuple[dict, str, str, pd.Series, pd.Series]]:
    """Per (dataset, chain, T, attack[, seed]) and `PAIRS` entry: the distances of both models
    on the images both fooled, in image order (three-model chains and the C&W attacks only;
    a seed key only where the table has a `seed` column)."""
    hit = fooled(per_image)
    hit = hit[(hit[CHAIN_LENGTH_COLUMN] <= 3) & hit["attack"].isin(ATTACKS)]
    keys = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "attack"]
    keys += [SEED_COLUMN] if SEED_COLUMN in hit else []
    for key, group in hit.groupby(keys, sort=True):
        by_role = {
            role: rows.groupby("image")["distance"].mean() for role, rows in group.groupby("role")
        }
        for later, earlier in pairs:
            if later in by_role and earlier in by_role:
                a, b = by_role[later].align(by_role[earlier], join="inner")
                yield dict(zip(keys, key, strict=True)), later, earlier, a, b


def has_pairs(per_image: pd.DataFrame) -> bool:
    """Whether neighbouring models of a three-model chain share an image both attacks fool."""
    return any(len(a) for *_, a, _ in _pairs(per_image))


def paired_differences(
    per_image: pd.DataFrame, ci_level: float = statistics.DEFAULT_CONFIDENCE
) -> pd.DataFrame:
    """Paired differences in minimal perturbation between neighbours of three-model chains.

    For each dataset, T and C&W attack, student - assistant and assistant - teacher over the
    images both models classify correctly and both attacks fool
    (`keras_takd.core.statistics.paired_difference`): above 0, the later model needs larger
    perturbations on the same images.

    Args:
        per_image: the per-image table (`tables.PER_IMAGE_REQUIRED` columns).
        ci_level: the intervals' level.

    Returns:
        Columns dataset, stages, temperature, attack, comparison ("student - assistant" ...),
        estimate, low, high, n (image pairs), p_value (Wilcoxon signed-rank); seed after
        attack where the table has a `seed` column.
    """
    records = []
    for key, later, earlier, a, b in _pairs(per_image):
        estimate = statistics.paired_difference(a.to_numpy(), b.to_numpy(), ci_level)
        records.append(
            key
            | {"comparison": f"{later} - {earlier}", "estimate": estimate.estimate}
            | {"low": estimate.low, "high": estimate.high, "n": estimate.n}
            | {"p_value": estimate.p_value}
        )
    columns = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "attack"]
    columns += [SEED_COLUMN] if SEED_COLUMN in per_image else []
    columns += ["comparison", "estimate", "low", "high", "n", "p_value"]
    return pd.DataFrame(records, columns=columns)


def image_differences(
    per_image: pd.DataFrame, pairs: Sequence[tuple[str, str]] = PAIRS
) -> pd.DataFrame:
    """Each image's difference in minimal perturbation between two models of a chain.

    The differences `paired_differences` summarises, one row per image: later - earlier model
    of each pair, on the images both classify correctly and both attacks fool (`fooled`), per
    dataset, chain length, T, C&W attack and seed.

    Args:
        per_image: the per-image table (`tables.PER_IMAGE_REQUIRED` columns, `seed` optional:
            absent, every row is seed 0).
        pairs: (later role, earlier role) pairs, e.g. ("student", "teacher").

    Returns:
        Columns dataset, stages, temperature, attack, seed, comparison ("student - teacher"
        ...), image, difference.
    """
    columns = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "attack", SEED_COLUMN]
    frames = [
        pd.DataFrame(
            key
            | {"comparison": f"{later} - {earlier}", "image": a.index.to_numpy()}
            | {"difference": (a - b).to_numpy()}
        )
        for key, later, earlier, a, b in _pairs(with_seed(per_image), pairs)
    ]
    columns += ["comparison", "image", "difference"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def curve_rho(curve: pd.Series) -> float:
    """Spearman's rho between a curve's index (T or step) and its values (NaN below 3 points,
    0 for a constant curve), `scipy.stats.spearmanr` through `statistics.rank_correlation`."""
    curve = curve.dropna()
    if curve.index.nunique() < 3:
        return math.nan
    return statistics.rank_correlation(curve.index.to_numpy(float), curve.to_numpy(float))
