"""Figures of the smoothed-KD study (Katz & Reches): transfer matrix (Figs. 4-6), epochs (1-3).

One figure per source (attack) model, one panel per eps, one line per target model: solid
the target's accuracy on the source's PGD-k images, k = 1..10, dotted its clean accuracy.
Reads the table of `keras_takd.smoothed.transfer.transfer_matrix`.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from keras_takd.core import files  # noqa: E402


def _save_png_atomic(fig, path: pathlib.Path) -> pathlib.Path:
    """Saves and closes `fig` as a PNG at `path`, through a temporary name and a rename."""
    try:
        return files.save_figure_atomic(fig, path, dpi=110)
    finally:
        plt.close(fig)


def plot_accuracy_vs_k(ax, frame: pd.DataFrame, source: str, eps_255: float) -> None:
    """Draws each target's accuracy against PGD step k for one source and eps onto `ax`.

    Raises:
        ValueError: if the table has no row for that source and eps.
    """
    rows = frame[(frame["source"] == source) & np.isclose(frame["eps_255"], eps_255)]
    if rows.empty:
        raise ValueError(f"no transfer rows for source {source!r} at eps_255={eps_255}")
    for index, (target, group) in enumerate(rows.groupby("target", sort=True)):
        group = group.sort_values("k")
        color = f"C{index}"
        ax.plot(group["k"], 100 * group["adversarial_accuracy"], "o-", color=color, label=target)
        ax.axhline(100 * group["clean_accuracy"].iloc[0], color=color, linestyle=":")
    ax.set_title(f"eps = {eps_255:g}/255")
    ax.set_xlabel("PGD step k")
    ax.set_ylabel("target accuracy, %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def write_transfer_figures(
    frame: pd.DataFrame, directory: str | os.PathLike, prefix: str = "transfer"
) -> list[pathlib.Path]:
    """Writes `<prefix>_<source>.png` per source model into `directory`, atomically.

    Returns:
        The paths written, in source order.
    """
    directory = pathlib.Path(directory)
    eps_values = sorted(frame["eps_255"].unique())
    written = []
    for source in sorted(frame["source"].unique()):
        fig, axes = plt.subplots(1, len(eps_values), figsize=(4.2 * len(eps_values), 3.6))
        for ax, eps in zip(np.atleast_1d(axes), eps_values, strict=True):
            plot_accuracy_vs_k(ax, frame, source, eps)
        np.atleast_1d(axes)[0].legend(title="target (dotted: clean)", fontsize=8)
        fig.suptitle(f"PGD examples crafted on {source}")
        fig.tight_layout()
        written.append(_save_png_atomic(fig, directory / f"{prefix}_{source}.png"))
    return written


def write_curve_figure(
    curves: dict[str, list[dict]], config, directory: str | os.PathLike
) -> pathlib.Path:
    """Writes `student_epochs.png`: each student's accuracy against the epoch (Figs. 1-3).

    One row per student (the aggregation of the smoothed teacher it was distilled from), two
    panels: clean accuracy (Fig. 1, left of Figs. 2-3) and PGD accuracy (right of Figs. 2-3),
    each on the training images (dashed) and the test images (solid).

    Args:
        curves: aggregation -> the records of `keras_takd.smoothed.adversarial.EpochAccuracyCurves`.
        config: the run's `SmoothedKDConfig` (its PGD settings and weights go in the title).
        directory: where the figure goes.

    Returns:
        The path written.

    Raises:
        ValueError: if a student has no records.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(curves), 2, figsize=(9, 3.4 * len(curves)), squeeze=False)
    for row, (aggregation, records) in zip(axes, curves.items(), strict=True):
        if not records:
            raise ValueError(f"no per-epoch records for the student of {aggregation!r}")
        frame = pd.DataFrame(records).sort_values("epoch")
        for ax, kind, label in zip(row, ("clean", "pgd"), ("clean", "PGD"), strict=True):
            for split, style in (("train", "o--"), ("test", "o-")):
                column = f"{split}_{kind}_accuracy"
                ax.plot(frame["epoch"], 100 * frame[column], style, label=f"{split} images")
            ax.set_title(f"{label} accuracy, distilled from {aggregation.replace('_', ' ')}")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
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
    fig.tight_layout()
    return _save_png_atomic(fig, directory / "student_epochs.png")
