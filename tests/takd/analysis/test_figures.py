"""Tests of keras_takd.takd.analysis.figures (and the statistics it draws) on small synthetic
results and per-image tables."""

import pathlib
import re

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from scipy import stats

from keras_takd.core.statistics import MIN_IMAGES
from keras_takd.takd import schema
from keras_takd.takd.analysis import statistics, tables
from keras_takd.takd.analysis.figures import catalog, panels

REPO = pathlib.Path(__file__).resolve().parents[3]
SWEEP_TEMPERATURES = (1.0, 10.0, 40.0)
CHAIN_TEMPERATURES = (5.0, 20.0)
IMAGES = 8
METRIC_IMAGES = 100
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
                    row["metric_images"] = METRIC_IMAGES
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
    assert list(skipped) == ["paired_differences", "seed_level_differences", "step_trend"]
    assert all("no per-image data" in reason for reason in skipped.values())
    assert "skipping figure paired_differences: no per-image data" in caplog.text


def test_draw_all_with_per_image_data_adds_paired_differences(tmp_path, caplog):
    per_image = synthetic_per_image(synthetic_results())
    df = consistent(synthetic_results(), per_image)
    with caplog.at_level("WARNING", logger=LOGGER):
        paths = catalog.draw_all(df, tmp_path, per_image=per_image, ci_level=0.9)
    assert _stems(paths) == _expected([*ALL_FIGURES, "paired_differences"])
    skipped = catalog.skipped_figures(df, per_image)
    assert list(skipped) == ["seed_level_differences", "step_trend"]  # one seed
    assert skipped["seed_level_differences"].startswith("the per-image data hold 1 seed")
    assert skipped["step_trend"].startswith("the per-image data of each chain of more than 3")
    assert caplog.text.count("WARNING") == 2 and "skipping figure seed_level_" in caplog.text


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
        "seed_level_differences",
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
    roles = ["teacher", "assistant", "student"]
    assert list(lines) == [f"{role} (n = {METRIC_IMAGES})" for role in roles]
    lines = dict(zip(roles, lines.values(), strict=True))
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


def _one_temperature(df: pd.DataFrame, temperature: float = SWEEP_TEMPERATURES[0]):
    return df[(df["temperature"] == temperature) & (df["stage"] <= 3)]


def _assert_points_sit_in_their_temperature_band(ax, temperatures) -> None:
    """Ticks only at the real temperatures, every point inside the grey band of its nearest
    one, the bands far narrower than the gaps, and an axis of at least a decade."""
    assert list(ax.get_xticks()) == pytest.approx(sorted(temperatures))
    bands = (
        [patch.get_x() for patch in ax.patches],
        [patch.get_x() + patch.get_width() for patch in ax.patches],
    )
    assert len(bands[0]) == len(temperatures)
    xs = np.concatenate([line.get_xdata() for line in ax.get_lines() if len(line.get_xdata())])
    assert len(xs) > 0
    for x in xs:
        nearest = min(temperatures, key=lambda t: abs(np.log10(x / t)))
        inside = [low <= x <= high for low, high in zip(*bands, strict=True)]
        assert sum(inside) == 1 and bands[0][inside.index(True)] < nearest
        assert abs(np.log10(x / nearest)) < 0.1  # the shift is a tenth of a decade at most
    low, high = ax.get_xlim()
    assert np.log10(high / low) >= 1.0


@pytest.mark.parametrize("plot", ["accuracy", "gradient_masking"])
def test_a_one_temperature_run_keeps_every_role_at_its_temperature(plot):
    df = _one_temperature(synthetic_results())
    ax = matplotlib.figure.Figure().subplots()
    if plot == "accuracy":
        panels.plot_accuracy(ax, df, "mnist")
    else:
        panels.plot_gradient_masking(ax, df, "mnist")
    _assert_points_sit_in_their_temperature_band(ax, [SWEEP_TEMPERATURES[0]])


def test_the_committed_sweep_keeps_every_role_at_its_temperature():
    df = tables.read_results(REPO / "figures" / "decisive" / "results.csv")
    for plot in (panels.plot_accuracy, panels.plot_confidence):
        ax = matplotlib.figure.Figure().subplots()
        plot(ax, df, "mnist")
        _assert_points_sit_in_their_temperature_band(ax, sorted(set(df["temperature"])))


def test_gradient_masking_tells_logits_from_softmax_on_single_points():
    df = _one_temperature(synthetic_results())
    ax = matplotlib.figure.Figure().subplots()
    panels.plot_gradient_masking(ax, df, "mnist")
    lines = [line for line in ax.get_lines() if len(line.get_xdata())]
    assert len(lines) == 6
    filled = {str(line.get_markerfacecolor()) for line in lines[:3]}
    assert "none" not in filled
    assert all(line.get_markerfacecolor() == "none" for line in lines[3:])
    handles = ax.get_legend().legend_handles
    softmax = [h for h in handles if "softmax" in h.get_label()]
    assert len(softmax) == 3 and all(h.get_markerfacecolor() == "none" for h in softmax)
    assert all(h.get_markerfacecolor() != "none" for h in handles if h not in softmax)


