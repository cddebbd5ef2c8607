"""Mandal & Guo's figures as pages: which figures the data allow, built and written to disk.

Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant", Figs. 3-8, the
gradient-masking check (Carlini & Wagner, arXiv:1608.04644), Papernot et al.'s fixed-budget
success (arXiv:1511.04508) and, from per-image data, `paired_differences`. Each figure is one
`FigureSpec` (`FIGURES`): the rows it draws, the columns that must hold data, how it is laid
out and the notes under it. Accuracy carries the binomial (Wilson) interval of
`core.statistics.proportion` on results.csv's `metric_images`; with per-image data the mean
perturbations carry the intervals of `analysis.replicates.perturbation_intervals_by_seed`
(each model matched by seed as well), and `paired_differences` draws
`analysis.statistics.paired_differences`. Results of several seeds (issue 25) draw each (T,
stage) as the mean over its seeds with the t-interval over seeds of `replicates.seed_mean` in
place of those intervals, each seed a dot; per-image data of 2 or more seeds add
`seed_level_differences`, drawn from `analysis.replicates.seed_level_differences`, and, for
chains of more than 3 models, `step_trend` (`analysis.replicates.step_trend`). Nothing is
computed here. A figure the data do not allow is skipped with its reason: the chain it needs,
the columns that hold no values, or the seeds.

`build_figures` returns the figures (constrained layout: nothing clipped) and `draw_all` writes
them as PNG and PDF. Both use bare `matplotlib.figure.Figure` objects (rendered by Agg), never
pyplot, so they change no global matplotlib state and need no display.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import textwrap
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from keras_takd.core import files
from keras_takd.core.statistics import DEFAULT_CONFIDENCE, proportion
from keras_takd.takd.analysis.figures.panels import (
    ACCURACY_MIN_SPAN,
    CI_HIGH,
    CI_LOW,
    CI_N,
    OVER_SEEDS,
    SENSITIVITY_NAMES,
    count_text,
    has_data,
    multistep,
    plot_accuracy,
    plot_budget_success,
    plot_confidence,
    plot_gradient_masking,
    plot_mean_sensitivity,
    plot_multistep_accuracy,
    plot_multistep_average,
    plot_multistep_robustness,
    plot_near_zero_gradients,
    plot_paired_differences,
    plot_perturbation,
    plot_seed_level_differences,
    plot_step_trend,
    plot_success_rate,
    three_stage,
)
from keras_takd.takd.analysis.replicates import (
    COMPARISONS,
    MEASURES,
    has_seed_differences,
    perturbation_intervals_by_seed,
    seed_level_differences,
    seed_mean,
    step_trend,
)
from keras_takd.takd.analysis.statistics import (
    SEED_COLUMN,
    fooled,
    has_pairs,
    paired_differences,
    with_seed,
)
from keras_takd.takd.analysis.tables import chain_length, check_results, dataset_label, read_tables
from keras_takd.takd.schema import ATTACKS, CHAIN_LENGTH_COLUMN, FMN_ATTACKS, MASKED_L2_PREFIX

_LOG = logging.getLogger(__name__)

FORMATS = ("png", "pdf")


def _test_set_note(df: pd.DataFrame, level: str) -> str:
    del level  # no interval in this note
    if _seed_count(df) >= 2:
        return "n in the legends: test images of each seed's model (results.csv's metric_images)."
    if has_data(df, "metric_images"):
        return (
            "Each point: one model on its first n test images (n in the legends: results.csv's "
            "metric_images)."
        )
    return (
        "Each point: one model on the evaluation's test images (all of them unless evaluate "
        "--metric_images cut them; these results have no metric_images column to say how many)."
    )


def _accuracy_note(df: pd.DataFrame, level: str) -> str:
    span = f"The y axis spans at least {ACCURACY_MIN_SPAN:g} percentage points."
    if _seed_count(df) >= 2:
        return span  # the bars span the seeds: `_seeds_note`
    bars = (
        f"Error bars: {level} Wilson intervals of the binomial proportion over the n test images."
        if has_data(df, f"test_accuracy{CI_LOW}")
        else "No error bars: results.csv gives no metric_images count."
    )
    return f"{bars} {span}"


def _seeds_note(df: pd.DataFrame, level: str) -> str:
    """What a point is when the results hold several seeds; "" for one seed."""
    seeds = _seed_count(df)
    if seeds < 2:
        return ""
    return (
        f"Each point: the mean over {seeds} seeds, {level} t-interval over seeds; dots: each seed."
    )


_ATTACK_NOTE = (
    "n in the legends: images per point (mean and max: images the attack fooled; success "
    "rate: images attacked, i.e. classified correctly)."
)
_DODGE_NOTE = (
    "Series are shifted sideways within the grey band around each temperature, so that equal "
    "values stay visible; the ticks mark the real temperatures."
)
_ATTACK_NOTES = (_ATTACK_NOTE, _seeds_note, _DODGE_NOTE)
_TEST_SET_NOTES = (_test_set_note, _seeds_note, _DODGE_NOTE)
_ACCURACY_NOTES = (_test_set_note, _seeds_note, _accuracy_note, _DODGE_NOTE)
_ROW_NEEDS = {
    three_stage: "a chain of at most 3 models (teacher, assistant, student)",
    multistep: "a chain of more than 3 models (the multi-step distillation of section VI)",
}
"""What each row selector of `FigureSpec.rows` needs, for the reason a figure is skipped."""
_BUDGET_NOTES = ("n in the legends: images attacked per point.", _seeds_note, _DODGE_NOTE)


def _with_intervals(results: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """`results` plus `<attack>_mean_ci_low`, `_ci_high`, `_ci_n` from
    `perturbation_intervals_by_seed`, each model matched by seed as well (seed 0 where the
    results have no seed column)."""
    keys = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "stage", SEED_COLUMN]
    left = pd.DataFrame(
        {
            "dataset": results["dataset"].astype(str).to_numpy(),
            CHAIN_LENGTH_COLUMN: chain_length(results).astype(float).to_numpy(),
            "temperature": results["temperature"].astype(float).to_numpy(),
            "stage": results["stage"].astype(float).to_numpy(),
            SEED_COLUMN: with_seed(results)[SEED_COLUMN].astype(float).to_numpy(),
        }
    )
    right = intervals.astype(
        {"dataset": str, CHAIN_LENGTH_COLUMN: float, "stage": float, SEED_COLUMN: float}
    )
    right = right.astype({"temperature": float})
    out = results.copy()
    for attack, group in right.groupby("attack"):
        column = f"{attack}_mean"
        merged = left.merge(group.drop(columns="attack"), how="left", on=keys)
        out[f"{column}{CI_LOW}"] = merged["low"].to_numpy()
        out[f"{column}{CI_HIGH}"] = merged["high"].to_numpy()
        out[f"{column}{CI_N}"] = merged["n"].to_numpy()
        if column in out.columns:
            _warn_if_means_differ(column, out[column].to_numpy(), merged["estimate"].to_numpy())
    return out


def _with_accuracy_intervals(results: pd.DataFrame, ci_level: float) -> pd.DataFrame:
    """`results` plus `test_accuracy_ci_low`, `_ci_high`, `_ci_n`: the binomial interval of each
    accuracy over its `metric_images` test images (none where that count is absent)."""
    if not has_data(results, "metric_images") or "test_accuracy" not in results.columns:
        return results
    bounds = [
        _accuracy_interval(accuracy, n, ci_level)
        for accuracy, n in zip(results["test_accuracy"], results["metric_images"], strict=True)
    ]
    low, high, n = np.array(bounds, dtype=float).reshape(-1, 3).T
    suffixes = {CI_LOW: low, CI_HIGH: high, CI_N: n}
    return results.assign(**{f"test_accuracy{key}": value for key, value in suffixes.items()})


def _seed_count(df: pd.DataFrame) -> int:
    """How many seeds the results hold (1 without a seed column)."""
    return int(df[SEED_COLUMN].nunique()) if SEED_COLUMN in df.columns else 1


def _with_seed_intervals(df: pd.DataFrame, ci_level: float) -> pd.DataFrame:
    """With results of 2 or more seeds: for each model and column a figure draws, the mean
    over its seeds (`<column>_over_seeds`) and the t-interval over seeds (`replicates.seed_mean`)
    as `<column>_ci_low` / `_ci_high`, in place of any interval over images; `df` as it is with
    one seed."""
    if _seed_count(df) < 2:
        return df
    columns = sorted({c for spec in FIGURES for c in spec.columns if c in df.columns})
    out = df.copy()
    for column in columns:
        out[f"{column}{OVER_SEEDS}"] = out[f"{column}{CI_LOW}"] = out[f"{column}{CI_HIGH}"] = np.nan
    models = [df["dataset"], chain_length(df), df["temperature"], df["stage"]]
    for _, rows in df.groupby(models, sort=False):
        for column in columns:
            values = rows[column].dropna()
            if values.empty:
                continue
            estimate = seed_mean(values.to_numpy(float), ci_level)
            out.loc[rows.index, f"{column}{OVER_SEEDS}"] = estimate.estimate
            out.loc[rows.index, f"{column}{CI_LOW}"] = estimate.low
            out.loc[rows.index, f"{column}{CI_HIGH}"] = estimate.high
    return out


def _accuracy_interval(accuracy: float, n: float, ci_level: float) -> tuple[float, float, float]:
    if not (np.isfinite(accuracy) and np.isfinite(n) and n >= 1):
        return np.nan, np.nan, np.nan
    estimate = proportion(round(accuracy * n), int(n), ci_level)
    return estimate.low, estimate.high, estimate.n


def _warn_if_means_differ(column: str, reported, recomputed) -> None:
    both = np.isfinite(reported.astype(float)) & np.isfinite(recomputed)
    gap = np.abs(reported[both] - recomputed[both])
    if np.any(gap > 1e-6 * (1 + np.abs(reported[both]))):
        _LOG.warning(
            "%s: the per-image mean differs from results.csv for %d models (by up to %.3g): "
            "are the per-image data from the same evaluation?",
            column,
            int(np.sum(gap > 1e-6 * (1 + np.abs(reported[both])))),
            float(gap.max()),
        )


def _wrap(text: str, fig: Figure, points: float) -> str:
    """`text` broken into lines that fit the figure's width at a font of `points`."""
    width = max(20, int(fig.get_figwidth() * 72 / (0.6 * points)))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def _grid(rows: int, cols: int, title: str, width: float = 4.6, height: float = 3.8):
    # A bare Figure (no pyplot): no global state, no GUI backend, rendered by Agg on save.
    # Constrained layout keeps titles, labels, legends and the footnote inside the figure.
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.suptitle(_wrap(title, fig, 12), fontsize=12)
    return fig, axes


