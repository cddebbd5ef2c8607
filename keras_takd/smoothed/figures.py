"""Figures of the smoothed-KD study (Katz & Reches): transfer matrix (Figs. 4-6), epochs (1-3).

Transfer: one figure per source (attack) model, one panel per eps, one line per target model
(each its own colour, marker and line style): the target's accuracy on the source's PGD-k
images, k = 1..10, and dotted in its colour its clean accuracy; reads the table of
`keras_takd.smoothed.transfer.transfer_matrix`. Epochs: each student's clean and PGD accuracy
after every epoch (`write_curve_figure`).

Figures are bare `matplotlib.figure.Figure` objects (rendered by Agg, no pyplot, no global
state) with a constrained layout, so no title or label is clipped; series with equal values are
shifted sideways a little so that none hides another, count axes (PGD step, epoch) have integer
ticks, and each figure says how many images a point rests on.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from keras_takd.core import files

# One marker and line style per target (the clean accuracy is the dotted line of its colour).
_TARGET_STYLES = (
    {"marker": "o", "linestyle": "-"},
    {"marker": "s", "linestyle": "--"},
    {"marker": "^", "linestyle": "-."},
    {"marker": "D", "linestyle": (0, (5, 1))},
)
_SHIFT = 0.08  # sideways shift between neighbouring series, in PGD steps or epochs


def _integer_axis(ax) -> None:
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def plot_accuracy_vs_k(ax, frame: pd.DataFrame, source: str, eps_255: float) -> None:
    """Draws each target's accuracy against PGD step k for one source and eps onto `ax`.

    Raises:
        ValueError: if the table has no row for that source and eps.
    """
    rows = frame[(frame["source"] == source) & np.isclose(frame["eps_255"], eps_255)]
    if rows.empty:
        raise ValueError(f"no transfer rows for source {source!r} at eps_255={eps_255}")
    targets = list(rows.groupby("target", sort=True))
    for index, (target, group) in enumerate(targets):
        group = group.sort_values("k")
        color = f"C{index}"
        style = _TARGET_STYLES[index % len(_TARGET_STYLES)]
        shift = _SHIFT * (index - (len(targets) - 1) / 2)
        y = 100 * group["adversarial_accuracy"]
        ax.plot(group["k"] + shift, y, color=color, label=target, **style)
        ax.axhline(100 * group["clean_accuracy"].iloc[0], color=color, linestyle=":")
    ax.set_title(f"eps = {eps_255:g}/255")
    ax.set_xlabel("PGD step k")
    _integer_axis(ax)
    ax.set_ylabel("target accuracy, %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def _images_note(frame: pd.DataFrame) -> str:
    if "num_images" not in frame.columns:
        return ""
    counts = sorted({int(n) for n in frame["num_images"].dropna()})
    if not counts:
        return ""
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"; n = {n} test images per point"


def transfer_figure(frame: pd.DataFrame, source: str) -> Figure:
    """The transfer figure of one source model: one panel per eps of `frame`.

    Raises:
        ValueError: if the table has no row for that source at some eps.
    """
    eps_values = sorted(frame["eps_255"].unique())
    fig = Figure(figsize=(4.2 * len(eps_values), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(eps_values)))
    for ax, eps in zip(axes, eps_values, strict=True):
        plot_accuracy_vs_k(ax, frame, source, eps)
    axes[0].legend(title="target (dotted: clean)", fontsize=8, title_fontsize=8)
    rows = frame[frame["source"] == source]
    fig.suptitle(f"PGD examples crafted on {source}{_images_note(rows)}")
    return fig


def write_transfer_figures(
    frame: pd.DataFrame, directory: str | os.PathLike, prefix: str = "transfer"
) -> list[pathlib.Path]:
    """Writes `<prefix>_<source>.png` per source model into `directory`, atomically.

    Returns:
        The paths written, in source order.
    """
    directory = pathlib.Path(directory)
    return [
        files.save_figure_atomic(
            transfer_figure(frame, source), directory / f"{prefix}_{source}.png", dpi=110
        )
        for source in sorted(frame["source"].unique())
    ]


def curve_figure(curves: dict[str, list[dict]], config) -> Figure:
    """Each student's accuracy against the epoch (Figs. 1-3), see `write_curve_figure`.

    Raises:
        ValueError: if a student has no records.
    """
    fig = Figure(figsize=(9, 3.4 * len(curves) + 0.6), layout="constrained")
    axes = fig.subplots(len(curves), 2, squeeze=False)
    n = f" (n = {config.curve_size})" if getattr(config, "curve_size", 0) else ""
    for row, (aggregation, records) in zip(axes, curves.items(), strict=True):
        if not records:
            raise ValueError(f"no per-epoch records for the student of {aggregation!r}")
        frame = pd.DataFrame(records).sort_values("epoch")
        for ax, kind, label in zip(row, ("clean", "pgd"), ("clean", "PGD"), strict=True):
            for split, style, shift in (("train", "o--", -_SHIFT / 2), ("test", "s-", _SHIFT / 2)):
                column = f"{split}_{kind}_accuracy"
                ax.plot(
                    frame["epoch"] + shift, 100 * frame[column], style, label=f"{split} images{n}"
                )
            ax.set_title(f"{label} accuracy, distilled from {aggregation.replace('_', ' ')}")
            ax.set_xlabel("epoch")
            _integer_axis(ax)
            ax.set_ylabel("student accuracy, %")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(
        f"KD student per epoch: PGD-{config.pgd_steps}, eps {config.eval_eps_255:g}/255;"
        f" w = {config.distil_weight:g}, p = {config.perturb_distil_weight:g},"
        f" T = {config.temperature:g}",
        fontsize=10,
    )
    return fig


def write_curve_figure(
    curves: dict[str, list[dict]], config, directory: str | os.PathLike
) -> pathlib.Path:
    """Writes `student_epochs.png`: each student's accuracy against the epoch (Figs. 1-3).

    One row per student (the aggregation of the smoothed teacher it was distilled from), two
    panels: clean accuracy (Fig. 1, left of Figs. 2-3) and PGD accuracy (right of Figs. 2-3),
    each on the training images (dashed) and the test images (solid), n = `curve_size` each.

    Args:
        curves: aggregation -> the records of `keras_takd.smoothed.adversarial.EpochAccuracyCurves`.
        config: the run's `SmoothedKDConfig` (its PGD settings and weights go in the title, its
            curve_size in the legends).
        directory: where the figure goes.

    Returns:
        The path written.

    Raises:
        ValueError: if a student has no records.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fig = curve_figure(curves, config)
    return files.save_figure_atomic(fig, directory / "student_epochs.png", dpi=110)
