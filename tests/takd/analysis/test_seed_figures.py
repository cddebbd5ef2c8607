"""Tests of keras_takd.takd.analysis.figures on results and per-image tables of several seeds
(independently trained chains, issue 25): per-seed means, the mean over seeds with its
t-interval, and the `seed_level_differences` figure."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from scipy import stats

from keras_takd.takd import schema
from keras_takd.takd.analysis import replicates
from keras_takd.takd.analysis.figures import catalog, panels

TEMPERATURES = (1.0, 40.0)
ROLES = ("teacher", "assistant", "student")
IMAGES = 12
ATTACK = "fmn_l2"
LOGGER = "keras_takd.takd.analysis.figures.catalog"
STEP = 0.05
SEED_NOTE = "mean over 4 seeds, 95% t-interval over seeds; dots: each seed"


def chain_tables(
    seeds=(0, 1, 2, 3), stages=3, temperatures=TEMPERATURES, attack=ATTACK
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, per_image) of one `stages`-model chain per seed and T, `attack` on IMAGES images.

    Each seed shifts every distance of its models by its own amount, so a mean over the images
    of several seeds differs from every seed's own; results.csv holds each seed's own means.
    Each step after the teacher adds STEP (times 1 + seed / 10) to every image's distance.
    """
    rng = np.random.default_rng(7)
    base = rng.uniform(1.0, 2.0, IMAGES)
    roles = ROLES if stages == 3 else ("teacher", *(f"step-{k}" for k in range(2, stages + 1)))
    results, rows = [], []
    for seed in seeds:
        shift = 0.2 * seed
        for temperature in temperatures:
            for stage, role in enumerate(roles, start=1):
                model = {"dataset": "mnist", "temperature": temperature, "stage": stage}
                model |= {"seed": seed, "role": role, "stages": stages}
                distances = base + shift + STEP * (1 + seed / 10) * (stage - 1)
                distances = distances + rng.normal(0, 0.01, IMAGES)
                rows += [
                    model
                    | {"attack": attack, "image": image, "correct": True, "success": True}
                    | {"distance": distance}
                    for image, distance in enumerate(distances)
                ]
                results.append(
                    model
                    | {"test_accuracy": rng.uniform(0.97, 0.99), "metric_images": 1000}
                    | {"confidence": rng.uniform(0.8, 0.9), f"{attack}_mean": distances.mean()}
                    | {f"{attack}_max": distances.max(), f"{attack}_success_rate": 1.0}
                    | {f"{attack}_attacked": IMAGES}
                )
    per_image = pd.DataFrame(rows).reindex(columns=[*schema.PER_IMAGE_COLUMNS, "seed"])
    return pd.DataFrame(results), per_image


def long_chain_tables(seeds=(0, 1, 2), temperatures=(40.0,)):
    """`chain_tables` of one 5-model chain per seed and T (T = 40 alone by default)."""
    return chain_tables(seeds, stages=5, temperatures=temperatures)


def _seed_dots(ax):
    return [line for line in ax.get_lines() if line.get_label() == "_each seed"]


def test_per_image_means_are_matched_to_the_results_seed_by_seed(caplog):
    results, per_image = chain_tables()
    with caplog.at_level("WARNING", logger=LOGGER):
        catalog.build_figures(results, per_image=per_image)
    assert "differs from results.csv" not in caplog.text
    shifted = results.assign(fmn_l2_mean=results["fmn_l2_mean"] + 0.5)
    with caplog.at_level("WARNING", logger=LOGGER):
        catalog.build_figures(shifted, per_image=per_image)
    assert "fmn_l2_mean: the per-image mean differs from results.csv for 24 models" in caplog.text


def test_several_seeds_draw_the_mean_over_seeds_its_t_interval_and_each_seed():
    results, per_image = chain_tables()
    fig = catalog.build_figures(results, per_image=per_image)["fig5_robustness_mnist"]
    assert len(fig.axes) == 3  # FMN L2 alone: mean, max, success rate
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(ROLES) and len(_seed_dots(ax)) == len(ROLES)
    for role, container, dots in zip(ROLES, bars, _seed_dots(ax), strict=True):
        rows = results[results["role"] == role].sort_values(["temperature", "seed"])
        by_t = rows.groupby("temperature")["fmn_l2_mean"]
        np.testing.assert_allclose(container.lines[0].get_ydata(), by_t.mean(), rtol=1e-12)
        np.testing.assert_allclose(dots.get_ydata(), rows["fmn_l2_mean"], rtol=1e-12)
        for (_, values), segment in zip(by_t, container.lines[2][0].get_segments(), strict=True):
            sem = stats.sem(values)
            expected = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sem)
            np.testing.assert_allclose(segment[:, 1], expected, rtol=1e-9)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"{role} (4 seeds, n = {IMAGES} each)" for role in ROLES]
    assert SEED_NOTE in " ".join(fig.get_supxlabel().split())
    accuracy = catalog.build_figures(results)["fig3_accuracy"]
    assert SEED_NOTE in " ".join(accuracy.get_supxlabel().split())
    assert "Wilson" not in accuracy.get_supxlabel()  # its bars span the seeds, not images