def _footnote(fig: Figure, lines: Sequence[str]) -> None:
    """Notes under the figure (what a point rests on, the caption), laid out with the axes."""
    text = "\n".join(line for line in lines if line)
    if text:
        fig.supxlabel(_wrap(text, fig, 8), fontsize=8)


def _fig_accuracy(df, datasets):
    fig, axes = _grid(1, len(datasets), "Fig. 3: influence of distillation on accuracy")
    for ax, dataset in zip(axes[0], datasets, strict=True):
        plot_accuracy(ax, df, dataset)
    return fig


def _fig_sensitivity(df, datasets):
    title = "Fig. 4: influence of temperature on sensitivity (teacher, assistant, student)"
    fig, axes = _grid(2, 2 * len(datasets), title)
    for i, dataset in enumerate(datasets):
        for j, of in enumerate(("logits", "softmax")):
            plot_near_zero_gradients(axes[0, 2 * i + j], df, dataset, of)
            plot_mean_sensitivity(axes[1, 2 * i + j], df, dataset, of)
    return fig


def _robustness_attacks(df: pd.DataFrame) -> list[str]:
    """The attacks of Fig. 5: C&W's three norms (the paper's panels) where `df` holds any C&W
    data, then each Fast Minimum-Norm attack that holds data (e.g. the replicates' measure)."""

    def measured(attacks):
        return any(has_data(df, c) for c in _robustness_columns(attacks))

    return (list(ATTACKS) if measured(ATTACKS) else []) + [a for a in FMN_ATTACKS if measured([a])]