def _panel_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


def test_a_norm_that_fooled_no_image_says_so_and_an_absent_one_is_not_measured():
    df = _one_temperature(synthetic_results()).assign(
        l0_mean=np.nan, l0_max=np.nan, l0_success_rate=0.0, l0_attacked=2
    )
    fig = catalog.build_figures(df.drop(columns=["linf_mean", "linf_max"]))["fig5_robustness_mnist"]
    axes = fig.axes
    assert _panel_texts(axes[0])[0].startswith("0 of 2 fooled")  # l0 mean
    assert _panel_texts(axes[3])[0].startswith("0 of 2 fooled")  # l0 max
    assert _panel_texts(axes[1]) == []  # l2 mean drawn
    assert _panel_texts(axes[2]) == _panel_texts(axes[5]) == ["not measured"]  # linf


@pytest.mark.parametrize("ci_level", [0.95, 0.8])
def test_accuracy_carries_binomial_intervals_over_metric_images(ci_level):
    df = _one_temperature(synthetic_results())
    df = df.assign(test_accuracy=[0.193, 0.195, 0.198], metric_images=1000)
    fig = catalog.build_figures(df, ci_level=ci_level)["fig3_accuracy"]
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3
    for container, accuracy in zip(bars, df["test_accuracy"], strict=True):
        ci = stats.binomtest(round(accuracy * 1000), 1000).proportion_ci(ci_level, "wilson")
        segment = container.lines[2][0].get_segments()[0]
        np.testing.assert_allclose(segment[:, 1], [100 * ci.low, 100 * ci.high], rtol=1e-9)
    low, high = ax.get_ylim()
    assert high - low >= panels.ACCURACY_MIN_SPAN
    assert all(label.endswith("(n = 1000)") for label in ax.get_legend_handles_labels()[1])
    footnote = " ".join(fig.get_supxlabel().split())  # unwrapped
    assert f"{100 * ci_level:g}% Wilson intervals" in footnote
    assert f"at least {panels.ACCURACY_MIN_SPAN:g} percentage points" in footnote
    assert "metric_images" in footnote and "not in results.csv" not in footnote


def test_accuracy_without_metric_images_says_the_count_is_missing():
    df = _one_temperature(synthetic_results()).drop(columns="metric_images")
    fig = catalog.build_figures(df)["fig3_accuracy"]
    assert not [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    footnote = " ".join(fig.get_supxlabel().split())  # unwrapped
    assert "no metric_images column" in footnote and "No error bars" in footnote


def test_a_figure_that_needs_a_longer_chain_says_so(tmp_path):
    df = synthetic_results()
    three = df[df["stage"] <= 3]
    three = three[three["temperature"].isin(SWEEP_TEMPERATURES)]
    skipped = catalog.skipped_figures(three)
    for name in ("fig7_multistep_accuracy", "fig8_multistep_robustness"):
        assert "a chain of more than 3 models" in skipped[name], skipped[name]
        assert "test_accuracy" not in skipped[name]
    chain = df[df["temperature"].isin(CHAIN_TEMPERATURES)]
    skipped = catalog.skipped_figures(chain)
    assert "a chain of at most 3 models" in skipped["fig3_accuracy"]
    three.drop(columns="confidence").to_csv(tmp_path / "results.csv", index=False)
    message = catalog.write_figures([tmp_path / "results.csv"], tmp_path / "figures")
    assert "skipped fig7_multistep_accuracy: it needs a chain of more than 3 models" in message
    assert "skipped fig6_confidence: the results have none of the columns confidence" in message


def test_an_empty_gradient_masking_panel_names_each_attack_when_they_differ():
    df = _one_temperature(synthetic_results()).assign(
        l2_mean=np.nan, l2_success_rate=0.0, l2_attacked=2
    )
    ax = matplotlib.figure.Figure().subplots()
    panels.plot_gradient_masking(ax, df.drop(columns="l2_softmax_T_mean"), "mnist")
    (text,) = _panel_texts(ax)
    assert "logits: 0 of 2 fooled" in text and "softmax(logits / T): not measured" in text
    ax = matplotlib.figure.Figure().subplots()
    both = df.assign(l2_softmax_T_mean=np.nan, l2_softmax_T_success_rate=0.0)
    panels.plot_gradient_masking(ax, both.assign(l2_softmax_T_attacked=2), "mnist")
    assert _panel_texts(ax) == ["0 of 2 fooled\n(images attacked per model)"]  # said once
