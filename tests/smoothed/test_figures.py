"""Tests of keras_takd.smoothed.figures on tiny synthetic tables: nothing clipped, every series
visible, integer ticks on count axes, n stated."""

import types

import numpy as np
import pandas as pd

from keras_takd.smoothed import figures

CONFIG = types.SimpleNamespace(
    pgd_steps=2,
    eval_eps_255=8.0,
    distil_weight=0.75,
    perturb_distil_weight=0.25,
    temperature=1.0,
    curve_size=50,
)


def _transfer_frame(steps: int = 2) -> pd.DataFrame:
    """Three targets with equal accuracies (they must not hide each other), two eps."""
    rows = [
        {"source": source, "target": target, "eps": e / 255, "eps_255": e, "k": k}
        | {"clean_accuracy": 0.5, "adversarial_accuracy": 0.4 - 0.05 * k, "num_images": 20}
        for source in ("cni", "kd_student")
        for target in ("cni", "kd_student", "smoothed_cni")
        for e in (2.0, 8.0)
        for k in range(1, steps + 1)
    ]
    return pd.DataFrame(rows)


def _curves(epochs: int = 3) -> dict[str, list[dict]]:
    record = {
        f"{split}_{kind}_accuracy": 0.3 for split in ("train", "test") for kind in ("clean", "pgd")
    }
    return {a: [record | {"epoch": e} for e in range(1, epochs + 1)] for a in ("prediction", "x")}


def _integer_ticks(ax) -> bool:
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


def test_transfer_figure_keeps_every_target_visible_on_integer_steps(clipped):
    fig = figures.transfer_figure(_transfer_frame(steps=2), "cni")
    assert clipped(fig) == []  # draws the figure, too
    assert "n = 20 test images per point" in fig.get_suptitle()
    for ax in fig.axes:
        assert _integer_ticks(ax), ax.get_xticks()
        curves = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert len(curves) == 3
        assert len({tuple(line.get_xdata()) for line in curves}) == 3  # shifted sideways
        assert len({line.get_marker() for line in curves}) == 3
        assert len({str(line.get_linestyle()) for line in curves}) == 3
        np.testing.assert_allclose(np.round(curves[0].get_xdata()), [1, 2])


def test_write_transfer_figures_writes_one_png_per_source(tmp_path):
    paths = figures.write_transfer_figures(_transfer_frame(), tmp_path / "figures")
    assert [p.name for p in paths] == ["transfer_cni.png", "transfer_kd_student.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_curve_figure_states_n_and_has_integer_epochs(tmp_path, clipped):
    fig = figures.curve_figure(_curves(), CONFIG)
    assert clipped(fig) == []
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert _integer_ticks(ax), ax.get_xticks()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["train images (n = 50)", "test images (n = 50)"]
        train, test = ax.get_lines()
        assert train.get_xdata()[0] != test.get_xdata()[0]  # equal accuracies stay apart
        assert train.get_marker() != test.get_marker()
    path = figures.write_curve_figure(_curves(), CONFIG, tmp_path / "figures")
    assert path.name == "student_epochs.png" and path.read_bytes()[:4] == b"\x89PNG"
