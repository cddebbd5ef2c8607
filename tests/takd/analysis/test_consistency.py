"""Figures, claims and the summary report the same n and the same mean for the same comparison:
every number comes from one selection of images (`analysis.statistics`)."""

import json
import math
import re

import pandas as pd
import pytest

from keras_takd.core.statistics import MIN_IMAGES
from keras_takd.takd.analysis import statistics, summary
from keras_takd.takd.analysis.claims import report
from keras_takd.takd.analysis.figures import catalog

# The teacher at T = 1 misclassifies image 0; the student's attack at T = 1 fails on image 1;
# the assistant at T = 20 misclassifies image 2 and its attack fails on image 3.
MISCLASSIFIED = {(1.0, 1, 0), (20.0, 2, 2)}
UNFOOLED = {(1.0, 3, 1), (20.0, 2, 3)}


@pytest.fixture
def tables(chain_tables):
    return chain_tables(images=8, misclassified=MISCLASSIFIED, unfooled=UNFOOLED)


def test_model_means_and_n_agree_between_figures_and_summary(tables):
    _, per_image = tables
    intervals = statistics.perturbation_intervals(per_image)  # fig5's error bars
    table = summary.robustness_table(per_image, 0.95)
    assert len(intervals) == len(table) == 6
    for (_, model), (_, line) in zip(intervals.iterrows(), table.iterrows(), strict=True):
        assert line["model"].startswith(f"mnist T={model['temperature']:g} stage {model['stage']}")
        assert line["n"] == model["n"]
        assert line["mean distance [CI]"].startswith(f"{model['estimate']:.4g} [")
    counts = dict(zip(table["model"], table["n"], strict=True))
    assert counts["mnist T=1 stage 1 teacher"] == 7  # image 0 misclassified
    assert counts["mnist T=1 stage 3 student"] == 7  # image 1 not fooled
    assert counts["mnist T=20 stage 2 assistant"] == 6  # both


@pytest.mark.parametrize("temperature", [1.0, 20.0])
def test_paired_differences_agree_between_figures_and_claims(tables, temperature):
    results, per_image = tables
    figure = statistics.paired_differences(per_image)  # the paired_differences figure's data
    claims = {c.claim: c for c in report.check_claims(results, "mnist", per_image)}
    for later, earlier in statistics.PAIRS:
        point = figure[
            (figure["temperature"] == temperature)
            & (figure["comparison"] == f"{later} - {earlier}")
        ].iloc[0]
        claim = claims[
            f"C&W L2: the {later} is more robust than the {earlier} at T = {temperature:g}"
        ]
        assert claim.n == str(point["n"])
        assert float(claim.ours.split()[0]) == pytest.approx(point["estimate"], abs=5e-5)
        low, high = map(float, re.findall(r"[-+]\d+\.\d+", claim.interval))
        assert low == pytest.approx(point["low"], abs=5e-5)
        assert high == pytest.approx(point["high"], abs=5e-5)
    # image pairs: both models classify the image correctly and both attacks fool it
    t1 = figure[figure["temperature"] == 1.0].set_index("comparison")["n"]
    assert t1["student - assistant"] == 7 and t1["assistant - teacher"] == 7


def test_no_firm_verdict_rests_on_fewer_images_than_the_minimum(chain_tables):
    """Two images per model (hole 6): every claim that rests on them is inconclusive."""
    results, per_image = chain_tables(images=2, temperatures=(1.0, 20.0, 40.0))
    claims = report.check_claims(results, "mnist", per_image)
    counts = {c: [int(n) for n in c.n.split(",") if n.strip().isdigit()] for c in claims}
    thin = [claim for claim, n in counts.items() if n and max(n) < MIN_IMAGES]
    assert all(claim.verdict.startswith("inconclusive") for claim in thin), thin
    too_few = [claim for claim in thin if claim.verdict == "inconclusive (too few images)"]
    assert len(too_few) >= 6, thin  # the paired comparisons at each T and pooled, the trend


def _set(rows: pd.DataFrame, column: str, value) -> pd.DataFrame:
    """`rows` with `value` in `column` of row 3 (line 5 of the CSV: image 3 of the T = 1
    teacher, fooled)."""
    rows = rows.astype({column: object})
    rows.loc[3, column] = value
    return rows


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda rows: _set(rows, "distance", math.nan), "line 5, column distance: no finite"),
        (lambda rows: _set(rows, "success", "yes"), "line 5, column success: 'yes' is not a"),
        (
            lambda rows: pd.concat([rows, rows.iloc[[3]]]),
            "line 50, columns dataset, temperature, stage, stages, attack, image, target: the "
            "image of line 5",
        ),
    ],
)
def test_summary_claims_and_figures_refuse_the_same_bad_table_alike(
    tables, tmp_path, edit, problem
):
    """A NaN distance on a successful row, a duplicate row or a bad boolean stops every
    command with the same line: all read through `analysis.tables` (hole 7)."""
    results, per_image = tables
    results.assign(test_accuracy=0.99, eval_config="0123456789ab").to_csv(
        tmp_path / "results.csv", index=False
    )
    edit(per_image).to_csv(tmp_path / "per_image.csv", index=False)
    run = {"configuration": {"data": {"dataset": "mnist", "test_images": 8}}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    messages = []
    for command in (
        lambda: summary.summarize(tmp_path / "results.csv"),
        lambda: report.render([tmp_path / "results.csv"]),
        lambda: catalog.write_figures([tmp_path / "results.csv"], tmp_path / "figures"),
    ):
        with pytest.raises(ValueError) as caught:
            command()
        messages.append(str(caught.value))
    assert messages[0] == messages[1] == messages[2]
    assert messages[0].startswith(f"{tmp_path / 'per_image.csv'} {problem}")
    assert "\n" not in messages[0]
    assert not (tmp_path / "figures").exists()
