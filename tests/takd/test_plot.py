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
    assert "no per-image data" in done.stdout and "paired_differences" in done.stdout


def _chain_with_per_image(images: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Results and per-image rows of one three-model chain at T = 1 and 20, L2 only."""
    results, per_image = [], []
    for t in (1.0, 20.0):
        for s, r in ((1, "teacher"), (2, "assistant"), (3, "student")):
            key = {"dataset": "mnist", "temperature": t, "stage": s, "role": r, "stages": 3}
            distances = [1.0 + 0.1 * s + 0.01 * ((i * 7 + s) % 5) for i in range(images)]
            per_image += [
                key
                | {"attack": "l2", "image": i, "correct": True, "success": True}
                | {"distance": d, "const": 1.0}
                for i, d in enumerate(distances)
            ]
            summary = {"l2_mean": sum(distances) / images, "l2_max": max(distances)}
            results.append(
                key | summary | {"l2_success_rate": 1.0, "l2_attacked": images, "l2_excluded": 0}
            )
    per_image = pd.DataFrame(per_image, columns=list(schema.PER_IMAGE_COLUMNS))
    return pd.DataFrame(results), per_image


def _files(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _expected(*stems: str) -> list[str]:
    return sorted(f"{stem}.{fmt}" for stem in stems for fmt in ("png", "pdf"))


def test_cli_reads_the_per_image_csv_beside_the_results(cli, tmp_path):
    results, per_image = _chain_with_per_image()
    (tmp_path / "run").mkdir()
    results.to_csv(tmp_path / "run" / "results.csv", index=False)
    per_image.to_csv(tmp_path / "run" / "per_image.csv", index=False)
    done = cli(COMMAND, "--results=run/results.csv", "--out=figures", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "figures") == _expected("fig5_robustness_mnist", "paired_differences")
    assert "95% intervals from 1 per-image file(s): run/per_image.csv" in done.stdout


def test_cli_takes_per_image_csvs_and_a_confidence(cli, tmp_path):
    results, per_image = _chain_with_per_image()
    results.to_csv(tmp_path / "results.csv", index=False)
    per_image.to_csv(tmp_path / "images.csv", index=False)
    done = cli(
        COMMAND,
        "--results=results.csv",
        "--per_image=images.csv",
        "--confidence=0.9",
        "--out=figures",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "figures") == _expected("fig5_robustness_mnist", "paired_differences")
    assert "90% intervals" in done.stdout


@pytest.mark.parametrize(
    "flag, problem, code",
    [
        ("--confidence=1.5", "--confidence must be in (0, 1)", 2),
        ("--per_image=missing.csv", "per-image file 'missing.csv' not found", 1),
    ],
)
def test_cli_refuses_a_bad_confidence_or_per_image_file(cli, tmp_path, flag, problem, code):
    results, _ = _chain_with_per_image()
    results.to_csv(tmp_path / "results.csv", index=False)
    done = cli(COMMAND, "--results=results.csv", "--out=figures", flag, cwd=tmp_path)
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("keras-takd-plot: error:") and problem in lines[0]
    assert not (tmp_path / "figures").exists()


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
