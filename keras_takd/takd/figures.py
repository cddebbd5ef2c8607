"""The figures of Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant".

Draws, from the results CSV (columns `keras_takd.takd.schema.KEY_COLUMNS`, role and
`METRIC_COLUMNS`), the paper's Figs. 3-8: accuracy, near-zero gradients, mean and max minimal
perturbation, confidence and the multi-step chain, each against the distillation temperature T;
plus two checks the paper lacks: the C&W L2 attack against the logits beside the same attack
against softmax(logits / T) (the gradient masking of Carlini & Wagner, arXiv:1608.04644) and
Papernot et al.'s success rate at a fixed budget (arXiv:1511.04508).

Given the per-image table as well (`schema.PER_IMAGE_COLUMNS`, `per_image.csv` beside each run's
results.csv), the mean perturbations of Figs. 5 and 8 (left) and of the gradient-masking check
carry their confidence interval (`keras_takd.core.statistics.mean_interval` over the model's
images fooled), and one more figure answers the paper's question: `paired_differences`, the
paired differences in minimal perturbation student - assistant and assistant - teacher at each
T, on the images both models classify correctly and both attacks fool
(`keras_takd.core.statistics.paired_difference`).

Rows are split by the length of their chain: the optional `stages` column, else the largest
`stage` among rows of the same dataset and temperature. Chains of at most three models
(teacher, assistant, student: the paper's Figs. 3-6 and the two checks) are drawn one line per
`role`; longer chains (section VI, Figs. 7-8) one line per `stage`. Repeated rows of one model
(e.g. several seeds) are averaged. Every series has its own marker and line style and is shifted
sideways by a few percent of T, so that equal values do not hide each other; each figure says
how many images a point rests on (legends, or its footnote).

The `plot_*` functions draw on an `ax` they are given; `build_figures` returns the figures
(constrained layout: nothing clipped) and `draw_all` writes them as PNG and PDF. Both use bare
`matplotlib.figure.Figure` objects (rendered by Agg), never pyplot, so they change no global
matplotlib state and need no display.
"""

from __future__ import annotations

import logging
import pathlib
import textwrap
from collections.abc import Callable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from keras_takd.core import files, statistics
from keras_takd.takd.schema import (
    ATTACKS,
    CHAIN_LENGTH_COLUMN,
    KEY_COLUMNS,
    MASKED_L2_PREFIX,
    ROLE_COLUMN,
)

# What every row must hold to be drawn: the key and the model's role in its chain.
_REQUIRED = (*KEY_COLUMNS, ROLE_COLUMN)
# What the per-image table must hold to give intervals and paired differences.
PER_IMAGE_REQUIRED = (*_REQUIRED, "attack", "image", "correct", "success", "distance")

_LOG = logging.getLogger(__name__)

ROLES = ("teacher", "assistant", "student")
# The paper's Fig. 5: teacher red dashed, assistant orange, student blue; markers and line
# styles differ as well, so that lines on top of each other stay apart.
ROLE_STYLES = {
    "teacher": {"color": "tab:red", "linestyle": "--", "marker": "o"},
    "assistant": {"color": "tab:orange", "linestyle": "-.", "marker": "s"},
    "student": {"color": "tab:blue", "linestyle": "-", "marker": "^"},
}
# Later stages of a long chain (the teacher keeps its red dashed circles).
_LINESTYLES = ("-.", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (8, 2, 2, 2)), ":")
_MARKERS = ("s", "^", "D", "v", "P", "X", "*", "h")
_DODGE_DECADES = 0.03  # sideways shift between neighbouring series, in decades of T
ATTACK_NAMES = {"l0": "C&W $L_0$", "l2": "C&W $L_2$", "linf": r"C&W $L_\infty$"}
PERTURBATION_UNITS = {
    "l0": "pixels changed",
    "l2": "$L_2$ distance",
    "linf": r"$L_\infty$ distance",
}
SENSITIVITY_NAMES = {
    "logits": "gradient of the sum of logits",
    "softmax": "gradient of P(predicted class), T = 1",
}
PAIRS = (("student", "assistant"), ("assistant", "teacher"))
"""The paired differences of `paired_differences`: later model minus the one it learnt from."""
_PAIR_STYLES = (
    {"color": "tab:blue", "linestyle": "-", "marker": "^"},
    {"color": "tab:orange", "linestyle": "-.", "marker": "s"},
)
_PERCENT_LIMITS = (-3.0, 103.0)
FORMATS = ("png", "pdf")
# Suffixes of the interval columns `build_figures` adds beside `<attack>_mean`.
_LOW, _HIGH, _CI_N = "_ci_low", "_ci_high", "_ci_n"

_TEST_SET_NOTE = (
    "Each point: one model on the evaluation's test images (all of them unless evaluate "
    "--metric_images cut them; the count is not in results.csv)."
)
_ATTACK_NOTE = (
    "n in the legends: images per point (mean and max: images the attack fooled; success "
    "rate: images attacked, i.e. classified correctly)."
)
_DODGE_NOTE = "Series are shifted sideways a little so that equal values stay visible."


