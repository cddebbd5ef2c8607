"""Tests of keras_takd.takd.analysis.figures (and the statistics it draws) on small synthetic
results and per-image tables."""

import re

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from keras_takd.core.statistics import MIN_IMAGES
from keras_takd.takd import schema
from keras_takd.takd.analysis import statistics, tables
from keras_takd.takd.analysis.figures import catalog, panels

SWEEP_TEMPERATURES = (1.0, 10.0, 40.0)
CHAIN_TEMPERATURES = (5.0, 20.0)
IMAGES = 8
LOGGER = "keras_takd.takd.analysis.figures.catalog"
PER_IMAGE_ATTACKS = (*schema.ATTACKS, schema.MASKED_L2_PREFIX)
ALL_FIGURES = [
    "fig3_accuracy",
    "fig4_sensitivity",
    "fig5_robustness_mnist",
    "fig6_confidence",
    "fig7_multistep_accuracy",
    "fig8_multistep_robustness_mnist",
    "gradient_masking",
    "budget_success",
]


def _role(stage: int, stages: int) -> str:
    if stage == 1:
        return "teacher"
    if stage == stages:
        return "student"
    return "assistant" if stages == 3 else f"step-{stage}"


def synthetic_results(datasets=("mnist",), chain_length_column=False) -> pd.DataFrame:
    """Every metric column for a 3-model sweep and a 7-model chain at other temperatures."""
    rng = np.random.default_rng(0)
    chains = [(3, SWEEP_TEMPERATURES), (7, CHAIN_TEMPERATURES)]
    rows = []
    for dataset in datasets:
        for stages, temperatures in chains:
            for temperature in temperatures:
                for stage in range(1, stages + 1):
                    row = {"dataset": dataset, "temperature": temperature, "stage": stage}
                    row["role"] = _role(stage, stages)
                    row.update({c: rng.uniform(0.1, 1.0) for c in schema.METRIC_COLUMNS})
                    row.update({f"{p}_attacked": IMAGES for p in PER_IMAGE_ATTACKS})
                    rows.append(row | ({"stages": stages} if chain_length_column else {}))
    return pd.DataFrame(rows)


def synthetic_per_image(results: pd.DataFrame, shift: float = 0.1) -> pd.DataFrame:
    """IMAGES images per model and attack; later stages need `shift` more, plus noise.

    Image 0 is misclassified by every model (not attacked), image 1 is never fooled.
    """
    rng = np.random.default_rng(1)
    base = rng.uniform(1.0, 2.0, IMAGES)
    stages = tables.chain_length(results)
    rows = []
    for (_, model), chain in zip(results.iterrows(), stages, strict=True):
        for attack in PER_IMAGE_ATTACKS:
            noise = rng.normal(0.0, 0.02, IMAGES)
            for image in range(IMAGES):
                correct, success = image != 0, image > 1
                distance = base[image] + shift * model["stage"] + noise[image]
                rows.append(
                    {c: model[c] for c in ("dataset", "temperature", "stage", "role")}
                    | {"stages": chain, "attack": attack, "image": image, "correct": correct}
                    | {"success": success, "distance": distance if success else np.nan}
                    | {"const": np.nan}
                )
    return pd.DataFrame(rows, columns=list(schema.PER_IMAGE_COLUMNS))


