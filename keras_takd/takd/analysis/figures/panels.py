"""The panels of Mandal & Guo's figures: one `plot_*` function per panel, drawing on an `ax`.

Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant", Figs. 3-8: accuracy,
near-zero gradients, mean and max minimal perturbation, confidence and the multi-step chain,
each against the distillation temperature T; plus two checks the paper lacks: the C&W L2
attack against the logits beside the same attack against softmax(logits / T) (the gradient
masking of Carlini & Wagner, arXiv:1608.04644) and Papernot et al.'s success rate at a fixed
budget (arXiv:1511.04508), the paired differences of `analysis.statistics` and, over several
independently trained chains (issue 25), the seed-level differences of `analysis.replicates`.

Rows are split by the length of their chain (`tables.chain_length`). Chains of at most three
models (teacher, assistant, student) are drawn one line per `role` (`three_stage`); longer
chains (section VI, Figs. 7-8) one line per `stage` (`multistep`). Rows of several seeds (issue
25) carry `<column>_over_seeds`, each model's mean over seeds (added by `figures.catalog`): the
point is that mean, its error bar the interval over seeds, and each seed's own value a small
faint dot beside it; other repeated rows of one model are averaged. Every series has its own
marker and line style and is shifted sideways by a few percent of T, so that equal values do
not hide each other; a grey band around each real temperature holds its shifted points, x ticks
sit only at the real temperatures and the axis spans at least one decade, so that the shift
never reads as other temperatures (even in a run at one T). Legends say how many images a point
rests on. Columns `<column>_ci_low` / `_ci_high` / `_ci_n` (added by `figures.catalog`) are
drawn as error bars. A panel without points says why: "not measured" where the column is
absent, "0 of n fooled" where the attack ran and fooled no image. Drawing only: every number
comes from the results table, `keras_takd.takd.analysis.statistics`,
`keras_takd.takd.analysis.replicates` or `keras_takd.core.statistics`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from keras_takd.takd.analysis.statistics import PAIRS, SEED_COLUMN
from keras_takd.takd.analysis.tables import chain_length, dataset_label
from keras_takd.takd.schema import ATTACKS, FMN_ATTACKS, MASKED_L2_PREFIX

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
_BAND_MARGIN_DECADES = 0.02  # the band around a temperature reaches this far past its points
_MIN_AXIS_DECADES = 1.0  # the narrowest temperature axis, so that one T is not spread wide
ACCURACY_MIN_SPAN = 10.0
"""The narrowest y axis of Fig. 3, in percentage points, so that a small gap looks small."""
_TEST_SET_COLUMNS = ("test_accuracy", "confidence")  # plus sensitivity_*: on metric_images
ATTACK_NAMES = {
    "l0": "C&W $L_0$",
    "l2": "C&W $L_2$",
    "linf": r"C&W $L_\infty$",
    "fmn_l0": "FMN $L_0$",
    "fmn_l2": "FMN $L_2$",
    "fmn_linf": r"FMN $L_\infty$",
}
PERTURBATION_UNITS = {
    "l0": "pixels changed",
    "l2": "$L_2$ distance",
    "linf": r"$L_\infty$ distance",
    "fmn_l0": "pixels changed",
    "fmn_l2": "$L_2$ distance",
    "fmn_linf": r"$L_\infty$ distance",
}
SENSITIVITY_NAMES = {
    "logits": "gradient of the sum of logits",
    "softmax": "gradient of P(predicted class), T = 1",
}
_MASKED_STYLE = {"linestyle": ":", "markerfacecolor": "none"}
"""The softmax attack of `plot_gradient_masking`: dotted with hollow markers."""
_PAIR_STYLES = (
    {"color": "tab:blue", "linestyle": "-", "marker": "^"},
    {"color": "tab:orange", "linestyle": "-.", "marker": "s"},
)
_PERCENT_LIMITS = (-3.0, 103.0)
_SEED_LEVEL_OFFSET = 0.22  # the seeds' dots left of a T's mean, its bootstrap bar right of it
_SEED_LEVEL_SPREAD = 0.08  # the seeds' dots spread sideways by at most this, apart
CI_LOW, CI_HIGH, CI_N = "_ci_low", "_ci_high", "_ci_n"
"""Suffixes of the interval columns `figures.catalog` adds beside `<attack>_mean`."""
OVER_SEEDS = "_over_seeds"
"""Suffix of the column `figures.catalog` adds beside a drawn column of results of several
seeds: each model's mean over its seeds (its `_ci_low` / `_ci_high` then span the seeds)."""
_SEED_DOT = {"linestyle": "none", "markersize": 3, "alpha": 0.35, "label": "_each seed"}
"""Each seed's own value: small faint points of the series' colour and marker, no legend."""