def dataset_label(dataset: str) -> str:
    """A reader's name for a dataset value ("cifar10" -> "CIFAR-10")."""
    return {"mnist": "MNIST", "cifar10": "CIFAR-10"}.get(dataset, str(dataset))


def _has_data(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(df[column].notna().any())


def chain_length(df: pd.DataFrame) -> pd.Series:
    """Models in each row's chain: the `stages` column if present, else the largest stage
    among the rows of the same dataset and temperature."""
    inferred = df.groupby(["dataset", "temperature"])["stage"].transform("max")
    if CHAIN_LENGTH_COLUMN in df.columns:
        return df[CHAIN_LENGTH_COLUMN].fillna(inferred)
    return inferred


def _three_stage(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of chains of at most three models (teacher, assistant, student), lines by role."""
    rows = df[chain_length(df) <= 3]
    return rows.assign(_line=rows["role"].astype(str))


def _stage_label(stage: int, role: str) -> str:
    return f"stage {stage}" if role.startswith("step-") else f"{role} (stage {stage})"


def _multistep(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of chains of more than three models (paper section VI), lines by stage."""
    rows = df[chain_length(df) > 3]
    labels = [
        _stage_label(int(st), str(r)) for st, r in zip(rows["stage"], rows["role"], strict=True)
    ]
    return rows.assign(_line=labels)


def _prefix_and_statistic(column: str) -> tuple[str, str] | None:
    """("l2_softmax_T", "mean") for "l2_softmax_T_mean"; None for a column of no attack."""
    for prefix in (MASKED_L2_PREFIX, *ATTACKS):  # the masked prefix first: it starts with l2
        if column.startswith(f"{prefix}_"):
            return prefix, column.removeprefix(f"{prefix}_")
    return None


def _counts(df: pd.DataFrame, column: str) -> pd.Series:
    """Images each row's `column` rests on, from the `<attack>_attacked` counts (else NaN).

    Means and maxima rest on the images fooled (attacked x success rate; for a mean with an
    interval, the per-image count), success rates on the images attacked; a budget success
    rate on the images its attack attacked.
    """
    counts = pd.Series(np.nan, index=df.index)
    split = _prefix_and_statistic(column)
    attacked = df.get(f"{split[0]}_attacked") if split else None
    if attacked is not None:
        prefix, statistic = split
        if statistic in ("success_rate", "budget_success_rate"):
            counts = attacked.astype(float)
        elif statistic in ("mean", "max") and f"{prefix}_success_rate" in df.columns:
            counts = (attacked * df[f"{prefix}_success_rate"]).round()
    if f"{column}{_CI_N}" in df.columns:  # the images the interval rests on, where known
        counts = df[f"{column}{_CI_N}"].astype(float).fillna(counts)
    return counts


def _curves(df: pd.DataFrame, column: str) -> list[tuple[str, pd.DataFrame]]:
    """Per line, ordered by stage and skipping empty ones: (label, table by temperature).

    The table holds `value` (the column's mean over the line's rows at that temperature), `n`
    (images it rests on, NaN if unknown) and, when `build_figures` added intervals, `low` and
    `high`. `df` comes from `_three_stage` or `_multistep`, which name the lines.
    """
    if column not in df.columns or df.empty:
        return []
    data = df[["_line", "stage", "temperature", column]].rename(columns={column: "value"})
    data = data.assign(n=_counts(df, column))
    for suffix, name in ((_LOW, "low"), (_HIGH, "high")):
        if f"{column}{suffix}" in df.columns:
            data[name] = df[f"{column}{suffix}"]
    data = data.dropna(subset=["value"])
    order = data.groupby("_line")["stage"].min().sort_values(kind="stable").index
    values = [c for c in ("value", "n", "low", "high") if c in data.columns]
    return [
        (line, data[data["_line"] == line].groupby("temperature")[values].mean().sort_index())
        for line in order
    ]


def _style(label: str, index: int, count: int) -> dict:
    """The paper's role styles; otherwise the teacher red dashed, the student solid and every
    stage its own viridis colour, marker and (between them) line style."""
    if label in ROLE_STYLES:
        return dict(ROLE_STYLES[label])
    if label.startswith("teacher"):
        return dict(ROLE_STYLES["teacher"])
    color = matplotlib.colormaps["viridis"](0.9 * index / max(count - 1, 1))  # not pale yellow
    linestyle = "-" if label.startswith("student") else _LINESTYLES[(index - 1) % len(_LINESTYLES)]
    return {"color": color, "linestyle": linestyle, "marker": _MARKERS[index % len(_MARKERS)]}


def _dodge(
    temperatures: Sequence[float], count: int, spacing: float = _DODGE_DECADES
) -> list[float]:
    """Factors that shift `count` series sideways on a log-T axis, centred on the true T.

    Neighbouring series sit `spacing` decades apart, less when the temperatures are so close
    that the shifted points of one T would reach the next.
    """
    logs = np.log10(sorted(set(temperatures)))
    if len(logs) > 1 and count > 1:
        spacing = min(spacing, float(np.diff(logs).min()) / (2 * count))
    return [10 ** (spacing * (i - (count - 1) / 2)) for i in range(count)]


def _n_text(n: pd.Series) -> str:
    """ "n = 25" or "n = 20-25" for the counts of one series; "" when unknown."""
    n = n.dropna()
    if n.empty:
        return ""
    low, high = int(n.min()), int(n.max())
    return f"n = {low}" if low == high else f"n = {low}–{high}"


def _draw_series(ax, curves, scale: float = 1.0, factors=None, **override) -> None:
    """Draws each (label, table) of `_curves`, dodged, with error bars where it has intervals.

    `factors` shift the series sideways (default: `_dodge` over these curves); `override`
    replaces style entries, e.g. the line style.
    """
    if factors is None:
        factors = _dodge([t for _, curve in curves for t in curve.index], len(curves))
    for index, ((label, curve), factor) in enumerate(zip(curves, factors, strict=True)):
        # Earlier series drawn wider, so that a later one on top of it leaves its edges.
        width = 1.3 + 1.3 * (len(curves) - 1 - index) / max(len(curves) - 1, 1)
        style = {**_style(label, index, len(curves)), "linewidth": width, **override}
        n = _n_text(curve["n"]) if "n" in curve else ""
        style.setdefault("label", f"{label} ({n})" if n else label)
        x, y = curve.index.to_numpy() * factor, curve["value"].to_numpy() * scale
        if "low" in curve and curve["low"].notna().any():
            low, high = curve["low"].to_numpy() * scale, curve["high"].to_numpy() * scale
            yerr = np.nan_to_num(np.clip([y - low, high - y], 0, None))
            ax.errorbar(x, y, yerr=yerr, capsize=2, elinewidth=1, **style)
        else:
            ax.plot(x, y, **style)


def _temperature_axis(ax, temperatures: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(list(temperatures))
    ax.set_xticklabels([f"{t:g}" for t in temperatures])
    ax.minorticks_off()
    ax.set_xlabel("distillation temperature T (log scale)")


def _no_data(ax, title: str) -> None:
    ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(ax, count: int, **kwargs) -> None:
    if count <= 4:
        ax.legend(fontsize="x-small", **kwargs)
    else:  # a long chain: keep the legend clear of the lines
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)


def plot_vs_temperature(
    ax,
    df: pd.DataFrame,
    column: str,
    ylabel: str,
    title: str,
    scale: float = 1.0,
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Draws `column` against the temperature, one line per role (ordered by stage).

    Legends give the images each point rests on when the `<attack>_attacked` counts are there;
    columns `<column>_ci_low` / `_ci_high` (added by `build_figures` from per-image data) are
    drawn as error bars.

    Args:
        ax: the matplotlib axes to draw on.
        df: results rows of one dataset (KEY_COLUMNS and `column`).
        column: the metric to draw.
        ylabel: the y-axis label.
        title: the panel title.
        scale: factor applied to the values (100 for percentages).
        logy: draw the y axis on a log scale.
        ylim: fixed y-axis limits, e.g. for percentages.
    """
    curves = _curves(df, column)
    if not curves:
        _no_data(ax, title)
        return
    _draw_series(ax, curves, scale)
    _temperature_axis(ax, sorted({t for _, curve in curves for t in curve.index}))
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax, len(curves))


def plot_accuracy(ax, df: pd.DataFrame, dataset: str) -> None:
    """Fig. 3: test accuracy (T = 1) against the distillation temperature, per role."""
    rows = _three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: test accuracy"
    plot_vs_temperature(ax, rows, "test_accuracy", "test accuracy at T = 1 (%)", title, 100.0)


def plot_near_zero_gradients(ax, df: pd.DataFrame, dataset: str, of: str = "logits") -> None:
    """Fig. 4: fraction of test images whose mean |input gradient| is below 1e-10."""
    rows = _three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: near-zero gradients\n({SENSITIVITY_NAMES[of]})"
    ylabel = "images with mean |gradient| < 1e-10 (%)"
    column = f"sensitivity_{of}_zero_fraction"
    plot_vs_temperature(ax, rows, column, ylabel, title, 100.0, ylim=_PERCENT_LIMITS)


def plot_mean_sensitivity(ax, df: pd.DataFrame, dataset: str, of: str = "logits") -> None:
    """The mean over test images of the mean |input gradient| (paper V-B), log scale."""
    rows = _three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: mean gradient magnitude\n({SENSITIVITY_NAMES[of]})"
    plot_vs_temperature(
        ax, rows, f"sensitivity_{of}_mean", "mean |gradient| over inputs", title, logy=True
    )


def plot_perturbation(
    ax, df: pd.DataFrame, dataset: str, attack: str, statistic: str = "mean"
) -> None:
    """Fig. 5: mean or max minimal perturbation of an attack over successfully attacked images
    (the mean with its interval when `df` holds `<attack>_mean_ci_low` / `_ci_high`)."""
    rows = _three_stage(df[df["dataset"] == dataset])
    word = "mean (robustness)" if statistic == "mean" else "max"
    title = f"{ATTACK_NAMES[attack]}: {word} perturbation"
    ylabel = f"{statistic} {PERTURBATION_UNITS[attack]}"
    plot_vs_temperature(ax, rows, f"{attack}_{statistic}", ylabel, title)


def plot_success_rate(ax, df: pd.DataFrame, dataset: str, attack: str) -> None:
    """The attack's success rate over the correctly classified images it attacked."""
    rows = _three_stage(df[df["dataset"] == dataset])
    title = f"{ATTACK_NAMES[attack]}: success rate"
    ylabel = "attacked images fooled (%)"
    column = f"{attack}_success_rate"
    plot_vs_temperature(ax, rows, column, ylabel, title, 100.0, ylim=_PERCENT_LIMITS)


def plot_confidence(ax, df: pd.DataFrame, dataset: str) -> None:
    """Fig. 6: confidence of eq. 14 (max T = 1 probability if correct, else 0)."""
    rows = _three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: confidence (eq. 14)"
    plot_vs_temperature(ax, rows, "confidence", "mean confidence", title)


def plot_multistep_accuracy(ax, df: pd.DataFrame, dataset: str) -> None:
    """Fig. 7: test accuracy against temperature, one line per distillation step."""
    rows = _multistep(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: multi-step test accuracy"
    plot_vs_temperature(ax, rows, "test_accuracy", "test accuracy at T = 1 (%)", title, 100.0)


def plot_multistep_robustness(ax, df: pd.DataFrame, dataset: str, attack: str) -> None:
    """Fig. 8 (left): mean minimal perturbation against temperature, per distillation step."""
    rows = _multistep(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}, {ATTACK_NAMES[attack]}: robustness per step"
    plot_vs_temperature(ax, rows, f"{attack}_mean", f"mean {PERTURBATION_UNITS[attack]}", title)


def plot_multistep_average(ax, df: pd.DataFrame, dataset: str, attack: str) -> None:
    """Fig. 8 (right): mean minimal perturbation averaged over temperatures, per step (the
    mean of the left panel's points; their n is in its legend)."""
    title = f"{dataset_label(dataset)}, {ATTACK_NAMES[attack]}: averaged over T"
    curves = _curves(_multistep(df[df["dataset"] == dataset]), f"{attack}_mean")
    if not curves:
        _no_data(ax, title)
        return
    labels = [role for role, _ in curves]
    heights = [curve["value"].mean() for _, curve in curves]
    colors = [_style(role, i, len(curves))["color"] for i, role in enumerate(labels)]
    ax.bar(range(len(labels)), heights, color=colors)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_xlabel("model in the chain")
    ax.set_ylabel(f"mean {PERTURBATION_UNITS[attack]}, averaged over T")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def plot_gradient_masking(ax, df: pd.DataFrame, dataset: str, statistic: str = "mean") -> None:
    """C&W L2 against the logits (solid) and against softmax(logits / T) (dotted), per role.

    A model that looks robust only against the softmax attack masks its gradients: the attack
    on the logits is the real measurement (Carlini & Wagner 2017). Means carry their interval
    when `df` holds the `_ci_low` / `_ci_high` columns.

    Args:
        ax: the matplotlib axes to draw on.
        df: results rows (KEY_COLUMNS, l2_* and l2_softmax_T_* columns).
        dataset: the dataset to draw.
        statistic: "mean", "max" or "success_rate".
    """
    rows = _three_stage(df[df["dataset"] == dataset])
    percent = statistic == "success_rate"
    what = "attacked images fooled" if percent else f"{statistic} $L_2$ perturbation"
    title = f"{dataset_label(dataset)}: C&W $L_2$, {what}"
    targets = {"logits": ("l2", "-"), "softmax(logits / T)": (MASKED_L2_PREFIX, ":")}
    curves = {name: _curves(rows, f"{prefix}_{statistic}") for name, (prefix, _) in targets.items()}
    if not any(curves.values()):
        _no_data(ax, title)
        return
    handles, count = [], sum(len(c) for c in curves.values())
    temperatures = [t for c in curves.values() for _, v in c for t in v.index]
    factors = _dodge(temperatures, count)  # one shift per series of both attacks
    for name, target_curves in curves.items():
        shifts, factors = factors[: len(target_curves)], factors[len(target_curves) :]
        scale = 100.0 if percent else 1.0
        _draw_series(ax, target_curves, scale, shifts, linestyle=targets[name][1])
        for index, (role, curve) in enumerate(target_curves):
            style = {**_style(role, index, len(target_curves)), "linestyle": targets[name][1]}
            n = _n_text(curve["n"])
            label = f"{role}, {name}" + (f" ({n})" if n else "")
            handles.append(Line2D([], [], label=label, **style))
    _temperature_axis(ax, sorted(set(temperatures)))
    ax.legend(handles=handles, fontsize="x-small")
    ax.set_ylabel(f"{what} (%)" if percent else what)
    if percent:
        ax.set_ylim(*_PERCENT_LIMITS)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def plot_budget_success(ax, df: pd.DataFrame, dataset: str, norm: str = "l2") -> None:
    """Papernot et al.'s measure: attacks that succeed within a fixed perturbation budget."""
    rows = _three_stage(df[df["dataset"] == dataset])
    budgets = rows[f"{norm}_budget"].dropna().unique() if f"{norm}_budget" in rows else []
    bound = f"{budgets[0]:g}" if len(budgets) == 1 else "budget"
    symbol = PERTURBATION_UNITS[norm].split()[0]
    title = f"{dataset_label(dataset)}: {ATTACK_NAMES[norm]}, fooled within {symbol} ≤ {bound}"
    ylabel = "attacked images fooled within budget (%)"
    column = f"{norm}_budget_success_rate"
    plot_vs_temperature(ax, rows, column, ylabel, title, 100.0, ylim=_PERCENT_LIMITS)


def plot_paired_differences(ax, differences: pd.DataFrame, dataset: str, attack: str) -> None:
    """Draws the paired differences of one attack against T, with intervals, zero line and n.

    Args:
        ax: the matplotlib axes to draw on.
        differences: the table of `paired_differences`.
        dataset: the dataset to draw.
        attack: the attack to draw (a value of its `attack` column).
    """
    rows = differences[(differences["dataset"] == dataset) & (differences["attack"] == attack)]
    title = f"{dataset_label(dataset)}, {ATTACK_NAMES.get(attack, attack)}: paired differences"
    rows = rows[rows["n"] > 0]
    if rows.empty:
        _no_data(ax, title)
        return
    factors = _dodge(rows["temperature"], len(PAIRS), 2 * _DODGE_DECADES)  # wide error bars
    for (later, earlier), style, factor in zip(PAIRS, _PAIR_STYLES, factors, strict=True):
        pair = rows[rows["comparison"] == f"{later} - {earlier}"].sort_values("temperature")
        if pair.empty:
            continue
        x, y = pair["temperature"].to_numpy() * factor, pair["estimate"].to_numpy()
        yerr = np.nan_to_num(np.clip([y - pair["low"], pair["high"] - y], 0, None))
        ax.errorbar(x, y, yerr=yerr, capsize=3, label=f"{later} − {earlier}", **style)
        above = later == PAIRS[0][0]  # the first pair's n above its bars, the second's below
        bound = pair["high" if above else "low"].to_numpy()
        ends = np.where(np.isnan(bound), y, bound)
        for xi, yi, n in zip(x, ends, pair["n"], strict=True):
            ax.annotate(
                f"n={int(n)}",
                (xi, yi),
                xytext=(0, 3 if above else -3),
                textcoords="offset points",
                ha="center",
                va="bottom" if above else "top",
                fontsize=6,
                color=style["color"],
            )
    ax.axhline(0.0, color="black", linewidth=0.8)
    _temperature_axis(ax, sorted(set(rows["temperature"])))
    ax.margins(y=0.15)
    ax.set_ylabel(f"paired difference in {PERTURBATION_UNITS.get(attack, 'distance')}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")


def _as_bool(column: pd.Series) -> pd.Series:
    if column.dtype == bool:
        return column
    if pd.api.types.is_numeric_dtype(column):
        return column.fillna(0).astype(bool)
    return column.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def check_per_image(df: pd.DataFrame) -> None:
    """Checks that a per-image table has the columns figures read (`PER_IMAGE_REQUIRED`).

    Raises:
        ValueError: naming the missing columns.
    """
    missing = [c for c in PER_IMAGE_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"per-image data lack the columns {missing}: expected {list(PER_IMAGE_REQUIRED)} "
            f"(keras_takd.takd.schema.PER_IMAGE_COLUMNS; found {list(df.columns)[:8]})"
        )


def _fooled(per_image: pd.DataFrame) -> pd.DataFrame:
    """The rows of images the model classified correctly and the attack fooled, with a
    finite distance, plus `_stages` (the chain's length)."""
    check_per_image(per_image)
    rows = per_image.assign(_stages=chain_length(per_image))
    keep = _as_bool(rows["correct"]) & _as_bool(rows["success"])
    distance = pd.to_numeric(rows["distance"], errors="coerce")
    return rows[keep & np.isfinite(distance)].assign(distance=distance)


def perturbation_intervals(
    per_image: pd.DataFrame, confidence: float = statistics.DEFAULT_CONFIDENCE
) -> pd.DataFrame:
    """The mean minimal perturbation of each model and attack, with its interval.

    Args:
        per_image: the per-image table (`PER_IMAGE_REQUIRED` columns).
        confidence: the intervals' level.

    Returns:
        One row per (dataset, chain length, temperature, stage, attack) with images fooled:
        columns dataset, stages, temperature, stage, attack, estimate, low, high, n (images
        fooled), from `keras_takd.core.statistics.mean_interval` over their distances.
    """
    keys = ["dataset", "_stages", "temperature", "stage", "attack"]
    records = []
    for key, group in _fooled(per_image).groupby(keys, sort=True):
        estimate = statistics.mean_interval(group["distance"].to_numpy(), confidence)
        records.append(
            dict(zip(keys, key, strict=True))
            | {"estimate": estimate.estimate, "low": estimate.low, "high": estimate.high}
            | {"n": estimate.n}
        )
    columns = [*keys, "estimate", "low", "high", "n"]
    return pd.DataFrame(records, columns=columns).rename(columns={"_stages": CHAIN_LENGTH_COLUMN})


def _with_intervals(results: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """`results` plus `<attack>_mean_ci_low`, `_ci_high`, `_ci_n` from `perturbation_intervals`."""
    keys = ["dataset", CHAIN_LENGTH_COLUMN, "temperature", "stage"]
    left = pd.DataFrame(
        {
            "dataset": results["dataset"].astype(str).to_numpy(),
            CHAIN_LENGTH_COLUMN: chain_length(results).astype(float).to_numpy(),
            "temperature": results["temperature"].astype(float).to_numpy(),
            "stage": results["stage"].astype(float).to_numpy(),
        }
    )
    right = intervals.astype({"dataset": str, CHAIN_LENGTH_COLUMN: float, "stage": float})
    right = right.astype({"temperature": float})
    out = results.copy()
    for attack, group in right.groupby("attack"):
        column = f"{attack}_mean"
        merged = left.merge(group.drop(columns="attack"), how="left", on=keys)
        out[f"{column}{_LOW}"] = merged["low"].to_numpy()
        out[f"{column}{_HIGH}"] = merged["high"].to_numpy()
        out[f"{column}{_CI_N}"] = merged["n"].to_numpy()
        if column in out.columns:
            _warn_if_means_differ(column, out[column].to_numpy(), merged["estimate"].to_numpy())
    return out


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


def _pairs(per_image: pd.DataFrame):
    """Per (dataset, chain, T, attack) and `PAIRS` entry: the distances of both models on the
    images both fooled, in image order (three-model chains and the C&W attacks only)."""
    fooled = _fooled(per_image)
    fooled = fooled[(fooled["_stages"] <= 3) & fooled["attack"].isin(ATTACKS)]
    keys = ["dataset", "_stages", "temperature", "attack"]
    for key, group in fooled.groupby(keys, sort=True):
        by_role = {
            role: rows.groupby("image")["distance"].mean() for role, rows in group.groupby("role")
        }
        for later, earlier in PAIRS:
            if later in by_role and earlier in by_role:
                a, b = by_role[later].align(by_role[earlier], join="inner")
                yield dict(zip(keys, key, strict=True)), later, earlier, a.to_numpy(), b.to_numpy()


def paired_differences(
    per_image: pd.DataFrame, confidence: float = statistics.DEFAULT_CONFIDENCE
) -> pd.DataFrame:
    """Paired differences in minimal perturbation between neighbours of three-model chains.

    For each dataset, T and C&W attack, student - assistant and assistant - teacher over the
    images both models classify correctly and both attacks fool
    (`keras_takd.core.statistics.paired_difference`): above 0, the later model needs larger
    perturbations on the same images.

    Args:
        per_image: the per-image table (`PER_IMAGE_REQUIRED` columns).
        confidence: the intervals' level.

    Returns:
        Columns dataset, stages, temperature, attack, comparison ("student - assistant" ...),
        estimate, low, high, n (image pairs), p_value (Wilcoxon signed-rank).
    """
    records = []
    for key, later, earlier, a, b in _pairs(per_image):
        estimate = statistics.paired_difference(a, b, confidence)
        records.append(
            key
            | {"comparison": f"{later} - {earlier}", "estimate": estimate.estimate}
            | {"low": estimate.low, "high": estimate.high, "n": estimate.n}
            | {"p_value": estimate.p_value}
        )
    columns = ["dataset", "_stages", "temperature", "attack", "comparison", "estimate"]
    columns += ["low", "high", "n", "p_value"]
    return pd.DataFrame(records, columns=columns).rename(columns={"_stages": CHAIN_LENGTH_COLUMN})


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


def _fig_robustness(df, dataset):
    title = (
        f"Fig. 5 ({dataset_label(dataset)}): minimal perturbation over successful attacks; "
        "teacher dashed"
    )
    fig, axes = _grid(3, len(ATTACKS), title)
    for j, attack in enumerate(ATTACKS):
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
    fig, axes = _grid(len(ATTACKS), 2, title, width=5.6, height=4.0)
    for i, attack in enumerate(ATTACKS):
        plot_multistep_robustness(axes[i, 0], df, dataset, attack)
        plot_multistep_average(axes[i, 1], df, dataset, attack)
    return fig


def _fig_gradient_masking(df, datasets):
    title = (
        "Gradient masking check: C&W $L_2$ against the logits (solid) and against "
        "softmax(logits / T) at the training temperature (dotted)"
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


def _robustness_columns(prefixes: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{p}_{s}" for p in prefixes for s in ("mean", "max", "success_rate"))


_ATTACK_NOTES = (_ATTACK_NOTE, _DODGE_NOTE)
_TEST_SET_NOTES = (_TEST_SET_NOTE, _DODGE_NOTE)
_BUDGET_NOTES = ("n in the legends: images attacked per point.", _DODGE_NOTE)

# name -> (rows it draws, columns any of which must hold data, builder, one figure per
# dataset, notes under it)
FIGURES: dict[str, tuple[Callable, tuple[str, ...], Callable, bool, tuple[str, ...]]] = {
    "fig3_accuracy": (_three_stage, ("test_accuracy",), _fig_accuracy, False, _TEST_SET_NOTES),
    "fig4_sensitivity": (
        _three_stage,
        tuple(
            f"sensitivity_{of}_{s}" for of in SENSITIVITY_NAMES for s in ("zero_fraction", "mean")
        ),
        _fig_sensitivity,
        False,
        _TEST_SET_NOTES,
    ),
    "fig5_robustness": (
        _three_stage,
        _robustness_columns(ATTACKS),
        _fig_robustness,
        True,
        _ATTACK_NOTES,
    ),
    "fig6_confidence": (_three_stage, ("confidence",), _fig_confidence, False, _TEST_SET_NOTES),
    "fig7_multistep_accuracy": (
        _multistep,
        ("test_accuracy",),
        _fig_multistep_accuracy,
        False,
        _TEST_SET_NOTES,
    ),
    "fig8_multistep_robustness": (
        _multistep,
        tuple(f"{a}_mean" for a in ATTACKS),
        _fig_multistep_robustness,
        True,
        _ATTACK_NOTES,
    ),
    "gradient_masking": (
        _three_stage,
        _robustness_columns([MASKED_L2_PREFIX]),
        _fig_gradient_masking,
        False,
        _ATTACK_NOTES,
    ),
    "budget_success": (
        _three_stage,
        ("l2_budget_success_rate", "linf_budget_success_rate"),
        _fig_budget_success,
        False,
        _BUDGET_NOTES,
    ),
}
"""Every figure of the results table; a per-dataset figure is named `<name>_<dataset>`."""

PAIRED_FIGURE = "paired_differences"
"""The figure drawn from per-image data alone (`paired_differences`)."""

# The figures whose means carry intervals when per-image data are given.
_WITH_INTERVALS = ("fig5_robustness", "fig8_multistep_robustness", "gradient_masking")


def _datasets(df: pd.DataFrame) -> list[str]:
    known = [d for d in ("mnist", "cifar10") if d in set(df["dataset"])]
    return known + sorted(set(map(str, df["dataset"])) - set(known))


def _plan(df: pd.DataFrame) -> tuple[list[tuple[str, str, object]], dict[str, str]]:
    """The figures the data allow, as (name, file stem, argument), and why others are not."""
    planned, skipped = [], {}
    for name, (select, columns, _, per_dataset, _) in FIGURES.items():
        groups = [(d, df[df["dataset"] == d]) for d in _datasets(df)]
        usable = [d for d, rows in groups if any(_has_data(select(rows), c) for c in columns)]
        if not usable:
            skipped[name] = f"no data in columns {', '.join(columns)}"
        elif per_dataset:
            planned += [(name, f"{name}_{d}", d) for d in usable]
        else:
            planned.append((name, name, usable))
    return planned, skipped


def _paired_skip_reason(per_image: pd.DataFrame | None) -> str | None:
    if per_image is None:
        return "no per-image data (per_image.csv beside results.csv, or --per_image)"
    if not any(len(a) for *_, a, _ in _pairs(per_image)):
        return (
            "the per-image data hold no image that neighbouring models of a three-model chain "
            "both classify correctly and the attack fools under both"
        )
    return None


def check_results(df: pd.DataFrame) -> None:
    """Checks that a results table has the key columns and at least one row.

    Raises:
        ValueError: naming the missing key columns, or saying the table is empty.
    """
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"results lack the key columns {missing}: expected {list(_REQUIRED)} "
            f"(found {list(df.columns)[:8]})"
        )
    if df.empty:
        raise ValueError("results hold no rows")


def _read_csv(path: pathlib.Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} not found")
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        reason = " ".join(str(error).split())
        raise ValueError(f"{path} is not a readable CSV ({reason})") from None


def _numeric_keys(df: pd.DataFrame, path: pathlib.Path, columns: Sequence[str]) -> pd.DataFrame:
    try:
        for column in columns:
            df[column] = pd.to_numeric(df[column], errors="raise")
    except ValueError as error:
        raise ValueError(f"{path}: {' '.join(str(error).split())}") from None
    if CHAIN_LENGTH_COLUMN not in df.columns:  # chains of one file do not mix with another's
        df[CHAIN_LENGTH_COLUMN] = chain_length(df)
    return df


def _read_one(path: pathlib.Path) -> pd.DataFrame:
    df = _read_csv(path, "results")
    try:
        check_results(df)
    except ValueError as error:
        raise ValueError(f"{path}: {' '.join(str(error).split())}") from None
    return _numeric_keys(df, path, ("temperature", "stage"))


def _as_paths(paths, what: str) -> list[pathlib.Path]:
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    if not paths:
        raise ValueError(f"no {what} file given")
    return [pathlib.Path(p) for p in paths]


def read_results(paths: str | pathlib.Path | Sequence[str | pathlib.Path]) -> pd.DataFrame:
    """Reads and checks one or more results CSVs (see `check_results`) into one table.

    Files without a `stages` column get one, inferred within each file, so that e.g. a
    three-stage temperature sweep and a seven-stage chain written to separate CSVs stay apart.

    Args:
        paths: a CSV path or a sequence of them.

    Raises:
        FileNotFoundError: if a path is not a file.
        ValueError: if a file is not a CSV with the key columns, numeric temperature and
            stage, and at least one row.
    """
    return pd.concat([_read_one(p) for p in _as_paths(paths, "results")], ignore_index=True)


def _read_per_image_one(path: pathlib.Path) -> pd.DataFrame:
    df = _read_csv(path, "per-image")
    try:
        check_per_image(df)
    except ValueError as error:
        raise ValueError(f"{path}: {' '.join(str(error).split())}") from None
    return _numeric_keys(df, path, ("temperature", "stage", "image"))


def read_per_image(paths: str | pathlib.Path | Sequence[str | pathlib.Path]) -> pd.DataFrame:
    """Reads and checks one or more per-image CSVs (`schema.PER_IMAGE_COLUMNS`) into one table.

    Files without a `stages` column get one, inferred within each file (as `read_results`).

    Args:
        paths: a CSV path or a sequence of them.

    Raises:
        FileNotFoundError: if a path is not a file.
        ValueError: if a file is not a CSV with the columns of `PER_IMAGE_REQUIRED` and
            numeric temperature, stage and image.
    """
    return pd.concat(
        [_read_per_image_one(p) for p in _as_paths(paths, "per-image")], ignore_index=True
    )


def skipped_figures(
    results_df: pd.DataFrame, per_image: pd.DataFrame | None = None
) -> dict[str, str]:
    """The figures `draw_all` would skip for these data, each with the reason."""
    check_results(results_df)
    skipped = _plan(results_df)[1]
    reason = _paired_skip_reason(per_image)
    return skipped | ({PAIRED_FIGURE: reason} if reason else {})


def _confidence_text(confidence: float) -> str:
    return f"{100 * confidence:g}%"


def build_figures(
    results_df: pd.DataFrame,
    caption: str | None = None,
    per_image: pd.DataFrame | None = None,
    confidence: float = statistics.DEFAULT_CONFIDENCE,
) -> dict[str, Figure]:
    """Every figure the data allow, by file stem (see `draw_all`), not yet saved.

    Raises:
        ValueError: if `results_df` lacks a key column or has no rows, `per_image` lacks a
            column of `PER_IMAGE_REQUIRED`, or `confidence` is not in (0, 1).
    """
    check_results(results_df)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    df = results_df
    if per_image is not None:
        df = _with_intervals(results_df, perturbation_intervals(per_image, confidence))
    level = _confidence_text(confidence)
    ci_note = (
        f"Error bars on the means: {level} BCa bootstrap intervals over the images fooled."
        if per_image is not None
        else "Means drawn without intervals (no per-image data)."
    )
    figures = {}
    for name, stem, argument in _plan(df)[0]:
        fig = FIGURES[name][2](df, argument)
        notes = [*FIGURES[name][4], ci_note if name in _WITH_INTERVALS else ""]
        if name == "fig8_multistep_robustness" and per_image is not None:
            notes.append("The averages over T (right) carry no interval; see those per T (left).")
        notes.append(caption or "")
        _footnote(fig, notes)
        figures[stem] = fig
    if _paired_skip_reason(per_image) is None:
        fig = _fig_paired_differences(paired_differences(per_image, confidence))
        note = (
            f"Error bars: {level} BCa bootstrap intervals of the mean paired difference; "
            "n = image pairs per point."
        )
        _footnote(fig, [note, _DODGE_NOTE, caption or ""])
        figures[PAIRED_FIGURE] = fig
    return figures


def draw_all(
    results_df: pd.DataFrame,
    out_dir: str | pathlib.Path,
    caption: str | None = None,
    per_image: pd.DataFrame | None = None,
    confidence: float = statistics.DEFAULT_CONFIDENCE,
) -> list[pathlib.Path]:
    """Writes every figure the data allow into `out_dir`, as PNG and PDF.

    Figures whose columns are absent or empty are skipped and logged (see `skipped_figures`);
    so is `paired_differences` without per-image data.

    Args:
        results_df: the results table (KEY_COLUMNS plus any of `schema.METRIC_COLUMNS`).
        out_dir: the folder to write to (created if needed).
        caption: optional note printed under every figure, e.g. the settings of the run.
        per_image: optional per-image table (`schema.PER_IMAGE_COLUMNS`) of the same models:
            the mean perturbations get their intervals, and `paired_differences` is drawn.
        confidence: the intervals' level.

    Returns:
        The paths written, in `FIGURES` order then `paired_differences`, PNG before PDF.

    Raises:
        ValueError: if `results_df` lacks a key column or has no rows, `per_image` lacks a
            column, or `confidence` is not in (0, 1).
    """
    figures = build_figures(results_df, caption, per_image, confidence)
    for name, reason in skipped_figures(results_df, per_image).items():
        _LOG.warning("skipping figure %s: %s", name, reason)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, fig in figures.items():
        for fmt in FORMATS:
            written.append(files.save_figure_atomic(fig, out_dir / f"{stem}.{fmt}", dpi=150))
    return written
