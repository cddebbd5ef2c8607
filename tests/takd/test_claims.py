"""End-to-end tests of `python -m keras_takd.takd.claims` (and of what the text commands
import), as subprocesses in a temporary folder."""

import pathlib
import subprocess
import sys

import pytest

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


def test_text_commands_import_no_plotting_library():
    code = (
        "import sys, keras_takd.takd.claims, keras_takd.takd.summary; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'); "
        "assert not loaded, loaded"
    )
    # run from the checkout: `python -c` imports this tree's keras_takd first
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
