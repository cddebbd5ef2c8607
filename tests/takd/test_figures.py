"""Tests of keras_takd.takd.figures on small synthetic results tables."""

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

from keras_takd.takd import figures as plotting
from keras_takd.takd import schema

SWEEP_TEMPERATURES = (1.0, 10.0, 40.0)
CHAIN_TEMPERATURES = (5.0, 20.0)


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
                    row["role"] = (
                        "teacher"
                        if stage == 1
                        else "student"
                        if stage == stages
                        else ("assistant" if stages == 3 else f"step-{stage}")
                    )
                    row.update({c: rng.uniform(0.1, 1.0) for c in schema.METRIC_COLUMNS})
                    rows.append(row | ({"stages": stages} if chain_length_column else {}))
    return pd.DataFrame(rows)


def _stems(paths):
    return sorted({p.name for p in paths})


def _expected(stems_per_format):
    return sorted(f"{s}.{fmt}" for s in stems_per_format for fmt in ("png", "pdf"))


def test_draw_all_writes_every_figure_as_png_and_pdf(tmp_path):
    df = synthetic_results()
    paths = plotting.draw_all(df, tmp_path / "figures", caption="synthetic test data")
    expected = _expected(
        [
            "fig3_accuracy",
            "fig4_sensitivity",
            "fig5_robustness_mnist",
            "fig6_confidence",
            "fig7_multistep_accuracy",
            "fig8_multistep_robustness_mnist",
            "gradient_masking",
            "budget_success",
        ]
    )
    assert _stems(paths) == expected
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == expected
    assert all(p.stat().st_size > 1000 for p in paths)
    assert plotting.skipped_figures(df) == {}


def test_draw_all_skips_figures_without_data_and_reports_them(tmp_path, caplog):
    df = synthetic_results(datasets=("mnist", "cifar10"))
    df = df[df["stage"] <= 3]  # no multi-step chain left
    df = df[[*schema.KEY_COLUMNS, schema.ROLE_COLUMN] + ["test_accuracy", "confidence", "l2_mean"]]
    df = df.assign(l2_mean=np.where(df["dataset"] == "mnist", np.nan, df["l2_mean"]))
    with caplog.at_level("WARNING", logger="keras_takd.takd.figures"):
        paths = plotting.draw_all(df, tmp_path)
    assert _stems(paths) == _expected(
        ["fig3_accuracy", "fig5_robustness_cifar10", "fig6_confidence"]
    )
    skipped = plotting.skipped_figures(df)
    assert set(skipped) == {
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
        sweep, chain = plotting._three_stage(df), plotting._multistep(df)
        assert set(sweep["temperature"]) == set(SWEEP_TEMPERATURES)
        assert set(sweep["_line"]) == {"teacher", "assistant", "student"}
        assert set(chain["temperature"]) == set(CHAIN_TEMPERATURES)
        assert len(chain) == 7 * len(CHAIN_TEMPERATURES)
        assert "student (stage 7)" in set(chain["_line"])


def test_plot_functions_draw_the_data_they_are_given():
    df = synthetic_results()
    ax = matplotlib.figure.Figure().subplots()
    plotting.plot_accuracy(ax, df, "mnist")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["teacher", "assistant", "student"]
    assert lines["teacher"].get_linestyle() == "--"
    student = df[(df["role"] == "student") & (df["stage"] == 3)].sort_values("temperature")
    np.testing.assert_allclose(lines["student"].get_ydata(), 100 * student["test_accuracy"])
    np.testing.assert_allclose(lines["student"].get_xdata(), SWEEP_TEMPERATURES)
    assert "accuracy" in ax.get_ylabel() and ax.get_xlabel().startswith("distillation temperature")


def test_multistep_average_is_the_mean_over_temperatures():
    df = synthetic_results()
    ax = matplotlib.figure.Figure().subplots()
    plotting.plot_multistep_average(ax, df, "mnist", "l2")
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
        plotting.draw_all(frame, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_read_results_keeps_chains_of_separate_files_apart(tmp_path):
    df = synthetic_results()
    # A three-stage chain at a temperature the seven-stage chain also has.
    sweep = df[df["temperature"] == SWEEP_TEMPERATURES[0]].assign(temperature=CHAIN_TEMPERATURES[1])
    chain = df[df["temperature"].isin(CHAIN_TEMPERATURES)]
    sweep.to_csv(tmp_path / "sweep.csv", index=False)
    chain.to_csv(tmp_path / "chain.csv", index=False)
    both = plotting.read_results([tmp_path / "sweep.csv", tmp_path / "chain.csv"])
    assert len(both) == len(sweep) + len(chain)
    assert len(plotting._three_stage(both)) == len(sweep)
    assert len(plotting._multistep(both)) == len(chain)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plotting.read_results(tmp_path / "missing.csv")
