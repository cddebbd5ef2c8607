"""The figures of Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant".

Draws, from the results CSV alone (columns `keras_takd.takd.schema.KEY_COLUMNS`, role and
`METRIC_COLUMNS`), the paper's Figs. 3-8: accuracy, near-zero gradients, mean and max minimal
perturbation, confidence and the multi-step chain, each against the distillation temperature T;
plus two checks the paper lacks: the C&W L2 attack against the logits beside the same attack
against softmax(logits / T) (the gradient masking of Carlini & Wagner, arXiv:1608.04644) and
Papernot et al.'s success rate at a fixed budget (arXiv:1511.04508).

Rows are split by the length of their chain: the optional `stages` column, else the largest
`stage` among rows of the same dataset and temperature. Chains of at most three models
(teacher, assistant, student: the paper's Figs. 3-6 and the two checks) are drawn one line per
`role`; longer chains (section VI, Figs. 7-8) one line per `stage`. Repeated rows of one model
(e.g. several seeds) are averaged.

The `plot_*` functions draw on an `ax` they are given; `draw_all` writes every figure the data
allow as PNG and PDF, using bare `matplotlib.figure.Figure` objects (rendered by Agg), never
pyplot, so it changes no global matplotlib state and needs no display.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable, Sequence

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from keras_takd.takd.schema import (
    ATTACKS,
    CHAIN_LENGTH_COLUMN,
    KEY_COLUMNS,
    MASKED_L2_PREFIX,
    ROLE_COLUMN,
)

# What every row must hold to be drawn: the key and the model's role in its chain.
_REQUIRED = (*KEY_COLUMNS, ROLE_COLUMN)

_LOG = logging.getLogger(__name__)

ROLES = ("teacher", "assistant", "student")
# The paper's Fig. 5: teacher red dashed, assistant orange, student blue.
ROLE_STYLES = {
    "teacher": {"color": "tab:red", "linestyle": "--", "marker": "o"},
    "assistant": {"color": "tab:orange", "linestyle": "-", "marker": "s"},
    "student": {"color": "tab:blue", "linestyle": "-", "marker": "^"},
}
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
_PERCENT_LIMITS = (-3.0, 103.0)
FORMATS = ("png", "pdf")


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


def _curves(df: pd.DataFrame, column: str) -> list[tuple[str, pd.Series]]:
    """(line label, column mean by temperature) per line, ordered by stage, skipping empty ones.

    `df` comes from `_three_stage` or `_multistep`, which name the lines.
    """
    if column not in df.columns or df.empty:
        return []
    data = df[["_line", "stage", "temperature", column]].dropna(subset=[column])
    order = data.groupby("_line")["stage"].min().sort_values(kind="stable").index
    return [
        (line, data[data["_line"] == line].groupby("temperature")[column].mean().sort_index())
        for line in order
    ]


def _style(label: str, index: int, count: int) -> dict:
    """The paper's role styles; otherwise the teacher red dashed and later stages viridis."""
    if label in ROLE_STYLES:
        return dict(ROLE_STYLES[label])
    if label.startswith("teacher"):
        return dict(ROLE_STYLES["teacher"])
    color = matplotlib.colormaps["viridis"](index / max(count - 1, 1))
    return {"color": color, "linestyle": "-", "marker": "o"}


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
    for index, (role, curve) in enumerate(curves):
        ax.plot(
            curve.index, curve.to_numpy() * scale, label=role, **_style(role, index, len(curves))
        )
    _temperature_axis(ax, sorted({t for _, curve in curves for t in curve.index}))
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) <= 4:
        ax.legend(fontsize="small")
    else:  # a long chain: keep the legend clear of the lines
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


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
    """Fig. 5: mean or max minimal perturbation of an attack over successfully attacked images."""
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
    """Fig. 8 (right): mean minimal perturbation averaged over temperatures, per step."""
    title = f"{dataset_label(dataset)}, {ATTACK_NAMES[attack]}: averaged over T"
    curves = _curves(_multistep(df[df["dataset"] == dataset]), f"{attack}_mean")
    if not curves:
        _no_data(ax, title)
        return
    labels = [role for role, _ in curves]
    heights = [curve.mean() for _, curve in curves]
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
    on the logits is the real measurement (Carlini & Wagner 2017).

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
    temperatures, roles = set(), {}
    for name, target_curves in curves.items():
        for index, (role, curve) in enumerate(target_curves):
            style = {**_style(role, index, len(target_curves)), "linestyle": targets[name][1]}
            ax.plot(curve.index, curve.to_numpy() * (100.0 if percent else 1.0), **style)
            temperatures.update(curve.index)
            roles[role] = style["color"]
    _temperature_axis(ax, sorted(temperatures))
    handles = [Line2D([], [], color=color, label=role) for role, color in roles.items()]
    handles += [
        Line2D([], [], color="black", linestyle=line, label=f"attack on {name}")
        for name, (_, line) in targets.items()
    ]
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