def _fig_robustness(df, dataset):
    title = (
        f"Fig. 5 ({dataset_label(dataset)}): minimal perturbation over successful attacks; "
        "teacher dashed"
    )
    attacks = _robustness_attacks(three_stage(df[df["dataset"] == dataset]))
    fig, axes = _grid(3, len(attacks), title)
    for j, attack in enumerate(attacks):
        plot_perturbation(axes[0, j], df, dataset, attack, "mean")
        plot_perturbation(axes[1, j], df, dataset, attack, "max")
        plot_success_rate(axes[2, j], df, dataset, attack)
    return fig


def _fig_confidence(df, datasets):
    fig, axes = _grid(1, len(datasets), "Fig. 6: influence of distillation on confidence")
    for ax, dataset in zip(axes[0], datasets, strict=True):
        plot_confidence(ax, df, dataset)
    return fig


def _fig_multistep_accuracy(df, datasets):
    fig, axes = _grid(
        1, len(datasets), "Fig. 7: model accuracy for multi-step distillation", width=6.4
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        plot_multistep_accuracy(ax, df, dataset)
    return fig


def _fig_multistep_robustness(df, dataset):
    title = f"Fig. 8 ({dataset_label(dataset)}): robustness for multi-step distillation"
    attacks = _robustness_attacks(multistep(df[df["dataset"] == dataset]))
    fig, axes = _grid(len(attacks), 2, title, width=5.6, height=4.0)
    for i, attack in enumerate(attacks):
        plot_multistep_robustness(axes[i, 0], df, dataset, attack)
        plot_multistep_average(axes[i, 1], df, dataset, attack)
    return fig


def _fig_gradient_masking(df, datasets):
    title = (
        "Gradient masking check: C&W $L_2$ against the logits (solid, filled markers) and "
        "against softmax(logits / T) at the training temperature (dotted, hollow markers)"
    )
    fig, axes = _grid(2, len(datasets), title, width=5.6, height=4.4)
    for j, dataset in enumerate(datasets):
        plot_gradient_masking(axes[0, j], df, dataset, "mean")
        plot_gradient_masking(axes[1, j], df, dataset, "success_rate")
    return fig


def _fig_budget_success(df, datasets):
    title = "Adversarial success rate at a fixed budget (Papernot et al. 2016)"
    fig, axes = _grid(2, len(datasets), title, width=5.2)
    for j, dataset in enumerate(datasets):
        plot_budget_success(axes[0, j], df, dataset, "l2")
        plot_budget_success(axes[1, j], df, dataset, "linf")
    return fig


def _fig_paired_differences(differences: pd.DataFrame) -> Figure:
    datasets = _datasets(differences)
    attacks = [a for a in ATTACKS if a in set(differences["attack"])]
    title = (
        "Paired differences in minimal perturbation: same T, same images (correct under both "
        "models, fooled by both attacks); above 0, the later model is the more robust"
    )
    fig, axes = _grid(len(datasets), len(attacks), title, width=5.0, height=4.0)
    for i, dataset in enumerate(datasets):
        for j, attack in enumerate(attacks):
            plot_paired_differences(axes[i, j], differences, dataset, attack)
    return fig


def _fig_seed_level_differences(table: pd.DataFrame) -> Figure:
    """One row per (dataset, chain length, attack) of `seed_level_differences`, one column per
    comparison."""
    present = set(zip(table["dataset"], table["stages"], table["attack"], strict=True))
    attacks = [a for a in MEASURES if a in set(table["attack"])]
    rows = [
        (dataset, stages, attack)
        for dataset in _datasets(table)
        for stages in sorted({k for d, k, _ in present if d == dataset})
        for attack in attacks
        if (dataset, stages, attack) in present
    ]
    title = (
        "Seed-level paired differences in minimal perturbation: later - earlier model, per seed "
        "on the images both classify correctly and both attacks fool; above 0, the later model "
        "is the more robust"
    )
    comparisons = [f"{later} - {earlier}" for later, earlier in COMPARISONS]
    fig, axes = _grid(len(rows), len(comparisons), title, width=4.6, height=3.8)
    for i, (dataset, stages, attack) in enumerate(rows):
        chain = table[table["stages"] == stages]
        for j, comparison in enumerate(comparisons):
            plot_seed_level_differences(axes[i, j], chain, dataset, attack, comparison)
    # One legend, in the first panel that draws every kind of mark (an interval: 2+ seeds).
    entries = [len(ax.get_legend_handles_labels()[1]) for ax in fig.axes]
    fig.axes[int(np.argmax(entries))].legend(fontsize="x-small")
    return fig


def _robustness_columns(prefixes: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{p}_{s}" for p in prefixes for s in ("mean", "max", "success_rate"))


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure of the results table.

    Attributes:
        name: the file stem (`<name>_<dataset>` for a figure per dataset).
        rows: selects the rows it draws (`panels.three_stage` or `panels.multistep`).
        columns: the columns any of which must hold data for it to be drawn.
        layout: draws it, given the table and the dataset (per dataset) or datasets.
        per_dataset: one figure per dataset rather than one for all.
        notes: the lines under it; a callable one gets the table drawn and the interval level
            (e.g. "95%").
        intervals: whether its means carry intervals when per-image data are given.
    """

    name: str
    rows: Callable[[pd.DataFrame], pd.DataFrame]
    columns: tuple[str, ...]
    layout: Callable[[pd.DataFrame, object], Figure]
    per_dataset: bool = False
    notes: tuple[str | Callable[[pd.DataFrame, str], str], ...] = _TEST_SET_NOTES
    intervals: bool = False


FIGURES = (
    FigureSpec(
        "fig3_accuracy", three_stage, ("test_accuracy",), _fig_accuracy, notes=_ACCURACY_NOTES
    ),
    FigureSpec(
        "fig4_sensitivity",
        three_stage,
        tuple(
            f"sensitivity_{of}_{s}" for of in SENSITIVITY_NAMES for s in ("zero_fraction", "mean")
        ),
        _fig_sensitivity,
    ),
    FigureSpec(
        "fig5_robustness",
        three_stage,
        _robustness_columns((*ATTACKS, *FMN_ATTACKS)),
        _fig_robustness,
        per_dataset=True,
        notes=_ATTACK_NOTES,
        intervals=True,
    ),
    FigureSpec("fig6_confidence", three_stage, ("confidence",), _fig_confidence),
    FigureSpec("fig7_multistep_accuracy", multistep, ("test_accuracy",), _fig_multistep_accuracy),
    FigureSpec(
        "fig8_multistep_robustness",
        multistep,
        tuple(f"{a}_mean" for a in (*ATTACKS, *FMN_ATTACKS)),
        _fig_multistep_robustness,
        per_dataset=True,
        notes=_ATTACK_NOTES,
        intervals=True,
    ),
    FigureSpec(
        "gradient_masking",
        three_stage,
        _robustness_columns([MASKED_L2_PREFIX]),
        _fig_gradient_masking,
        notes=_ATTACK_NOTES,
        intervals=True,
    ),
    FigureSpec(
        "budget_success",
        three_stage,
        ("l2_budget_success_rate", "linf_budget_success_rate"),
        _fig_budget_success,
        notes=_BUDGET_NOTES,
    ),
)
"""Every figure of the results table, in the order they are written."""

PAIRED_FIGURE = "paired_differences"
"""The figure drawn from per-image data alone (`statistics.paired_differences`)."""
SEED_LEVEL_FIGURE = "seed_level_differences"
"""The figure drawn from per-image data of 2 or more seeds (`replicates.seed_level_differences`)."""
STEP_FIGURE = "step_trend"
"""The figure of chains of more than 3 models over 2 or more seeds (`replicates.step_trend`)."""


def _datasets(df: pd.DataFrame) -> list[str]:
    known = [d for d in ("mnist", "cifar10") if d in set(df["dataset"])]
    return known + sorted(set(map(str, df["dataset"])) - set(known))


def _skip_reason(df: pd.DataFrame, spec: FigureSpec) -> str:
    """Why `spec` cannot be drawn from `df`: the chain it needs, or its columns."""
    if spec.rows(df).empty:
        return f"it needs {_ROW_NEEDS[spec.rows]}; the results have none"
    present = [c for c in spec.columns if c in df.columns]
    if not present:
        return f"the results have none of the columns {', '.join(spec.columns)}"
    return f"no values in columns {', '.join(present)} for {_ROW_NEEDS[spec.rows]}"


def _plan(df: pd.DataFrame) -> tuple[list[tuple[FigureSpec, str, object]], dict[str, str]]:
    """The figures the data allow, as (spec, file stem, argument), and why others are not."""
    planned, skipped = [], {}
    for spec in FIGURES:
        groups = [(d, df[df["dataset"] == d]) for d in _datasets(df)]
        usable = [
            d for d, rows in groups if any(has_data(spec.rows(rows), c) for c in spec.columns)
        ]
        if not usable:
            skipped[spec.name] = _skip_reason(df, spec)
        elif spec.per_dataset:
            planned += [(spec, f"{spec.name}_{d}", d) for d in usable]
        else:
            planned.append((spec, spec.name, usable))
    return planned, skipped


_NO_PER_IMAGE = "no per-image data (per_image.csv beside results.csv, or --per_image)"
"""Why no figure of per-image data is drawn without them."""


def _paired_skip_reason(per_image: pd.DataFrame) -> str | None:
    """Why `PAIRED_FIGURE` is not drawn from `per_image`; None when it is drawn."""
    if not has_pairs(per_image):
        return (
            "the per-image data hold no image that neighbouring models of a three-model chain "
            "both classify correctly and the attack fools under both"
        )
    return None


def _seed_level_skip_reason(per_image: pd.DataFrame) -> str | None:
    """Why `SEED_LEVEL_FIGURE` is not drawn from `per_image` (it needs chains of at most 3
    models and 2 or more seeds); None when it is drawn."""
    if not (chain_length(per_image) <= 3).any():
        return "it compares the models of chains of at most 3 models; the per-image data have none"
    seeds = int(with_seed(per_image)[SEED_COLUMN].nunique())
    if seeds < 2:
        return (
            f"the per-image data hold {seeds} seed: an interval over seeds needs 2 or more "
            "independently trained chains (a seed column with 2 or more values)"
        )
    if not has_seed_differences(per_image):
        return (
            "no two models of a chain share an image both classify correctly and the attack "
            "fools, in any seed"
        )
    return None


def _step_skip_reason(per_image: pd.DataFrame) -> str | None:
    """Why `STEP_FIGURE` is not drawn from `per_image`, for results with a chain of more than 3
    models; None when it is drawn."""
    long_chains = fooled(per_image)
    long_chains = long_chains[long_chains[CHAIN_LENGTH_COLUMN] > 3]
    if long_chains.empty:
        return "the per-image data hold no image a chain of more than 3 models was fooled on"
    keys = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "attack"]
    long_chains = with_seed(long_chains)
    seeds = int(long_chains.groupby(keys)[SEED_COLUMN].nunique().max())
    if seeds < 2:
        return (
            f"the per-image data of each chain of more than 3 models hold {seeds} seed: an "
            "interval over seeds needs 2 or more independently trained chains"
        )
    stages = long_chains.groupby([*keys, SEED_COLUMN, "image"])["stage"]
    if not ((stages.min() == 1) & (stages.max() > 1)).any():
        return "no step of a chain of more than 3 models shares a fooled image with its teacher"
    return None


def _image_plan(
    results: pd.DataFrame, per_image: pd.DataFrame | None
) -> tuple[list[str], dict[str, str]]:
    """The figures of per-image data the data allow, in the order they are written, and why
    others are not (as `_plan` for those of the results table). A figure in neither is not at
    issue: `STEP_FIGURE` when the results hold no chain of more than 3 models (figs. 7 and 8
    already say what is missing)."""
    checks = {PAIRED_FIGURE: _paired_skip_reason, SEED_LEVEL_FIGURE: _seed_level_skip_reason}
    if (chain_length(results) > 3).any():
        checks[STEP_FIGURE] = _step_skip_reason
    reasons = {
        name: _NO_PER_IMAGE if per_image is None else check(per_image)
        for name, check in checks.items()
    }
    drawn = [name for name, reason in reasons.items() if reason is None]
    return drawn, {name: reason for name, reason in reasons.items() if reason is not None}


def skipped_figures(
    results_df: pd.DataFrame, per_image: pd.DataFrame | None = None
) -> dict[str, str]:
    """The figures `draw_all` would skip for these data, each with the reason.

    Raises:
        ValueError: if `results_df` lacks a key column or has no rows.
    """
    check_results(results_df)
    return _plan(results_df)[1] | _image_plan(results_df, per_image)[1]


def _level_text(ci_level: float) -> str:
    return f"{100 * ci_level:g}%"


def build_figures(
    results_df: pd.DataFrame,
    caption: str | None = None,
    per_image: pd.DataFrame | None = None,
    ci_level: float = DEFAULT_CONFIDENCE,
) -> dict[str, Figure]:
    """Every figure the data allow, by file stem (see `draw_all`), not yet saved.

    Raises:
        ValueError: if `results_df` lacks a key column or has no rows, `per_image` lacks a
            column of `tables.PER_IMAGE_REQUIRED`, or `ci_level` is not in (0, 1).
    """
    return _build(results_df, caption, per_image, ci_level)[0]


def _build(
    results_df: pd.DataFrame,
    caption: str | None,
    per_image: pd.DataFrame | None,
    ci_level: float,
) -> tuple[dict[str, Figure], dict[str, str]]:
    """(`build_figures`'s figures, `skipped_figures`'s reasons), each figure planned once."""
    check_results(results_df)
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), e.g. 0.95, got {ci_level!r}")
    df = _with_accuracy_intervals(results_df, ci_level)
    if per_image is not None:
        df = _with_intervals(df, perturbation_intervals_by_seed(per_image, ci_level))
    df = _with_seed_intervals(df, ci_level)
    planned, skipped = _plan(df)
    figures = _table_figures(df, planned, caption, per_image is not None, ci_level)
    drawn, image_skipped = _image_plan(results_df, per_image)
    figures |= {name: _IMAGE_FIGURES[name](per_image, ci_level, caption) for name in drawn}
    return figures, skipped | image_skipped


def _table_figures(
    df: pd.DataFrame,
    planned: list[tuple[FigureSpec, str, object]],
    caption: str | None,
    with_images: bool,
    ci_level: float,
) -> dict[str, Figure]:
    """The figures `_plan` planned, with their notes, by file stem; `with_images`: whether
    per-image data gave the means their intervals."""
    level = _level_text(ci_level)
    ci_note = (
        f"Error bars on the means: {level} BCa bootstrap intervals over the images fooled."
        if with_images
        else "Means drawn without intervals (no per-image data)."
    )
    if _seed_count(df) >= 2:
        ci_note = ""  # the bars span the seeds: `_seeds_note`
    figures = {}
    for spec, stem, argument in planned:
        fig = spec.layout(df, argument)
        notes = [note if isinstance(note, str) else note(df, level) for note in spec.notes]
        notes.append(ci_note if spec.intervals else "")
        if spec.name == "fig8_multistep_robustness" and with_images:
            notes.append("The averages over T (right) carry no interval; see those per T (left).")
        notes.append(caption or "")
        _footnote(fig, notes)
        figures[stem] = fig
    return figures


def _paired_figure(per_image: pd.DataFrame, ci_level: float, caption: str | None) -> Figure:
    """The `PAIRED_FIGURE` of `statistics.paired_differences`, for per-image data
    `_paired_skip_reason` allows."""
    fig = _fig_paired_differences(paired_differences(per_image, ci_level))
    note = (
        f"Error bars: {_level_text(ci_level)} BCa bootstrap intervals of the mean paired "
        "difference; n = image pairs per point."
    )
    _footnote(fig, [note, _DODGE_NOTE, caption or ""])
    return fig


def _seed_level_figure(per_image: pd.DataFrame, ci_level: float, caption: str | None) -> Figure:
    """The `SEED_LEVEL_FIGURE` of `seed_level_differences`, for per-image data
    `_seed_level_skip_reason` allows."""
    table = seed_level_differences(per_image, ci_level)
    fig = _fig_seed_level_differences(table)
    level = _level_text(ci_level)
    images = count_text(table["images"], "image pairs")
    note = (
        "Dots: each seed's mean paired difference (one trained chain per seed). Thick bar: the "
        f"mean over seeds with its {level} t-interval over seeds; thin bar beside it: the "
        f"{level} two-level bootstrap interval (seeds, then images within each seed); a point "
        f"of 1 seed has neither. Dashed: no difference. {images} per point, over its seeds."
    )
    _footnote(fig, [note, caption or ""])
    return fig


def _step_figure(per_image: pd.DataFrame, ci_level: float, caption: str | None) -> Figure:
    """The `STEP_FIGURE`: a row per attack, a column per (dataset, chain length, T) of the long
    chains of `replicates.step_trend`, for per-image data `_step_skip_reason` allows."""
    table = step_trend(per_image, ci_level)
    attacks = [a for a in MEASURES if a in set(table["attack"])]
    keys = ["attack", "dataset", "stages", "temperature"]
    panels = {key: rows for key, rows in table.groupby(keys)}
    chains = sorted({key[1:] for key in panels})
    title = (
        "Seed-level trend over distillation steps (Mandal & Guo, section VI): each step - the "
        "teacher, per seed on the images both classify correctly and the attack fools; above "
        "0, the step is the more robust"
    )
    fig, axes = _grid(len(attacks), len(chains), title, width=6.0, height=4.2)
    for i, attack in enumerate(attacks):
        for j, chain in enumerate(chains):
            rows = panels.get((attack, *chain), table.iloc[:0])
            plot_step_trend(axes[i, j], rows, (*chain, attack))
    entries = [len(ax.get_legend_handles_labels()[1]) for ax in fig.axes]
    fig.axes[int(np.argmax(entries))].legend(fontsize="x-small")
    level = _level_text(ci_level)
    images = count_text(table.loc[table["step"] != "slope", "images"], "image pairs")
    note = (
        "Dots: each seed's mean paired difference (one trained chain per seed). Bars: the mean "
        f"over seeds with its {level} t-interval over seeds. Slope: per seed the least-squares "
        "slope of the steps' mean distances (images every step fooled), then its mean and "
        f"{level} t-interval over seeds. Dashed: no difference. {images} per point, over its "
        "seeds."
    )
    _footnote(fig, [note, caption or ""])
    return fig


_IMAGE_FIGURES: dict[str, Callable[[pd.DataFrame, float, str | None], Figure]] = {
    PAIRED_FIGURE: _paired_figure,
    SEED_LEVEL_FIGURE: _seed_level_figure,
    STEP_FIGURE: _step_figure,
}
"""How each figure of per-image data (`_image_plan`) is drawn, from (per_image, ci_level,
caption)."""


def draw_all(
    results_df: pd.DataFrame,
    output_dir: str | pathlib.Path,
    caption: str | None = None,
    per_image: pd.DataFrame | None = None,
    ci_level: float = DEFAULT_CONFIDENCE,
) -> list[pathlib.Path]:
    """Writes every figure the data allow into `output_dir`, as PNG and PDF.

    Figures whose columns are absent or empty are skipped and logged (see `skipped_figures`);
    so is `paired_differences` without per-image data, and `seed_level_differences` (and, for
    chains of more than 3 models, `step_trend`) without per-image data of 2 or more seeds.

    Args:
        results_df: the results table (KEY_COLUMNS plus any of `schema.METRIC_COLUMNS`).
        output_dir: the folder to write to (created if needed).
        caption: optional note printed under every figure, e.g. the settings of the run.
        per_image: optional per-image table (`schema.PER_IMAGE_COLUMNS`) of the same models:
            the mean perturbations get their intervals, and `paired_differences` is drawn
            (and `seed_level_differences`, with 2 or more seeds).
        ci_level: the intervals' level.

    Returns:
        The paths written, in `FIGURES` order then `paired_differences`,
        `seed_level_differences` and `step_trend`, PNG before PDF.

    Raises:
        ValueError: if `results_df` lacks a key column or has no rows, `per_image` lacks a
            column, or `ci_level` is not in (0, 1).
    """
    return _draw(results_df, output_dir, caption, per_image, ci_level)[0]


def _draw(
    results_df: pd.DataFrame,
    output_dir: str | pathlib.Path,
    caption: str | None,
    per_image: pd.DataFrame | None,
    ci_level: float,
) -> tuple[list[pathlib.Path], dict[str, str]]:
    """(`draw_all`'s paths written, the figures it skipped with their reasons)."""
    figures, skipped = _build(results_df, caption, per_image, ci_level)
    for name, reason in skipped.items():
        _LOG.warning("skipping figure %s: %s", name, reason)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, fig in figures.items():
        for fmt in FORMATS:
            written.append(files.save_figure_atomic(fig, output_dir / f"{stem}.{fmt}", dpi=150))
    return written, skipped


def write_figures(
    results: Sequence[str | pathlib.Path],
    output_dir: str | pathlib.Path,
    per_image: Sequence[str | pathlib.Path] | None = None,
    caption: str | None = None,
    ci_level: float = DEFAULT_CONFIDENCE,
) -> str:
    """Reads results CSVs and their per-image tables, writes their figures, says what it did.

    Args:
        results: results CSVs (`tables.read_results`).
        output_dir: the folder for the PNG and PDF files (created).
        per_image: per-image CSVs of the same models; default: those beside the results CSVs
            (`tables.per_image_path`), where they exist.
        caption: a note printed under every figure.
        ci_level: the intervals' level.

    Returns:
        One line: the files written, the per-image files read and the figures skipped.

    Raises:
        FileNotFoundError, ValueError: see `tables.read_tables` and `draw_all`.
    """
    table, images, paths = read_tables(results, per_image)
    written, skipped = _draw(table, output_dir, caption, images, ci_level)
    if paths:
        uncertainty = f"{_level_text(ci_level)} intervals from {len(paths)} "
        uncertainty += f"per-image file(s): {', '.join(map(str, paths))}"
    else:
        uncertainty = "no per-image data: no intervals"
    reasons = "; ".join(f"skipped {name}: {reason}" for name, reason in skipped.items())
    return f"wrote {len(written)} files to {output_dir}; {uncertainty}" + (
        f"; {reasons}" if reasons else ""
    )