def test_one_seed_draws_no_seed_dots_and_says_nothing_of_seeds():
    results, per_image = chain_tables(seeds=(0,))
    built = catalog.build_figures(results, per_image=per_image)
    ax = built["fig5_robustness_mnist"].axes[0]
    assert _seed_dots(ax) == []
    assert "seeds" not in built["fig5_robustness_mnist"].get_supxlabel()
    assert (
        "BCa bootstrap intervals over the images" in built["fig5_robustness_mnist"].get_supxlabel()
    )


def test_the_seed_level_figure_needs_two_seeds_and_says_so():
    results, per_image = chain_tables(seeds=(0,))
    assert catalog.SEED_LEVEL_FIGURE not in catalog.build_figures(results, per_image=per_image)
    reason = catalog.skipped_figures(results, per_image)[catalog.SEED_LEVEL_FIGURE]
    assert reason.startswith("the per-image data hold 1 seed: an interval over seeds needs 2")
    assert "no per-image data" in catalog.skipped_figures(results)[catalog.SEED_LEVEL_FIGURE]
    results, per_image = chain_tables(seeds=(0, 1))
    assert catalog.SEED_LEVEL_FIGURE not in catalog.skipped_figures(results, per_image)
    # 2 seeds, but each image fooled only on the teacher: no pair to draw, and it says why
    unfooled = per_image.assign(success=per_image["role"] == "teacher")
    assert catalog.SEED_LEVEL_FIGURE not in catalog.build_figures(results, per_image=unfooled)
    reason = catalog.skipped_figures(results, unfooled)[catalog.SEED_LEVEL_FIGURE]
    assert reason == (
        "no two models of a chain share an image both classify correctly and the attack "
        "fools, in any seed"
    )


def test_the_seed_level_figure_draws_the_seed_means_and_both_intervals(clipped):
    results, per_image = chain_tables()
    fig = catalog.build_figures(results, per_image=per_image)[catalog.SEED_LEVEL_FIGURE]
    table = replicates.seed_level_differences(per_image)
    comparisons = [f"{later} - {earlier}" for later, earlier in replicates.COMPARISONS]
    assert len(fig.axes) == len(comparisons)  # one attack, one row
    for ax, comparison in zip(fig.axes, comparisons, strict=True):
        rows = table[table["comparison"] == comparison].sort_values("temperature")
        assert ax.get_title().endswith("(n = 4 seeds)") and comparison in ax.get_title()
        (dots,) = [line for line in ax.get_lines() if line.get_label() == "each seed"]
        expected = [means[s] for means in rows["seed_means"] for s in sorted(means)]
        assert list(dots.get_ydata()) == expected
        (means,) = [line for line in ax.get_lines() if line.get_label() == "mean over seeds"]
        assert list(means.get_ydata()) == list(rows["estimate"])
        thick, thin = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        for container, bounds in ((thick, "t_"), (thin, "bootstrap_")):
            segments = container.lines[2][0].get_segments()
            expected = rows[[f"{bounds}low", f"{bounds}high"]].to_numpy()
            np.testing.assert_allclose([s[:, 1] for s in segments], expected)
        zero = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [list(line.get_ydata()) for line in zero] == [[0, 0]]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "each seed",
        "mean over seeds",
        "95% t-interval over seeds",
        "95% two-level bootstrap (seeds, then images)",
    ]
    assert clipped(fig) == []


def test_draw_all_writes_the_seed_level_figure_with_several_seeds(tmp_path):
    results, per_image = chain_tables(seeds=(0, 1))
    paths = catalog.draw_all(results, tmp_path, per_image=per_image)
    names = {p.name for p in paths}
    assert {"seed_level_differences.png", "seed_level_differences.pdf"} <= names
    results, per_image = chain_tables(seeds=(3,))
    paths = catalog.draw_all(results, tmp_path / "one", per_image=per_image)
    assert not any(p.stem == catalog.SEED_LEVEL_FIGURE for p in paths)


def test_a_log_panel_says_where_an_interval_over_seeds_reaches_below_zero(clipped):
    """Two seeds whose mean gradients differ 1,000-fold: the t-interval (1 degree of freedom)
    of the mean reaches below 0, where the log axis cannot go; the panel says so."""
    results, _ = chain_tables(seeds=(0, 1))
    spread = results.assign(sensitivity_logits_mean=np.where(results["seed"] == 0, 1e-3, 1e-6))

    def notes(results):
        figure = catalog.build_figures(results)["fig4_sensitivity"]
        assert clipped(figure) == []
        return [ax.get_title() for ax in figure.axes if note in ax.get_xlabel()]

    note = panels.NONPOSITIVE_NOTE
    assert notes(spread) == ["MNIST: mean gradient magnitude\n(gradient of the sum of logits)"]
    assert notes(results.assign(sensitivity_logits_mean=1e-3 * (1 + 0.01 * results["seed"]))) == []


