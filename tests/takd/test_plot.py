"""End-to-end tests of `python -m keras_takd.takd.plot`, as a subprocess into a temporary folder."""

import pathlib

import pandas as pd
import pytest

from keras_takd.takd import schema

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = "keras_takd.takd.plot"


def test_cli_writes_the_figures_its_columns_allow(cli, tmp_path):
    rows = [
        {"dataset": "mnist", "temperature": t, "stage": s, "role": r, "test_accuracy": a}
        for t in (1, 20)
        for s, r, a in ((1, "teacher", 0.99), (2, "assistant", 0.991), (3, "student", 0.992))
    ]
    results = pd.DataFrame(rows).assign(confidence=0.9, train_seconds=1.0)
    results.to_csv(tmp_path / "results.csv", index=False)
    done = cli(COMMAND, "--results=results.csv", "--out=figures", "--caption=toy run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == sorted(
        f"{stem}.{fmt}" for stem in ("fig3_accuracy", "fig6_confidence") for fmt in ("png", "pdf")
    )
    assert "wrote 4 files" in done.stdout and "fig4_sensitivity" in done.stdout


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "not found"),
        ("epoch,loss\n1,0.5\n", "key columns"),
        (",".join([*schema.KEY_COLUMNS, schema.ROLE_COLUMN]) + "\n", "no rows"),
        ("dataset,temperature,stage,role\nmnist,hot,1,teacher\n", "Unable to parse"),
    ],
)
def test_cli_fails_with_one_line_on_a_missing_or_foreign_csv(cli, tmp_path, content, problem):
    if content is not None:
        (tmp_path / "results.csv").write_text(content)
    done = cli(COMMAND, "--results=results.csv", "--out=figures", cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("keras-takd-plot: error:") and problem in lines[0]
    assert "results.csv" in lines[0]
    assert not (tmp_path / "figures").exists()
