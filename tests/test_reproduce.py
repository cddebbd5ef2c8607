"""reproduce.sh: the commands of each mode (dry run), the pass-through of extra arguments, and
that every evaluation flagfile parses, alone and with its training flagfile as a study's, and
points at its training flagfile's output_dir."""

import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MODES = {
    "--quick": ["smoke"],
    "--cpu": ["mnist_cpu", "mnist_multistep_cpu"],
    "": ["mnist_takd", "cifar10_takd", "mnist_multistep", "cifar10_multistep"],
}


def _reproduce(*args, python=None):
    """Runs reproduce.sh; with `python`, that program stands in for every python command."""
    env = None if python is None else {"PATH": "/usr/bin:/bin", "PYTHON": str(python)}
    return subprocess.run(
        ["bash", str(REPO / "reproduce.sh"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _output_dir(flagfile: pathlib.Path) -> str | None:
    """The last --output_dir of a flagfile, following nested --flagfile lines."""
    found = None
    for line in flagfile.read_text().splitlines():
        if line.startswith("--flagfile="):
            found = _output_dir(REPO / line.split("=", 1)[1]) or found
        elif line.startswith("--output_dir="):
            found = line.split("=", 1)[1]
    return found


@pytest.mark.parametrize("mode, experiments", MODES.items())
def test_dry_run_prints_a_study_per_experiment_then_plot_then_smoothed_kd(mode, experiments):
    extra = ("--data_dir=../shared/data", "--epochs=2")
    done = _reproduce(*filter(None, [mode]), "--dry_run", *extra)
    assert done.returncode == 0, done.stderr
    commands = [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]
    expected = [
        f"python -m keras_takd.takd.study --flagfile=flags/{exp}.cfg "
        f"--flagfile=flags/{exp}_eval.cfg {' '.join(extra)}"
        for exp in experiments
    ]
    assert commands[:-3] == expected
    results = ",".join(
        f"{_output_dir(REPO / f'flags/{e}_eval.cfg')}/results.csv" for e in experiments
    )
    assert commands[-3].startswith(
        f"python -m keras_takd.takd.figures --results={results} --output_dir="
    )
    figures = re.search(r"--output_dir=(\S+)", commands[-3]).group(1)
    assert commands[-2].startswith(
        f"python -m keras_takd.takd.claims --results={results} --output={figures}/claims.md"
    )
    smoothed = f"smoothed_kd_{mode.lstrip('-') or 'paper'}"
    assert (REPO / f"flags/{smoothed}.cfg").is_file()
    assert commands[-1] == (
        f"python -m keras_takd.smoothed.run --flagfile=flags/{smoothed}.cfg "
        "--data_dir=../shared/data"
    )


def test_the_executor_flags_go_to_the_study():
    executor = ("--executor=ray", "--ray_address=head:6379", "--cpus_per_unit=2")
    done = _reproduce("--quick", "--dry_run", "--epochs=2", *executor)
    assert done.returncode == 0, done.stderr
    commands = [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]
    assert commands[0] == (
        "python -m keras_takd.takd.study --flagfile=flags/smoke.cfg "
        f"--flagfile=flags/smoke_eval.cfg --epochs=2 {' '.join(executor)}"
    )


def test_parallel_is_refused_with_what_replaces_it():
    done = _reproduce("--cpu", "--parallel")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--parallel is gone: use --executor=ray" in done.stderr


def test_dry_run_reports_no_time():
    done = _reproduce("--quick", "--dry_run")
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("reproduce.sh --quick: dry run, nothing was run; results would be ")
    assert "done in" not in done.stdout


def test_bad_arguments_are_refused():
    done = _reproduce("--quick", "stray")
    assert done.returncode == 2 and "unexpected argument 'stray'" in done.stderr


@pytest.mark.parametrize("experiment", sorted({e for es in MODES.values() for e in es}))
def test_each_evaluation_flagfile_evaluates_its_training_run(experiment):
    training = REPO / "flags" / f"{experiment}.cfg"
    evaluation = REPO / "flags" / f"{experiment}_eval.cfg"
    assert _output_dir(evaluation) == _output_dir(training)
    header = evaluation.read_text().splitlines()[0]
    assert header.startswith("# "), "flagfiles start with a comment saying what they reproduce"
    assert f"--flagfile=flags/{experiment}_eval.cfg" in evaluation.read_text()


def test_every_evaluation_flagfile_parses():
    """Parses each *_eval.cfg with keras_takd.takd.evaluate's flags (in one subprocess)."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "flags").glob("*_eval.cfg"))
    script = (
        "import sys\nfrom absl import flags\nimport keras_takd.takd.evaluate\n"
        "for f in sys.argv[1:]:\n"
        "    flags.FLAGS.unparse_flags()\n"
        "    flags.FLAGS(['evaluate', '--flagfile=' + f])\n"
        "    F = flags.FLAGS\n"
        "    print(f, F.num_images, F.l2_max_iterations, F.output_dir)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *files], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    parsed = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert set(parsed) == set(files)
    assert parsed["flags/smoke_eval.cfg"] == ["10", "100", "runs/smoke"]
    assert parsed["flags/mnist_cpu_eval.cfg"] == ["25", "100", "runs/mnist_cpu"]
    assert parsed["flags/mnist_takd_eval.cfg"] == ["1000", "10000", "runs/mnist_takd"]
    experiments = {f: v for f, v in parsed.items() if f != "flags/common_eval.cfg"}
    assert all(re.fullmatch(r"runs/\w+", values[2]) for values in experiments.values())


def test_every_experiment_parses_as_a_study():
    """Parses each experiment's two flagfiles together with keras_takd.takd.study's flags."""
    experiments = sorted({e for es in MODES.values() for e in es})
    script = (
        "import sys\nfrom absl import flags\nimport keras_takd.takd.study.__main__\n"
        "for e in sys.argv[1:]:\n"
        "    flags.FLAGS.unparse_flags()\n"
        "    files = [f'--flagfile=flags/{e}.cfg', f'--flagfile=flags/{e}_eval.cfg']\n"
        "    flags.FLAGS(['study', *files])\n"
        "    print(e, flags.FLAGS.stages, flags.FLAGS.num_images, flags.FLAGS.output_dir)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *experiments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    parsed = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert parsed["smoke"] == ["3", "10", "runs/smoke"]
    assert set(parsed) == set(experiments)
