"""End-to-end tests of `python -m keras_takd.takd.claims` (and of what the text commands
import), as subprocesses in a temporary folder."""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from keras_takd.takd.analysis.replicates import seeds_needed

COMMAND = "keras_takd.takd.claims"
REPO = pathlib.Path(__file__).resolve().parents[2]


def test_cli_reads_the_per_image_table_beside_the_results(cli, tmp_path, chain_tables):
    results, per_image = chain_tables(temperatures=(1.0, 20.0, 40.0))
    results.to_csv(tmp_path / "results.csv", index=False)
    output = tmp_path / "figures" / "claims.md"
    without = cli(COMMAND, "--results=results.csv", cwd=tmp_path)
    assert without.returncode == 0, without.stderr
    assert "Per-image data: none" in without.stdout
    per_image.to_csv(tmp_path / "per_image.csv", index=False)
    done = cli(
        COMMAND,
        "--results=results.csv",
        f"--output={output}",
        "--ci_level=0.9",
        "--caption=toy chain",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert output.read_text() == done.stdout
    assert done.stdout.startswith("# Our results beside the papers' claims\n\ntoy chain\n\n")
    assert "| source | claim | paper | ours | 90% CI | n | test | verdict |" in done.stdout
    assert "Per-image data: per_image.csv" in done.stdout
    claim = "| Mandal & Guo | C&W L2: the student is more robust than the assistant at T = 40 [q"
    assert claim in done.stdout
    # each claim marks the paper's sentence it rests on, quoted once below the table
    assert "\nThe papers' words:\n\n- [q1] Mandal & Guo, V-A: \"" in done.stdout
    # the numbers behind the claims: a row per chain length, T and stage
    assert "| chain | T | stage | role | L2 mean |" in done.stdout
    assert "| 3 | 40 | 3 | student | 1.320 |" in done.stdout


@pytest.mark.parametrize(
    "flags, problem, code",
    [
        (["--results=none.csv"], "results file 'none.csv' not found", 1),
        (["--results=results.csv", "--ci_level=1.5"], "--ci_level must be in (0, 1)", 2),
        (["--results=results.csv", "--output=results.csv"], "is one of the input tables", 1),
        (
            ["--results=results.csv", "--per_image=images.csv", "--output=images.csv"],
            "is one of the input tables",
            1,
        ),
        (["--results=results.csv,./results.csv"], "results file results.csv is given twice", 1),
        (
            ["--results=results.csv", "--per_image=images.csv,images.csv"],
            "per-image file images.csv is given twice",
            1,
        ),
        (["--results=results.csv", "--seed_half_width=0"], "must be a number > 0", 2),
        (
            ["--results=results.csv", "--validation_per_image=images.csv", "--output=images.csv"],
            "is one of the input tables",
            1,
        ),
        (["--results=results.csv", "--validation_per_image=none.csv"], "none.csv", 1),
    ],
)
def test_cli_refuses_bad_input_with_one_line(cli, tmp_path, chain_tables, flags, problem, code):
    results, per_image = chain_tables()
    results.to_csv(tmp_path / "results.csv", index=False)
    per_image.to_csv(tmp_path / "images.csv", index=False)
    before = (tmp_path / "results.csv").read_bytes(), (tmp_path / "images.csv").read_bytes()
    done = cli(COMMAND, *flags, cwd=tmp_path)
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("keras-takd-claims: error:") and problem in lines[0]
    after = (tmp_path / "results.csv").read_bytes(), (tmp_path / "images.csv").read_bytes()
    assert after == before  # an input is never overwritten


def _seed_tables(seeds, attacks, scale=1.0, n=25):
    """Results and per-image rows of 3-model chains at T = 40, one per seed: per image the
    student's distance exceeds the teacher's by 0.2 (+ 0.01 x seed), each attack's distance
    the same up to a 0.3% noise; `scale` multiplies every distance."""
    rng = np.random.default_rng(len(seeds))
    rows, images = [], []
    for seed in seeds:
        base = 1.5 + 0.3 * rng.standard_normal(n)
        for stage, role in enumerate(("teacher", "assistant", "student"), 1):
            model = {"dataset": "mnist", "temperature": 40.0, "stage": stage, "seed": seed}
            rows.append(model | {"role": role, "stages": 3, "test_accuracy": 0.99})
            shift = (0.2 + 0.01 * seed) * (stage - 1) / 2
            for attack in attacks:
                noise = 1 + 0.003 * rng.standard_normal(n)
                images += [
                    model
                    | {"role": role, "stages": 3, "attack": attack, "image": i}
                    | {"correct": True, "success": True, "distance": scale * (d + shift) * e}
                    for i, (d, e) in enumerate(zip(base, noise, strict=True))
                ]
    return pd.DataFrame(rows), pd.DataFrame(images)


def test_cli_validates_fmn_on_another_run_and_sizes_the_seeds(cli, tmp_path):
    """Several seeds measured by FMN, C&W beside it on seed 0 only: one chain, too few, so FMN
    is validated only with another run's chain (--validation_per_image) beside it; that run
    enters no comparison, even with distances 3 times as large."""
    results, images = _seed_tables([0, 1, 2], ["fmn_l2", "l2"])
    _, other = _seed_tables([0], ["fmn_l2", "l2"], scale=3.0)
    results.to_csv(tmp_path / "results.csv", index=False)
    images = images[(images.attack == "fmn_l2") | (images.seed == 0)]
    images.to_csv(tmp_path / "per_image.csv", index=False)
    other.drop(columns="seed").to_csv(tmp_path / "other.csv", index=False)
    name = "FMN L2, seed level: the student is more robust than the teacher at T = 40 [q"
    measure = "the replicates' measure: FMN L2 measures as C&W L2 at T = 40 (issue 25)"
    done = cli(COMMAND, "--results=results.csv", "--seed_half_width=0.03", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if name in line)
    assert "+0.21" in row and "over 3 seeds" in row
    sd = float(re.search(r"between-seed SD ([0-9.]+)", row).group(1))  # about 0.01
    assert f"seeds for a +-0.03 t-interval: {seeds_needed(sd, 0.03)}" in row
    # seed 0's C&W agrees with FMN, but one chain is too few to validate on
    assert "rests on 1 chain(s), fewer than 2" in row
    assert row.endswith("| **inconclusive (FMN not validated)** |")
    check = next(line for line in done.stdout.splitlines() if measure in line)
    assert "models of 1 chains" in check and check.endswith("| **inconclusive** |")
    both = cli(COMMAND, "--results=results.csv", "--validation_per_image=other.csv", cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    check = next(line for line in both.stdout.splitlines() if measure in line)
    assert "over 6 models of 2 chains" in check and "validation run seed 0 stage 3" in check
    assert check.endswith("| **agrees** |")
    row = next(line for line in both.stdout.splitlines() if name in line)
    assert "over 3 seeds" in row and "+0.21" in row  # the other run is in no comparison
    assert row.endswith("| **agrees** |")  # FMN validated on 2 chains decides alone


@pytest.mark.parametrize(
    "declared, verdict", [(10, "inconclusive (interim: 3 of 10 declared seeds)"), (3, "agrees")]
)
def test_the_primary_comparison_is_decided_only_with_every_seed_it_was_declared_for(
    cli, tmp_path, declared, verdict
):
    """run.json beside the results records the primary comparison and the seeds it was
    declared for: before all of them are in, however small its p, it is an interim look."""
    results, images = _seed_tables([0, 1, 2], ["l2"])
    started, _ = _seed_tables([3], ["l2"])  # a fourth seed whose chain has its teacher only
    results = pd.concat([results, started[started["role"] == "teacher"]], ignore_index=True)
    results.to_csv(tmp_path / "results.csv", index=False)
    images.to_csv(tmp_path / "per_image.csv", index=False)
    declaration = {"primary_comparison": "student-teacher@40", "num_seeds": declared}
    flags = {**declaration, "num_seeds": 3}  # a later run's: the declaration made first counts
    info = {"flags": flags, "declared": declaration}
    (tmp_path / "run.json").write_text(json.dumps({"run_info": info}))
    done = cli(COMMAND, "--results=results.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "| primary comparison: C&W L2" in line)
    assert "over 3 seeds" in row and f"declared before the run for {declared} seeds" in row
    assert row.endswith(f"| **{verdict}** |")
    assert ("an interim look" in row) is (declared > 3)


def test_cli_refuses_to_overwrite_the_per_image_table_it_reads(cli, tmp_path, chain_tables):
    """The per-image table beside the results is an input too, though not named on the line."""
    results, per_image = chain_tables()
    results.to_csv(tmp_path / "results.csv", index=False)
    per_image.to_csv(tmp_path / "per_image.csv", index=False)
    before = (tmp_path / "per_image.csv").read_bytes()
    done = cli(COMMAND, "--results=results.csv", "--output=per_image.csv", cwd=tmp_path)
    assert done.returncode == 1
    assert "--output=per_image.csv is one of the input tables" in done.stderr
    assert (tmp_path / "per_image.csv").read_bytes() == before


def _write_predictions(folder: pathlib.Path, results: pd.DataFrame, images: int = 200) -> None:
    """predictions.csv beside results.csv: model k (0-based, in the results' order) misses the
    first 2k images, so the accuracy comparisons can be paired."""
    rows = []
    for k, (_, model) in enumerate(results.iterrows()):
        key = {c: model[c] for c in ("dataset", "temperature", "stage", "role", "stages")}
        rows += [
            key | {"image": i, "label": 0, "prediction": int(i < 2 * k)} for i in range(images)
        ]
    pd.DataFrame(rows).to_csv(folder / "predictions.csv", index=False)


def test_cli_reads_gzip_compressed_predictions_as_the_plain_ones(cli, tmp_path, chain_tables):
    results, per_image = chain_tables()
    results.assign(test_accuracy=[1 - 2 * k / 200 for k in range(len(results))]).assign(
        metric_images=200
    ).to_csv(tmp_path / "results.csv", index=False)
    per_image.to_csv(tmp_path / "per_image.csv", index=False)
    _write_predictions(tmp_path, results)
    plain = cli(COMMAND, "--results=results.csv", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "Per-image predictions: predictions.csv (" in plain.stdout
    assert "exact McNemar" in plain.stdout  # the predictions pair the accuracy comparisons
    subprocess.run(["gzip", "-9", "-n", "predictions.csv"], cwd=tmp_path, check=True)
    output = tmp_path / "claims.md"
    compressed = cli(COMMAND, "--results=results.csv", f"--output={output}", cwd=tmp_path)
    assert compressed.returncode == 0, compressed.stderr
    named = plain.stdout.replace(
        "predictions: predictions.csv (", "predictions: predictions.csv.gz ("
    )
    assert compressed.stdout == named and output.read_text() == named


def test_cli_refuses_predictions_both_plain_and_compressed(cli, tmp_path, chain_tables):
    results, _ = chain_tables()
    results.to_csv(tmp_path / "results.csv", index=False)
    _write_predictions(tmp_path, results)
    subprocess.run(["gzip", "-k", "predictions.csv"], cwd=tmp_path, check=True)
    done = cli(COMMAND, "--results=results.csv", cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    problem = "predictions predictions.csv and predictions.csv.gz both exist: expected one of them"
    assert lines[0].startswith("keras-takd-claims: error:") and problem in lines[0]


def test_cli_refuses_to_overwrite_the_compressed_predictions_it_reads(cli, tmp_path, chain_tables):
    results, _ = chain_tables()
    results.to_csv(tmp_path / "results.csv", index=False)
    _write_predictions(tmp_path, results)
    subprocess.run(["gzip", "predictions.csv"], cwd=tmp_path, check=True)
    before = (tmp_path / "predictions.csv.gz").read_bytes()
    done = cli(COMMAND, "--results=results.csv", "--output=predictions.csv.gz", cwd=tmp_path)
    assert done.returncode == 1
    assert "--output=predictions.csv.gz is one of the input tables" in done.stderr
    assert (tmp_path / "predictions.csv.gz").read_bytes() == before


def test_text_commands_import_no_plotting_library():
    code = (
        "import sys, keras_takd.takd.claims, keras_takd.takd.summary; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'); "
        "assert not loaded, loaded"
    )
    # run from the checkout: `python -c` imports this tree's keras_takd first
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