def consistent(results: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """`results` with the means and success rates its per-image table gives."""
    fooled = per_image[per_image["success"]]
    keys = ["dataset", "stages", "temperature", "stage"]
    out = results.assign(stages=tables.chain_length(results))
    for attack, rows in fooled.groupby("attack"):
        stats = rows.groupby(keys)["distance"].agg(["mean", "size"]).reset_index()
        merged = out[keys].merge(stats, how="left", on=keys)
        out[f"{attack}_mean"] = merged["mean"].to_numpy()
        out[f"{attack}_success_rate"] = merged["size"].to_numpy() / IMAGES
    return out


def _stems(paths):
    return sorted({p.name for p in paths})


def _expected(stems_per_format):
    return sorted(f"{s}.{fmt}" for s in stems_per_format for fmt in ("png", "pdf"))


def test_draw_all_writes_every_figure_as_png_and_pdf(tmp_path, caplog):
    df = synthetic_results()
    with caplog.at_level("WARNING", logger=LOGGER):
        paths = catalog.draw_all(df, tmp_path / "figures", caption="synthetic test data")
    expected = _expected(ALL_FIGURES)
    assert _stems(paths) == expected
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == expected
    assert all(p.stat().st_size > 1000 for p in paths)
    skipped = catalog.skipped_figures(df)
    assert list(skipped) == ["paired_differences"] and "per-image" in skipped["paired_differences"]
    assert "skipping figure paired_differences: no per-image data" in caplog.text


def test_draw_all_with_per_image_data_adds_paired_differences(tmp_path, caplog):
    per_image = synthetic_per_image(synthetic_results())
    df = consistent(synthetic_results(), per_image)
    with caplog.at_level("WARNING", logger=LOGGER):
        paths = catalog.draw_all(df, tmp_path, per_image=per_image, ci_level=0.9)
    assert _stems(paths) == _expected([*ALL_FIGURES, "paired_differences"])
    assert catalog.skipped_figures(df, per_image) == {}
    assert caplog.text == ""


def test_per_image_means_that_differ_from_the_results_are_reported(caplog):
    df = synthetic_results()  # random means, unrelated to the per-image distances
    with caplog.at_level("WARNING", logger=LOGGER):
        catalog.build_figures(df, per_image=synthetic_per_image(df))
    assert "l2_mean: the per-image mean differs from results.csv" in caplog.text


@pytest.mark.parametrize(
    "datasets, with_per_image", [(("mnist", "cifar10"), True), (("other",), False)]
)
def test_no_figure_clips_its_text(datasets, with_per_image, clipped):
    df = synthetic_results(datasets=datasets)
    per_image = synthetic_per_image(df) if with_per_image else None
    df = consistent(df, per_image) if with_per_image else df
    caption = "a long caption, e.g. the command and the settings of the run " * 4
    built = catalog.build_figures(df, caption=caption, per_image=per_image)
    assert ("paired_differences" in built) == with_per_image
    for stem, fig in built.items():
        assert clipped(fig) == [], stem


def test_the_clipping_check_sees_clipped_text(clipped):
    fig = matplotlib.figure.Figure(figsize=(3, 2))
    fig.subplots().set_title("a title far too long for a figure three inches wide, clipped")
    assert clipped(fig) and "axes 0 title" in clipped(fig)[0]


def _texts(fig) -> str:
    """The footnote, every legend label and every annotation of `fig`, as one string."""
    labels = [fig._supxlabel.get_text()]
    for ax in fig.axes:
        labels += [t.get_text() for t in ax.texts]
        if ax.get_legend():
            labels += [t.get_text() for t in ax.get_legend().get_texts()]
    return "\n".join(labels)


def test_every_figure_says_what_a_point_rests_on():
    per_image = synthetic_per_image(synthetic_results())
    df = consistent(synthetic_results(), per_image)
    for stem, fig in catalog.build_figures(df, per_image=per_image).items():
        text = _texts(fig)
        assert re.search(r"\bn ?= ?\d", text) or "test images" in text, stem


def test_mean_perturbations_carry_intervals_from_per_image_data():
    per_image = synthetic_per_image(synthetic_results())
    df = consistent(synthetic_results(), per_image)
    figure = catalog.build_figures(df, per_image=per_image)["fig5_robustness_mnist"]
    mean_l2 = figure.axes[1]  # row 0: means of l0, l2, linf
    bars = [c for c in mean_l2.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3  # teacher, assistant, student
    fooled = IMAGES - 2
    assert all(f"n = {fooled}" in t.get_text() for t in mean_l2.get_legend().get_texts())
    intervals = statistics.perturbation_intervals(per_image)
    assert set(intervals["n"]) == {fooled}
    assert (intervals["low"] < intervals["estimate"]).all()
    assert (intervals["estimate"] < intervals["high"]).all()
    no_bars = catalog.build_figures(df)["fig5_robustness_mnist"].axes[1]
    assert not [c for c in no_bars.containers if isinstance(c, ErrorbarContainer)]


def test_n_falls_back_to_the_results_where_per_image_data_lack_a_model(caplog):
    per_image = synthetic_per_image(synthetic_results())
    per_image = per_image[per_image["temperature"] == SWEEP_TEMPERATURES[0]]
    df = synthetic_results().assign(l2_success_rate=0.5)  # 4 of the 8 attacked images
    figure = catalog.build_figures(df, per_image=per_image)["fig5_robustness_mnist"]
    labels = [t.get_text() for t in figure.axes[1].get_legend().get_texts()]
    assert labels == [f"{role} (n = 4–{IMAGES - 2})" for role in tables.ROLES]
    bars = [c for c in figure.axes[1].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3


def test_paired_differences_pair_images_fooled_under_both_models():
    df = synthetic_results()
    per_image = synthetic_per_image(df, shift=0.1)
    # The assistant at T = 1 misclassifies image 2 under L2: one pair fewer with it.
    lost = (
        (per_image["temperature"] == 1.0)
        & (per_image["role"] == "assistant")
        & (per_image["attack"] == "l2")
        & (per_image["image"] == 2)
    )
    per_image.loc[lost, ["correct", "success", "distance"]] = [False, False, np.nan]
    table = statistics.paired_differences(per_image)
    assert set(table["attack"]) == set(schema.ATTACKS)  # not the softmax attack
    assert set(table["temperature"]) == set(SWEEP_TEMPERATURES)  # three-model chains only
    assert set(table["comparison"]) == {"student - assistant", "assistant - teacher"}
    np.testing.assert_allclose(table["estimate"], 0.1, atol=0.05)
    enough = table["n"] >= MIN_IMAGES
    assert (table.loc[enough, "low"] > 0).all()  # a real shift, detected
    assert table.loc[~enough, ["low", "high"]].isna().all().all()  # 5 pairs: no interval
    t1_l2 = table[(table["temperature"] == 1.0) & (table["attack"] == "l2")]
    assert sorted(t1_l2["n"]) == [IMAGES - 3, IMAGES - 3]
    assert set(table["n"]) == {IMAGES - 3, IMAGES - 2}


def test_paired_differences_figure_draws_bars_zero_line_and_n():
    per_image = synthetic_per_image(synthetic_results())
    fig = catalog.build_figures(consistent(synthetic_results(), per_image), per_image=per_image)[
        "paired_differences"
    ]
    assert len(fig.axes) == len(schema.ATTACKS)
    ax = fig.axes[1]
    assert len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) == 2
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in ax.get_lines())
    annotations = [t.get_text() for t in ax.texts]
    assert annotations.count(f"n={IMAGES - 2}") == 2 * len(SWEEP_TEMPERATURES)


def test_equal_series_stay_visible():
    df = synthetic_results().assign(l2_success_rate=1.0)
    ax = matplotlib.figure.Figure().subplots()
    panels.plot_success_rate(ax, df, "mnist", "l2")
    lines = ax.get_lines()
    assert len({tuple(line.get_xdata()) for line in lines}) == 3  # shifted sideways
    assert len({line.get_marker() for line in lines}) == 3
    assert len({str(line.get_linestyle()) for line in lines}) == 3


@pytest.mark.parametrize(
    "change, match",
    [
        ({"per_image": pd.DataFrame({"image": [0]})}, "per-image data lack"),
        ({"ci_level": 1.5}, "ci_level must be in"),
    ],
)
def test_build_figures_rejects_bad_per_image_data_or_ci_level(change, match):
    with pytest.raises(ValueError, match=match):
        catalog.build_figures(synthetic_results(), **change)


def test_draw_all_skips_figures_without_data_and_reports_them(tmp_path, caplog):
    df = synthetic_results(datasets=("mnist", "cifar10"))
    df = df[df["stage"] <= 3]  # no multi-step chain left
    df = df[[*schema.KEY_COLUMNS, schema.ROLE_COLUMN] + ["test_accuracy", "confidence", "l2_mean"]]
    df = df.assign(l2_mean=np.where(df["dataset"] == "mnist", np.nan, df["l2_mean"]))
    with caplog.at_level("WARNING", logger=LOGGER):
        paths = catalog.draw_all(df, tmp_path)
    assert _stems(paths) == _expected(
        ["fig3_accuracy", "fig5_robustness_cifar10", "fig6_confidence"]
    )
    skipped = catalog.skipped_figures(df)
    assert set(skipped) == {
        "paired_differences",
        "fig4_sensitivity",
        "fig7_multistep_accuracy",
        "fig8_multistep_robustness",
        "gradient_masking",
        "budget_success",
    }
    assert "skipping figure fig4_sensitivity" in caplog.text


def test_chains_are_split_by_length_with_or_without_a_stages_column():
    for with_column in (False, True):
        df = synthetic_results(chain_length_column=with_column)
        sweep, chain = panels.three_stage(df), panels.multistep(df)
        assert set(sweep["temperature"]) == set(SWEEP_TEMPERATURES)
        assert set(sweep["_line"]) == {"teacher", "assistant", "student"}
        assert set(chain["temperature"]) == set(CHAIN_TEMPERATURES)
        assert len(chain) == 7 * len(CHAIN_TEMPERATURES)
        assert "student (stage 7)" in set(chain["_line"])


def test_plot_functions_draw_the_data_they_are_given():
    df = synthetic_results()
    ax = matplotlib.figure.Figure().subplots()
    panels.plot_accuracy(ax, df, "mnist")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["teacher", "assistant", "student"]
    assert lines["teacher"].get_linestyle() == "--"
    assert lines["teacher"].get_xdata()[0] < 1.0 < lines["student"].get_xdata()[0]  # dodged
    student = df[(df["role"] == "student") & (df["stage"] == 3)].sort_values("temperature")
    np.testing.assert_allclose(lines["student"].get_ydata(), 100 * student["test_accuracy"])
    np.testing.assert_allclose(lines["student"].get_xdata(), SWEEP_TEMPERATURES, rtol=0.1)
    assert "accuracy" in ax.get_ylabel() and ax.get_xlabel().startswith("distillation temperature")


def test_multistep_average_is_the_mean_over_temperatures():
    df = synthetic_results()
    ax = matplotlib.figure.Figure().subplots()
    panels.plot_multistep_average(ax, df, "mnist", "l2")
    heights = [bar.get_height() for bar in ax.patches]
    chain = df[df["temperature"].isin(CHAIN_TEMPERATURES)]
    expected = chain.groupby("stage")["l2_mean"].mean().sort_index()
    np.testing.assert_allclose(heights, expected.to_numpy())


@pytest.mark.parametrize(
    "frame, match",
    [
        (pd.DataFrame({"a": [1]}), "key columns"),
        (pd.DataFrame(columns=[*schema.KEY_COLUMNS, schema.ROLE_COLUMN]), "no rows"),
    ],
)
def test_draw_all_rejects_foreign_or_empty_tables(tmp_path, frame, match):
    with pytest.raises(ValueError, match=match):
        catalog.draw_all(frame, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_read_results_keeps_chains_of_separate_files_apart(tmp_path):
    df = synthetic_results()
    # A three-stage chain at a temperature the seven-stage chain also has.
    sweep = df[df["temperature"] == SWEEP_TEMPERATURES[0]].assign(temperature=CHAIN_TEMPERATURES[1])
    chain = df[df["temperature"].isin(CHAIN_TEMPERATURES)]
    sweep.to_csv(tmp_path / "sweep.csv", index=False)
    chain.to_csv(tmp_path / "chain.csv", index=False)
    both = tables.read_results([tmp_path / "sweep.csv", tmp_path / "chain.csv"])
    assert len(both) == len(sweep) + len(chain)
    assert len(panels.three_stage(both)) == len(sweep)
    assert len(panels.multistep(both)) == len(chain)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        tables.read_results(tmp_path / "missing.csv")
