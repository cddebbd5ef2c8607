"""Every statistic of the per-image table, computed once for figures, claims and the summary.

Which images count: a model's ATTACKED images are those it classifies correctly (the others
are excluded, not attacked); its FOOLED images are the attacked ones the attack succeeded on
with a finite distance, the minimal perturbation found (Carlini & Wagner, arXiv:1608.04644).
Every mean perturbation, paired difference and trend below rests on fooled images only, and a
comparison of models on the images fooled under every one of them (paired designs, Mandal &
Guo section V-C). The estimates and their intervals come from `keras_takd.core.statistics`
(`scipy.stats`: BCa bootstrap, Wilcoxon signed-rank, Spearman's rho, Wilson score).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from keras_takd.core import statistics
from keras_takd.takd.analysis.tables import as_bool, chain_length, check_per_image
from keras_takd.takd.schema import ATTACKS, CHAIN_LENGTH_COLUMN

PAIRS = (("student", "assistant"), ("assistant", "teacher"))
"""The paired differences of `paired_differences`: later model minus the one it learnt from."""
MODEL_KEYS = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "stage"]
"""The columns that name one model of the per-image table (its chain length included)."""


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


def model_distances(images: pd.DataFrame, models: Sequence[tuple]) -> pd.DataFrame:
    """[image x model] minimal perturbations of the `models` ((temperature, stage) pairs) on
    the images fooled under every one of them (`fooled`), in image order.

    Args:
        images: per-image rows of one dataset, attack and chain length.
        models: the (temperature, stage) of each model, one column each.
    """
    hit = fooled(images)
    columns = {}
    for temperature, stage in models:
        rows = hit[(hit["temperature"] == temperature) & (hit["stage"] == stage)]
        columns[(temperature, stage)] = rows.set_index("image")["distance"]
    return pd.DataFrame(columns).dropna()


def _pairs(per_image: pd.DataFrame) -> Iterator[tuple[dict, str, str, np.ndarray, np.ndarray]]:
    """Per (dataset, chain, T, attack) and `PAIRS` entry: the distances of both models on the
    images both fooled, in image order (three-model chains and the C&W attacks only)."""
    hit = fooled(per_image)
    hit = hit[(hit[CHAIN_LENGTH_COLUMN] <= 3) & hit["attack"].isin(ATTACKS)]
    keys = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "attack"]
    for key, group in hit.groupby(keys, sort=True):
        by_role = {
            role: rows.groupby("image")["distance"].mean() for role, rows in group.groupby("role")
        }
        for later, earlier in PAIRS:
            if later in by_role and earlier in by_role:
                a, b = by_role[later].align(by_role[earlier], join="inner")
                yield dict(zip(keys, key, strict=True)), later, earlier, a.to_numpy(), b.to_numpy()


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
        estimate, low, high, n (image pairs), p_value (Wilcoxon signed-rank).
    """
    records = []
    for key, later, earlier, a, b in _pairs(per_image):
        estimate = statistics.paired_difference(a, b, ci_level)
        records.append(
            key
            | {"comparison": f"{later} - {earlier}", "estimate": estimate.estimate}
            | {"low": estimate.low, "high": estimate.high, "n": estimate.n}
            | {"p_value": estimate.p_value}
        )
    columns = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "attack", "comparison", "estimate"]
    return pd.DataFrame(records, columns=[*columns, "low", "high", "n", "p_value"])


def curve_rho(curve: pd.Series) -> float:
    """Spearman's rho between a curve's index (T or step) and its values (NaN below 3 points,
    0 for a constant curve), `scipy.stats.spearmanr` through `statistics.rank_correlation`."""
    curve = curve.dropna()
    if curve.index.nunique() < 3:
        return math.nan
    return statistics.rank_correlation(curve.index.to_numpy(float), curve.to_numpy(float))
