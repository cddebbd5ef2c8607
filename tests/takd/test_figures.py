"""End-to-end tests of `python -m keras_takd.takd.figures`, as a subprocess into a temporary
folder."""

import pathlib

import pandas as pd
import pytest

from keras_takd.takd import schema

REPO = pathlib.Path(__file__).resolve().parents[2]
COMMAND = "keras_takd.takd.figures"


def test_cli_writes_the_figures_its_columns_allow(cli, tmp_path):
    rows = [
        {"dataset": "mnist", "temperature": t, "stage": s, "role": r, "test_accuracy": a}
        for t in (1, 20)
        for s, r, a in ((1, "teacher", 0.99), (2, "assistant", 0.991), (3, "student", 0.992))
    ]
    results = pd.DataFrame(rows).assign(confidence=0.9, train_seconds=1.0)
    results.to_csv(tmp_path / "results.csv", index=False)
    done = cli(
        COMMAND, "--results=results.csv", "--output_dir=figures", "--caption=toy run", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == sorted(
        f"{stem}.{fmt}" for stem in ("fig3_accuracy", "fig6_confidence") for fmt in ("png", "pdf")
    )
    assert "wrote 4 files" in done.stdout and "fig4_sensitivity" in done.stdout
    assert "no per-image data" in done.stdout and "paired_differences" in done.stdout


def _files(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _expected(*stems: str) -> list[str]:
    return sorted(f"{stem}.{fmt}" for stem in stems for fmt in ("png", "pdf"))


def test_cli_reads_the_per_image_csv_beside_the_results(cli, tmp_path, chain_tables):
    results, per_image = chain_tables()
    (tmp_path / "run").mkdir()
    results.to_csv(tmp_path / "run" / "results.csv", index=False)
    per_image.to_csv(tmp_path / "run" / "per_image.csv", index=False)
    done = cli(COMMAND, "--results=run/results.csv", "--output_dir=figures", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "figures") == _expected("fig5_robustness_mnist", "paired_differences")
    assert "95% intervals from 1 per-image file(s): run/per_image.csv" in done.stdout


def test_cli_takes_per_image_csvs_and_a_ci_level(cli, tmp_path, chain_tables):
    results, per_image = chain_tables()
    results.to_csv(tmp_path / "results.csv", index=False)
    per_image.to_csv(tmp_path / "images.csv", index=False)
    done = cli(
        COMMAND,
        "--results=results.csv",
        "--per_image=images.csv",
        "--ci_level=0.9",
        "--output_dir=figures",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "figures") == _expected("fig5_robustness_mnist", "paired_differences")
    assert "90% intervals" in done.stdout


@pytest.mark.parametrize(
    "flag, problem, code",
    [
        ("--ci_level=1.5", "--ci_level must be in (0, 1)", 2),
        ("--per_image=missing.csv", "per-image file 'missing.csv' not found", 1),
    ],
)
def test_cli_refuses_a_bad_ci_level_or_per_image_file(
    cli, tmp_path, chain_tables, flag, problem, code
):
    results, _ = chain_tables()
    results.to_csv(tmp_path / "results.csv", index=False)
    done = cli(COMMAND, "--results=results.csv", "--output_dir=figures", flag, cwd=tmp_path)
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("keras-takd-figures: error:") and problem in lines[0]
    assert not (tmp_path / "figures").exists()


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "not found"),
        ("epoch,loss\n1,0.5\n", "key columns"),
        (",".join([*schema.KEY_COLUMNS, schema.ROLE_COLUMN]) + "\n", "no rows"),
        (
            "dataset,temperature,stage,role\nmnist,hot,1,teacher\n",
            "results.csv line 2, column temperature: 'hot' is not a finite number > 0",
        ),
        (
            "dataset,temperature,stage,role\nmnist,1,1,teacher\nmnist,1,1,teacher\n",
            "results.csv line 3, columns dataset, temperature, stage, stages: the model of line 2",
        ),
    ],
)
def test_cli_fails_with_one_line_on_a_missing_or_foreign_csv(cli, tmp_path, content, problem):
    if content is not None:
        (tmp_path / "results.csv").write_text(content)
    done = cli(COMMAND, "--results=results.csv", "--output_dir=figures", cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("keras-takd-figures: error:") and problem in lines[0]
    assert "results.csv" in lines[0]
    assert not (tmp_path / "figures").exists()


def test_cli_finds_the_per_image_table_of_a_renamed_results_csv(cli, tmp_path, chain_tables):
    """One rule for where a per-image table lives: <name>.csv -> <name>_per_image.csv."""
    results, per_image = chain_tables()
    results.to_csv(tmp_path / "sweep.csv", index=False)
    per_image.to_csv(tmp_path / "sweep_per_image.csv", index=False)
    done = cli(COMMAND, "--results=sweep.csv", "--output_dir=figures", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "from 1 per-image file(s): sweep_per_image.csv" in done.stdout
    assert "paired_differences" in _files(tmp_path / "figures")[-1]