def has_data(df: pd.DataFrame, column: str) -> bool:
    """Whether `df` has `column` with at least one value."""
    return column in df.columns and bool(df[column].notna().any())


def three_stage(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of chains of at most three models (teacher, assistant, student), lines by role."""
    rows = df[chain_length(df) <= 3]
    return rows.assign(_line=rows["role"].astype(str))


def _stage_label(stage: int, role: str) -> str:
    return f"stage {stage}" if role.startswith("step-") else f"{role} (stage {stage})"


def multistep(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of chains of more than three models (paper section VI), lines by stage."""
    rows = df[chain_length(df) > 3]
    labels = [
        _stage_label(int(st), str(r)) for st, r in zip(rows["stage"], rows["role"], strict=True)
    ]
    return rows.assign(_line=labels)


def _prefix_and_statistic(column: str) -> tuple[str, str] | None:
    """("l2_softmax_T", "mean") for "l2_softmax_T_mean"; None for a column of no attack."""
    for prefix in (MASKED_L2_PREFIX, *ATTACKS, *FMN_ATTACKS):  # masked first: it starts l2_
        if column.startswith(f"{prefix}_"):
            return prefix, column.removeprefix(f"{prefix}_")
    return None


def _counts(df: pd.DataFrame, column: str) -> pd.Series:
    """Images each row's `column` rests on, from the `<attack>_attacked` counts (else NaN).

    Means and maxima rest on the images fooled (attacked x success rate; for a mean with an
    interval, the per-image count), success rates on the images attacked; a budget success
    rate on the images its attack attacked; accuracy, sensitivities and confidence on
    `metric_images`.
    """
    counts = pd.Series(np.nan, index=df.index)
    if _is_test_set_column(column) and "metric_images" in df.columns:
        counts = df["metric_images"].astype(float)
    split = _prefix_and_statistic(column)
    attacked = df.get(f"{split[0]}_attacked") if split else None
    if attacked is not None:
        prefix, statistic = split
        if statistic in ("success_rate", "budget_success_rate"):
            counts = attacked.astype(float)
        elif statistic in ("mean", "max") and f"{prefix}_success_rate" in df.columns:
            counts = (attacked * df[f"{prefix}_success_rate"]).round()
    if f"{column}{CI_N}" in df.columns:  # the images the interval rests on, where known
        counts = df[f"{column}{CI_N}"].astype(float).fillna(counts)
    return counts


def _is_test_set_column(column: str) -> bool:
    return column in _TEST_SET_COLUMNS or column.startswith("sensitivity_")


def _curves(df: pd.DataFrame, column: str) -> list[tuple[str, pd.DataFrame]]:
    """Per line, ordered by stage and skipping empty ones: (label, table by temperature).

    The table holds `value` (the column's mean over the line's rows at that temperature), `n`
    (images it rests on, NaN if unknown) and, when `figures.catalog` added intervals, `low` and
    `high`. With `<column>_over_seeds` (results of several seeds), `value` is that mean over
    seeds, `n` and `n_max` the fewest and most images of a seed's model, and `seeds` each
    seed's own value (a list). `df` comes from `three_stage` or `multistep`, which name the
    lines.
    """
    if column not in df.columns or df.empty:
        return []
    data = df[["_line", "stage", "temperature", column]].rename(columns={column: "value"})
    data = data.assign(n=_counts(df, column))
    for suffix, name in ((CI_LOW, "low"), (CI_HIGH, "high"), (OVER_SEEDS, "over_seeds")):
        if f"{column}{suffix}" in df.columns:
            data[name] = df[f"{column}{suffix}"]
    data = data.dropna(subset=["value"])
    order = data.groupby("_line")["stage"].min().sort_values(kind="stable").index
    return [(line, _by_temperature(data[data["_line"] == line])) for line in order]


def _by_temperature(rows: pd.DataFrame) -> pd.DataFrame:
    """One line's rows of `_curves` as its table by temperature."""
    grouped = rows.groupby("temperature")
    if "over_seeds" not in rows.columns:
        values = [c for c in ("value", "n", "low", "high") if c in rows.columns]
        return grouped[values].mean().sort_index()
    bounds = [c for c in ("low", "high") if c in rows.columns]
    curve = grouped[["over_seeds", *bounds]].first().rename(columns={"over_seeds": "value"})
    curve = curve.assign(n=grouped["n"].min(), n_max=grouped["n"].max())
    return curve.assign(seeds=grouped["value"].agg(list)).sort_index()


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


def _band(factors: Sequence[float]) -> float:
    """Half-width in decades of the band around each temperature that holds its shifted points."""
    return float(np.abs(np.log10(factors)).max()) + _BAND_MARGIN_DECADES


def _n_text(n: pd.Series) -> str:
    """ "n = 25" or "n = 20-25" for the counts of one series; "" when unknown."""
    n = n.dropna()
    if n.empty:
        return ""
    low, high = int(n.min()), int(n.max())
    return f"n = {low}" if low == high else f"n = {low}–{high}"


def _curve_label(label: str, curve: pd.DataFrame) -> str:
    """`label` with the images a point rests on ("teacher (n = 25)") and, for a curve of
    several seeds, how many seeds ("teacher (4 seeds, n = 99–100 each)")."""
    if "seeds" not in curve:
        n = _n_text(curve["n"]) if "n" in curve else ""
        return f"{label} ({n})" if n else label
    seeds = count_text(curve["seeds"].map(len), "seeds")
    n = _n_text(pd.concat([curve["n"], curve["n_max"]]))
    return f"{label} ({seeds}, {n} each)" if n else f"{label} ({seeds})"


def _draw_seeds(ax, curve: pd.DataFrame, factor: float, scale: float, style: dict) -> None:
    """Each seed's own value of a curve of several seeds, at its point's shifted temperature."""
    x = [t * factor for t, values in curve["seeds"].items() for _ in values]
    y = [v * scale for values in curve["seeds"] for v in values]
    ax.plot(x, y, marker=style["marker"], color=style["color"], **_SEED_DOT)


def _draw_series(ax, curves, scale: float = 1.0, factors=None, **override) -> list[float]:
    """Draws each (label, table) of `_curves`, dodged, with error bars where it has intervals.

    `factors` shift the series sideways (default: `_dodge` over these curves); `override`
    replaces style entries, e.g. the line style. Returns the factors used.
    """
    if factors is None:
        factors = _dodge([t for _, curve in curves for t in curve.index], len(curves))
    for index, ((label, curve), factor) in enumerate(zip(curves, factors, strict=True)):
        # Earlier series drawn wider, so that a later one on top of it leaves its edges.
        width = 1.3 + 1.3 * (len(curves) - 1 - index) / max(len(curves) - 1, 1)
        style = {**_style(label, index, len(curves)), "linewidth": width, **override}
        style.setdefault("label", _curve_label(label, curve))
        if "seeds" in curve:
            _draw_seeds(ax, curve, factor, scale, style)
        x, y = curve.index.to_numpy() * factor, curve["value"].to_numpy() * scale
        if "low" in curve and curve["low"].notna().any():
            yerr = _yerr(y, curve["low"].to_numpy() * scale, curve["high"].to_numpy() * scale)
            ax.errorbar(x, y, yerr=yerr, capsize=2, elinewidth=1, **style)
        else:
            ax.plot(x, y, **style)
    return list(factors)


def _yerr(y, low, high) -> np.ndarray:
    """Error-bar lengths below and above `y` for an interval [low, high]; 0 where none."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    return np.nan_to_num(np.clip([y - low, high - y], 0, None))


def _temperature_axis(ax, temperatures: Sequence[float], factors: Sequence[float]) -> None:
    """A log-T axis ticked only at the real `temperatures`, each in a grey band that holds the
    points `factors` shifted sideways, at least `_MIN_AXIS_DECADES` wide."""
    band = _band(factors)
    ax.set_xscale("log")
    for t in temperatures:
        ax.axvspan(t * 10**-band, t * 10**band, color="0.9", linewidth=0, zorder=0)
    logs = np.log10(temperatures)
    centre = (logs.min() + logs.max()) / 2
    half = max((logs.max() - logs.min()) / 2 + band + 0.1, _MIN_AXIS_DECADES / 2)
    ax.set_xlim(10 ** (centre - half), 10 ** (centre + half))
    ax.set_xticks(list(temperatures))
    ax.set_xticklabels([f"{t:g}" for t in temperatures])
    ax.minorticks_off()
    ax.set_xlabel("distillation temperature T (log scale)")


def _empty_text(df: pd.DataFrame, column: str) -> str:
    """Why a panel of `column` has no point: "not measured" only where the column is absent;
    "0 of n fooled" where the attack ran and fooled no image (a mean or max of nothing)."""
    if column not in df.columns:
        return "not measured"
    split = _prefix_and_statistic(column)
    rate = df.get(f"{split[0]}_success_rate") if split else None
    if split and split[1] in ("mean", "max") and rate is not None and rate.notna().any():
        if (rate.dropna() == 0).all():
            attacked = df.get(f"{split[0]}_attacked")
            n = _n_text(attacked[rate.notna()]) if attacked is not None else ""
            images = n.removeprefix("n = ") if n else "the attacked"
            return f"0 of {images} fooled\n(images attacked per model)"
    return "no values in the results"


def _no_data(ax, title: str, text: str = "not measured") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(ax, count: int, **kwargs) -> None:
    if count <= 4:
        ax.legend(fontsize="x-small", **kwargs)
    else:  # a long chain: keep the legend clear of the lines
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)


NONPOSITIVE_NOTE = "a bar that reaches the lower edge: its interval reaches 0 or below"
"""Said on a log-scale panel where an interval (over a few seeds) reaches 0 or below: its bar
runs to the lower edge, where a log axis ends."""


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
    columns `<column>_ci_low` / `_ci_high` (added by `figures.catalog` from per-image data) are
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
        _no_data(ax, title, _empty_text(df, column))
        return
    factors = _draw_series(ax, curves, scale)
    _temperature_axis(ax, sorted({t for _, curve in curves for t in curve.index}), factors)
    if logy:
        ax.set_yscale("log")
        if any("low" in curve and (curve["low"] <= 0).any() for _, curve in curves):
            ax.set_xlabel(f"{ax.get_xlabel()}\n({NONPOSITIVE_NOTE})")  # below the data
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax, len(curves))


def plot_accuracy(ax, df: pd.DataFrame, dataset: str) -> None:
    """Fig. 3: test accuracy (T = 1) against the distillation temperature, per role.

    The y axis spans at least `ACCURACY_MIN_SPAN` percentage points (within 0-100), error bars
    included, so that a gap of half a point does not fill the panel.
    """
    rows = three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: test accuracy"
    plot_vs_temperature(ax, rows, "test_accuracy", "test accuracy at T = 1 (%)", title, 100.0)
    if has_data(rows, "test_accuracy"):
        _widen(ax, ACCURACY_MIN_SPAN, (0.0, 100.0))


def _widen(ax, span: float, bounds: tuple[float, float]) -> None:
    """Widens the y axis about its centre to at least `span`, kept within `bounds`."""
    low, high = ax.get_ylim()
    if high - low >= span:
        return
    centre = min(max((low + high) / 2, bounds[0] + span / 2), bounds[1] - span / 2)
    ax.set_ylim(centre - span / 2, centre + span / 2)


def plot_near_zero_gradients(ax, df: pd.DataFrame, dataset: str, of: str = "logits") -> None:
    """Fig. 4: fraction of test images whose mean |input gradient| is below 1e-10."""
    rows = three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: near-zero gradients\n({SENSITIVITY_NAMES[of]})"
    ylabel = "images with mean |gradient| < 1e-10 (%)"
    column = f"sensitivity_{of}_zero_fraction"
    plot_vs_temperature(ax, rows, column, ylabel, title, 100.0, ylim=_PERCENT_LIMITS)


def plot_mean_sensitivity(ax, df: pd.DataFrame, dataset: str, of: str = "logits") -> None:
    """The mean over test images of the mean |input gradient| (paper V-B), log scale."""
    rows = three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: mean gradient magnitude\n({SENSITIVITY_NAMES[of]})"
    plot_vs_temperature(
        ax, rows, f"sensitivity_{of}_mean", "mean |gradient| over inputs", title, logy=True
    )


def plot_perturbation(
    ax, df: pd.DataFrame, dataset: str, attack: str, statistic: str = "mean"
) -> None:
    """Fig. 5: mean or max minimal perturbation of an attack over successfully attacked images
    (the mean with its interval when `df` holds `<attack>_mean_ci_low` / `_ci_high`)."""
    rows = three_stage(df[df["dataset"] == dataset])
    word = "mean (robustness)" if statistic == "mean" else "max"
    title = f"{ATTACK_NAMES[attack]}: {word} perturbation"
    ylabel = f"{statistic} {PERTURBATION_UNITS[attack]}"
    plot_vs_temperature(ax, rows, f"{attack}_{statistic}", ylabel, title)


def plot_success_rate(ax, df: pd.DataFrame, dataset: str, attack: str) -> None:
    """The attack's success rate over the correctly classified images it attacked."""
    rows = three_stage(df[df["dataset"] == dataset])
    title = f"{ATTACK_NAMES[attack]}: success rate"
    ylabel = "attacked images fooled (%)"
    column = f"{attack}_success_rate"
    plot_vs_temperature(ax, rows, column, ylabel, title, 100.0, ylim=_PERCENT_LIMITS)


def plot_confidence(ax, df: pd.DataFrame, dataset: str) -> None:
    """Fig. 6: confidence of eq. 14 (max T = 1 probability if correct, else 0)."""
    rows = three_stage(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: confidence (eq. 14)"
    plot_vs_temperature(ax, rows, "confidence", "mean confidence", title)


def plot_multistep_accuracy(ax, df: pd.DataFrame, dataset: str) -> None:
    """Fig. 7: test accuracy against temperature, one line per distillation step."""
    rows = multistep(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}: multi-step test accuracy"
    plot_vs_temperature(ax, rows, "test_accuracy", "test accuracy at T = 1 (%)", title, 100.0)


def plot_multistep_robustness(ax, df: pd.DataFrame, dataset: str, attack: str) -> None:
    """Fig. 8 (left): mean minimal perturbation against temperature, per distillation step."""
    rows = multistep(df[df["dataset"] == dataset])
    title = f"{dataset_label(dataset)}, {ATTACK_NAMES[attack]}: robustness per step"
    plot_vs_temperature(ax, rows, f"{attack}_mean", f"mean {PERTURBATION_UNITS[attack]}", title)


def plot_multistep_average(ax, df: pd.DataFrame, dataset: str, attack: str) -> None:
    """Fig. 8 (right): mean minimal perturbation averaged over temperatures, per step (the
    mean of the left panel's points; their n is in its legend)."""
    title = f"{dataset_label(dataset)}, {ATTACK_NAMES[attack]}: averaged over T"
    rows = multistep(df[df["dataset"] == dataset])
    curves = _curves(rows, f"{attack}_mean")
    if not curves:
        _no_data(ax, title, _empty_text(rows, f"{attack}_mean"))
        return
    labels = [role for role, _ in curves]
    heights = [curve["value"].mean() for _, curve in curves]
    colors = [_style(role, i, len(curves))["color"] for i, role in enumerate(labels)]
    ax.bar(range(len(labels)), heights, color=colors)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_xlabel("model in the chain")
    ax.set_ylabel(f"mean {PERTURBATION_UNITS[attack]}\n(averaged over T)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def plot_gradient_masking(ax, df: pd.DataFrame, dataset: str, statistic: str = "mean") -> None:
    """C&W L2 against the logits (solid, filled markers) and against softmax(logits / T)
    (dotted, hollow markers), per role; the legend names each series.

    A model that looks robust only against the softmax attack masks its gradients: the attack
    on the logits is the real measurement (Carlini & Wagner 2017). Means carry their interval
    when `df` holds the `_ci_low` / `_ci_high` columns.

    Args:
        ax: the matplotlib axes to draw on.
        df: results rows (KEY_COLUMNS, l2_* and l2_softmax_T_* columns).
        dataset: the dataset to draw.
        statistic: "mean", "max" or "success_rate".
    """
    rows = three_stage(df[df["dataset"] == dataset])
    percent = statistic == "success_rate"
    what = "attacked images fooled" if percent else f"{statistic} $L_2$ perturbation"
    title = f"{dataset_label(dataset)}: C&W $L_2$, {what}"
    targets = {
        "logits": ("l2", {"linestyle": "-"}),
        "softmax(logits / T)": (MASKED_L2_PREFIX, _MASKED_STYLE),
    }
    columns = {name: f"{prefix}_{statistic}" for name, (prefix, _) in targets.items()}
    curves = {name: _curves(rows, column) for name, column in columns.items()}
    if not any(curves.values()):
        texts = {name: _empty_text(rows, column) for name, column in columns.items()}
        same = len(set(texts.values())) == 1
        lines = [f"{name}: {text}" for name, text in texts.items()]
        _no_data(ax, title, texts["logits"] if same else "\n".join(lines))
        return
    handles, count = [], sum(len(c) for c in curves.values())
    temperatures = [t for c in curves.values() for _, v in c for t in v.index]
    factors = _dodge(temperatures, count)  # one shift per series of both attacks
    remaining = factors
    for name, target_curves in curves.items():
        shifts, remaining = remaining[: len(target_curves)], remaining[len(target_curves) :]
        scale = 100.0 if percent else 1.0
        _draw_series(ax, target_curves, scale, shifts, **targets[name][1])
        for index, (role, curve) in enumerate(target_curves):
            style = {**_style(role, index, len(target_curves)), **targets[name][1]}
            handles.append(Line2D([], [], label=_curve_label(f"{role}, {name}", curve), **style))
    _temperature_axis(ax, sorted(set(temperatures)), factors)
    ax.legend(handles=handles, fontsize="x-small")
    ax.set_ylabel(f"{what} (%)" if percent else what)
    if percent:
        ax.set_ylim(*_PERCENT_LIMITS)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def plot_budget_success(ax, df: pd.DataFrame, dataset: str, norm: str = "l2") -> None:
    """Papernot et al.'s measure: attacks that succeed within a fixed perturbation budget."""
    rows = three_stage(df[df["dataset"] == dataset])
    budgets = rows[f"{norm}_budget"].dropna().unique() if f"{norm}_budget" in rows else []
    bound = f"{budgets[0]:g}" if len(budgets) == 1 else "budget"
    symbol = PERTURBATION_UNITS[norm].split()[0]
    title = f"{dataset_label(dataset)}: {ATTACK_NAMES[norm]}, fooled within {symbol} ≤ {bound}"
    ylabel = "attacked images fooled within budget (%)"
    column = f"{norm}_budget_success_rate"
    plot_vs_temperature(ax, rows, column, ylabel, title, 100.0, ylim=_PERCENT_LIMITS)


def _pair_series(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame, dict, str]]:
    """The series of a panel of `plot_paired_differences`, empty ones included (each keeps its
    sideways shift): (later role, its rows by temperature, style, label), one per `PAIRS`
    entry and, where the table has a `seed` column, per seed (named in the label, each seed
    its own marker: the pairs of two seeds are never one series)."""
    seeds = sorted(set(rows[SEED_COLUMN])) if SEED_COLUMN in rows.columns else [None]
    series = []
    for (later, earlier), pair_style in zip(PAIRS, _PAIR_STYLES, strict=True):
        pair = rows[rows["comparison"] == f"{later} - {earlier}"].sort_values("temperature")
        for position, seed in enumerate(seeds):
            style, label = dict(pair_style), f"{later} − {earlier}"
            if seed is not None:
                pair_seed = pair[pair[SEED_COLUMN] == seed]
                label += f", seed {seed}"
                if len(seeds) > 1:
                    style["marker"] = _MARKERS[position % len(_MARKERS)]
            series.append((later, pair if seed is None else pair_seed, style, label))
    return series


def plot_paired_differences(ax, differences: pd.DataFrame, dataset: str, attack: str) -> None:
    """Draws the paired differences of one attack against T, with intervals, zero line and n.

    Where the table has a `seed` column, each seed is a series of its own, named in the legend.

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
        _no_data(ax, title, "no image pair fooled under both models")
        return
    series = _pair_series(rows)
    factors = _dodge(rows["temperature"], len(series), 2 * _DODGE_DECADES)  # wide error bars
    for (later, pair, style, label), factor in zip(series, factors, strict=True):
        if pair.empty:
            continue
        x, y = pair["temperature"].to_numpy() * factor, pair["estimate"].to_numpy()
        yerr = _yerr(y, pair["low"], pair["high"])
        ax.errorbar(x, y, yerr=yerr, capsize=3, label=label, **style)
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
    _temperature_axis(ax, sorted(set(rows["temperature"])), factors)
    ax.margins(y=0.15)
    ax.set_ylabel(f"paired difference in {PERTURBATION_UNITS.get(attack, 'distance')}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")


def _seed_dots(rows: pd.DataFrame, x: np.ndarray) -> tuple[list[float], list[float]]:
    """Where each seed's mean of `seed_level_differences` rows is drawn: left of its T's mean,
    the seeds spread a little sideways in seed order."""
    xs, ys = [], []
    for xi, means in zip(x, rows["seed_means"], strict=True):
        values = [means[seed] for seed in sorted(means)]
        spread = np.linspace(-1, 1, len(values)) * _SEED_LEVEL_SPREAD if len(values) > 1 else [0]
        xs += [xi - _SEED_LEVEL_OFFSET + offset for offset in spread]
        ys += values
    return xs, ys


def count_text(counts: pd.Series, noun: str) -> str:
    """ "4 seeds", "1 seed" or "1–4 seeds": the fewest and most of `counts`, then `noun` (a
    plural in s, singular for exactly 1)."""
    low, high = int(counts.min()), int(counts.max())
    if low == high:
        return f"{low} {noun.removesuffix('s') if low == 1 else noun}"
    return f"{low}–{high} {noun}"


def _over_seeds(ax, x, y, rows, low, high, level: str, marker: str) -> np.ndarray:
    """Draws each seed's value of `rows` (`seed_means`) as a faint dot left of its point, the
    means over seeds `y` at `x` (`marker`: "o", or "o-" joined) and their t-intervals over
    seeds [low, high] as thick bars; returns where an interval was drawn (2 or more seeds)."""
    ax.plot(*_seed_dots(rows, x), "o", color="0.35", alpha=0.6, markersize=4, label="each seed")
    ax.plot(x, y, marker, color="tab:blue", markersize=6, label="mean over seeds")
    spread = low.notna().to_numpy()
    if spread.any():
        ax.errorbar(
            x[spread],
            y[spread],
            yerr=_yerr(y[spread], low[spread], high[spread]),
            fmt="none",
            color="tab:blue",
            elinewidth=4,
            label=f"{level} t-interval over seeds",
        )
    return spread


def plot_seed_level_differences(
    ax, table: pd.DataFrame, dataset: str, attack: str, comparison: str
) -> None:
    """Draws one comparison of `replicates.seed_level_differences` against T (categorical).

    Per T: each seed's paired mean difference as a dot, the mean over seeds with its
    t-interval over seeds as a thick bar, the two-level bootstrap interval as a thin bar beside
    it; a dashed line at 0 and the number of seeds in the title.

    Args:
        ax: the matplotlib axes to draw on.
        table: the table of `replicates.seed_level_differences` (one chain length).
        dataset: the dataset to draw.
        attack: the attack to draw (a value of its `attack` column).
        comparison: the comparison to draw, e.g. "student - teacher".
    """
    chosen = (table["dataset"] == dataset) & (table["attack"] == attack)
    rows = table[chosen & (table["comparison"] == comparison)].sort_values("temperature")
    title = f"{dataset_label(dataset)}, {ATTACK_NAMES.get(attack, attack)}: {comparison}"
    if rows.empty:
        _no_data(ax, title, "no image pair fooled under both models")
        return
    level = f"{100 * rows['confidence'].iloc[0]:g}%"
    x = np.arange(len(rows), dtype=float)
    y = rows["estimate"].to_numpy(float)
    spread = _over_seeds(ax, x, y, rows, rows["t_low"], rows["t_high"], level, "o")
    if spread.any():  # 2 or more seeds: both intervals
        thin = _yerr(y[spread], rows["bootstrap_low"][spread], rows["bootstrap_high"][spread])
        ax.errorbar(
            x[spread] + _SEED_LEVEL_OFFSET,
            y[spread],
            yerr=thin,
            fmt="none",
            color="tab:purple",
            elinewidth=1,
            capsize=3,
            label=f"{level} two-level bootstrap (seeds, then images)",
        )
    ax.axhline(0.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(x, [f"{t:g}" for t in rows["temperature"]])
    ax.set_xlim(-0.7, len(x) - 0.3)
    ax.margins(y=0.25)  # room for the figure's one legend
    ax.set_xlabel("distillation temperature T")
    ax.set_ylabel(f"mean paired difference in {PERTURBATION_UNITS.get(attack, 'distance')}")
    ax.set_title(f"{title}\n(n = {count_text(rows['seeds'], 'seeds')})")
    ax.grid(axis="y", alpha=0.3)


def plot_step_trend(ax, table: pd.DataFrame, chain: tuple) -> None:
    """Draws one long chain of `replicates.step_trend` against the step: each seed's mean
    paired difference step - teacher as a dot, the mean over seeds with its t-interval over
    seeds as a bar, a dashed line at 0; the slope over steps with its t-interval, and the
    number of seeds, in the title.

    Args:
        ax: the matplotlib axes to draw on.
        table: the rows of `replicates.step_trend` of the chain (none: says so).
        chain: its (dataset, stages, T, attack).
    """
    dataset, stages, temperature, attack = chain
    title = (
        f"{dataset_label(dataset)}, {ATTACK_NAMES.get(attack, attack)}: "
        f"{stages}-model chains, T = {temperature:g}"
    )
    steps = table[table["step"] != "slope"]
    if steps.empty:
        _no_data(ax, title, "no image fooled under a step and the teacher")
        return
    first = steps.iloc[0]
    x = steps["step"].astype(int).to_numpy(float)
    y = steps["estimate"].to_numpy(float)
    dots = steps.rename(columns={"seed_values": "seed_means"})
    level = f"{100 * first['confidence']:g}%"
    _over_seeds(ax, x, y, dots, steps["low"], steps["high"], level, "o-")
    ax.axhline(0.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(x, [f"{int(k)}" for k in x])
    ax.set_xlim(x.min() - 0.7, x.max() + 0.5)
    ax.margins(y=0.25)
    ax.set_xlabel("distillation step (stage; 1 is the teacher)")
    unit = PERTURBATION_UNITS.get(attack, "distance")
    ax.set_ylabel(f"mean paired difference step - teacher,\n{unit}")
    seeds = f"n = {count_text(steps['seeds'], 'seeds')}"
    slope = table[table["step"] == "slope"]
    if not slope.empty:
        row = slope.iloc[0]
        bounds = f" [{row['low']:+.4f}, {row['high']:+.4f}]" if row["seeds"] > 1 else ""
        seeds += f"; slope {row['estimate']:+.4f}{bounds} a step"
    ax.set_title(f"{title}\n({seeds})")
    ax.grid(axis="y", alpha=0.3)