@pytest.mark.parametrize("seeds", [(0, 1, 2), (5,)])
def test_no_seed_figure_clips_its_text(seeds, clipped):
    results, per_image = chain_tables(seeds=seeds)
    for stem, fig in catalog.build_figures(results, per_image=per_image).items():
        assert clipped(fig) == [], stem


def test_paired_differences_draw_each_seed_as_its_own_series():
    results, per_image = chain_tables(seeds=(0, 1), attack="l2")  # C&W: paired_differences
    fig = catalog.build_figures(results, per_image=per_image)["paired_differences"]
    (ax,) = fig.axes
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        f"{pair}, seed {seed}"
        for pair in ("student − assistant", "assistant − teacher")
        for seed in (0, 1)
    ]
    table = replicates.seed_level_differences(per_image)
    for container, (comparison, seed) in zip(
        bars,
        [(c, s) for c in ("student - assistant", "assistant - teacher") for s in (0, 1)],
        strict=True,
    ):
        rows = table[table["comparison"] == comparison].sort_values("temperature")
        expected = [means[seed] for means in rows["seed_means"]]
        np.testing.assert_allclose(container.lines[0].get_ydata(), expected, rtol=1e-12)


def test_the_step_figure_draws_each_step_against_the_teacher_over_seeds(clipped):
    results, per_image = long_chain_tables()
    fig = catalog.build_figures(results, per_image=per_image)[catalog.STEP_FIGURE]
    (ax,) = fig.axes
    table = replicates.step_trend(per_image)
    steps = table[table["step"] != "slope"]
    (means,) = [line for line in ax.get_lines() if line.get_label() == "mean over seeds"]
    assert list(means.get_xdata()) == [2, 3, 4, 5]
    np.testing.assert_allclose(means.get_ydata(), steps["estimate"])
    (dots,) = [line for line in ax.get_lines() if line.get_label() == "each seed"]
    expected = [values[s] for values in steps["seed_values"] for s in sorted(values)]
    assert list(dots.get_ydata()) == expected
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = bars.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in segments], steps[["low", "high"]].to_numpy())
    slope = table[table["step"] == "slope"].iloc[0]
    assert slope["estimate"] == pytest.approx(0.055, abs=0.002)  # STEP x mean of (1, 1.1, 1.2)
    assert f"slope {slope['estimate']:+.4f} [{slope['low']:+.4f}, {slope['high']:+.4f}]" in (
        ax.get_title()
    )
    assert "n = 3 seeds" in ax.get_title()
    assert clipped(fig) == []


def test_the_step_figure_has_a_column_per_temperature():
    results, per_image = long_chain_tables(temperatures=(20.0, 40.0))
    fig = catalog.build_figures(results, per_image=per_image)[catalog.STEP_FIGURE]
    assert [ax.get_title().splitlines()[0] for ax in fig.axes] == [
        "MNIST, FMN $L_2$: 5-model chains, T = 20",
        "MNIST, FMN $L_2$: 5-model chains, T = 40",
    ]


def test_fig8_draws_a_long_chain_measured_by_fmn_alone():
    results, per_image = long_chain_tables()
    built = catalog.build_figures(results, per_image=per_image)
    axes = built["fig8_multistep_robustness_mnist"].axes
    assert [ax.get_title() for ax in axes] == [
        "MNIST, FMN $L_2$: robustness per step",
        "MNIST, FMN $L_2$: averaged over T",
    ]
    skipped = catalog.skipped_figures(results, per_image)
    assert skipped[catalog.SEED_LEVEL_FIGURE] == (
        "it compares the models of chains of at most 3 models; the per-image data have none"
    )


def test_the_step_figure_needs_two_seeds_of_a_long_chain_and_says_so():
    results, per_image = long_chain_tables(seeds=(0,))
    assert catalog.STEP_FIGURE not in catalog.build_figures(results, per_image=per_image)
    reason = catalog.skipped_figures(results, per_image)[catalog.STEP_FIGURE]
    assert reason.startswith("the per-image data of each chain of more than 3 models hold 1 seed")
    assert "no per-image data" in catalog.skipped_figures(results)[catalog.STEP_FIGURE]
    results, per_image = long_chain_tables()
    only_teachers = per_image.assign(success=per_image["stage"] == 1)
    assert catalog.STEP_FIGURE not in catalog.build_figures(results, per_image=only_teachers)
    assert catalog.skipped_figures(results, only_teachers)[catalog.STEP_FIGURE] == (
        "no step of a chain of more than 3 models shares a fooled image with its teacher"
    )
    three, three_images = chain_tables()
    assert catalog.STEP_FIGURE not in catalog.skipped_figures(three, three_images)
    assert catalog.STEP_FIGURE not in catalog.build_figures(three, per_image=three_images)