def _grid(rows: int, cols: int, title: str):
    # A bare Figure (no pyplot): no global state, no GUI backend, rendered by Agg on save.
    fig = Figure(figsize=(4.6 * cols, 3.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.suptitle(title, fontsize="large")
    return fig, axes


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
    fig, axes = _grid(1, len(datasets), "Fig. 7: model accuracy for multi-step distillation")
    for ax, dataset in zip(axes[0], datasets, strict=True):
        plot_multistep_accuracy(ax, df, dataset)
    return fig


def _fig_multistep_robustness(df, dataset):
    title = f"Fig. 8 ({dataset_label(dataset)}): robustness for multi-step distillation"
    fig, axes = _grid(len(ATTACKS), 2, title)
    for i, attack in enumerate(ATTACKS):
        plot_multistep_robustness(axes[i, 0], df, dataset, attack)
        plot_multistep_average(axes[i, 1], df, dataset, attack)
    return fig


def _fig_gradient_masking(df, datasets):
    title = (
        "Gradient masking check: C&W $L_2$ against the logits (solid)\n"
        "and against softmax(logits / T) at the training temperature (dotted)"
    )
    fig, axes = _grid(2, len(datasets), title)
    for j, dataset in enumerate(datasets):
        plot_gradient_masking(axes[0, j], df, dataset, "mean")
        plot_gradient_masking(axes[1, j], df, dataset, "success_rate")
    return fig


def _fig_budget_success(df, datasets):
    title = "Adversarial success rate at a fixed budget (Papernot et al. 2016)"
    fig, axes = _grid(2, len(datasets), title)
    for j, dataset in enumerate(datasets):
        plot_budget_success(axes[0, j], df, dataset, "l2")
        plot_budget_success(axes[1, j], df, dataset, "linf")
    return fig


def _robustness_columns(prefixes: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{p}_{s}" for p in prefixes for s in ("mean", "max", "success_rate"))


# name -> (rows it draws, columns any of which must hold data, builder, one figure per dataset)
FIGURES: dict[str, tuple[Callable, tuple[str, ...], Callable, bool]] = {
    "fig3_accuracy": (_three_stage, ("test_accuracy",), _fig_accuracy, False),
    "fig4_sensitivity": (
        _three_stage,
        tuple(
            f"sensitivity_{of}_{s}" for of in SENSITIVITY_NAMES for s in ("zero_fraction", "mean")
        ),
        _fig_sensitivity,
        False,
    ),
    "fig5_robustness": (_three_stage, _robustness_columns(ATTACKS), _fig_robustness, True),
    "fig6_confidence": (_three_stage, ("confidence",), _fig_confidence, False),
    "fig7_multistep_accuracy": (_multistep, ("test_accuracy",), _fig_multistep_accuracy, False),
    "fig8_multistep_robustness": (
        _multistep,
        tuple(f"{a}_mean" for a in ATTACKS),
        _fig_multistep_robustness,
        True,
    ),
    "gradient_masking": (
        _three_stage,
        _robustness_columns([MASKED_L2_PREFIX]),
        _fig_gradient_masking,
        False,
    ),
    "budget_success": (
        _three_stage,
        ("l2_budget_success_rate", "linf_budget_success_rate"),
        _fig_budget_success,
        False,
    ),
}
"""Every figure `draw_all` can write; a per-dataset figure is named `<name>_<dataset>`."""


def _datasets(df: pd.DataFrame) -> list[str]:
    known = [d for d in ("mnist", "cifar10") if d in set(df["dataset"])]
    return known + sorted(set(map(str, df["dataset"])) - set(known))


def _plan(df: pd.DataFrame) -> tuple[list[tuple[str, Callable, object]], dict[str, str]]:
    """The figures the data allow, as (file stem, builder, argument), and why others are not."""
    planned, skipped = [], {}
    for name, (select, columns, build, per_dataset) in FIGURES.items():
        groups = [(d, df[df["dataset"] == d]) for d in _datasets(df)]
        usable = [d for d, rows in groups if any(_has_data(select(rows), c) for c in columns)]
        if not usable:
            skipped[name] = f"no data in columns {', '.join(columns)}"
        elif per_dataset:
            planned += [(f"{name}_{d}", build, d) for d in usable]
        else:
            planned.append((name, build, usable))
    return planned, skipped


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


def _read_one(path: pathlib.Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"results file {str(path)!r} not found")
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as error:  # pandas' parser errors are ValueErrors
        reason = " ".join(str(error).split())
        raise ValueError(f"{path} is not a readable CSV ({reason})") from None
    try:
        check_results(df)
        for column in ("temperature", "stage"):
            df[column] = pd.to_numeric(df[column], errors="raise")
    except ValueError as error:
        raise ValueError(f"{path}: {' '.join(str(error).split())}") from None
    if CHAIN_LENGTH_COLUMN not in df.columns:  # chains of one file do not mix with another's
        df[CHAIN_LENGTH_COLUMN] = chain_length(df)
    return df


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
    if isinstance(paths, (str, pathlib.Path)):
        paths = [paths]
    if not paths:
        raise ValueError("no results file given")
    return pd.concat([_read_one(pathlib.Path(p)) for p in paths], ignore_index=True)


def skipped_figures(results_df: pd.DataFrame) -> dict[str, str]:
    """The figures `draw_all` would skip for `results_df`, each with the reason."""
    check_results(results_df)
    return _plan(results_df)[1]


def draw_all(
    results_df: pd.DataFrame, out_dir: str | pathlib.Path, caption: str | None = None
) -> list[pathlib.Path]:
    """Writes every figure the results allow into `out_dir`, as PNG and PDF.

    Figures whose columns are absent or empty are skipped and logged (see `skipped_figures`).

    Args:
        results_df: the results table (KEY_COLUMNS plus any of `schema.METRIC_COLUMNS`).
        out_dir: the folder to write to (created if needed).
        caption: optional note printed under every figure, e.g. the settings of the run.

    Returns:
        The paths written, in `FIGURES` order, PNG before PDF.

    Raises:
        ValueError: if `results_df` lacks a key column or has no rows.
    """
    check_results(results_df)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    planned, skipped = _plan(results_df)
    for name, reason in skipped.items():
        _LOG.warning("skipping figure %s: %s", name, reason)
    written = []
    for stem, build, argument in planned:
        fig = build(results_df, argument)
        if caption:
            fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize="small", wrap=True)
        fig.tight_layout(rect=(0, 0.03 if caption else 0, 1, 1))
        for fmt in FORMATS:
            path = out_dir / f"{stem}.{fmt}"
            fig.savefig(path, dpi=150)
            written.append(path)
    return written
