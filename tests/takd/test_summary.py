"""`python -m keras_takd.takd.summary` on a tiny run of a synthetic CIFAR-10, before and
after an evaluation (with the `fake_attacks` fixture), through the real CLI."""

import shutil

import pandas as pd
import pytest

from keras_takd.core.data import load_dataset
from keras_takd.core.distillation import TrainConfig
from keras_takd.core.statistics import MIN_IMAGES
from keras_takd.takd import evaluation
from keras_takd.takd.analysis import tables
from keras_takd.takd.analysis.summary import (
    accuracy_table,
    describe_evaluation,
    indicator_lines,
    robustness_table,
    seed_level_lines,
    step_lines,
)
from keras_takd.takd.chains import run_chain

LABEL = "cifar10-synthetic"


@pytest.fixture(scope="module")
def stand_in_run(tmp_path_factory, cifar10_data_dir):
    """A 2-stage chain on 256 synthetic CIFAR-10 images, recorded as the CLI records it."""
    data = load_dataset("cifar10", cifar10_data_dir, validation_size=0, test_size=16)
    out = tmp_path_factory.mktemp("summary") / "run"
    config = TrainConfig(epochs=3, batch_size=32, warm_start=False, seed=3)
    info = {"flags": {"data_dir": str(cifar10_data_dir)}, "data_source": data.source}
    run_chain(data, [2.0], 2, out, config, run_info=info, verbose=0, on_warning=lambda line: None)
    return out


def test_summary_before_evaluation_lists_models_and_says_what_to_run(stand_in_run, cli):
    done = cli("keras_takd.takd.summary", f"--results={stand_in_run / 'results.csv'}", timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"run {stand_in_run}: {LABEL} (" in done.stdout
    assert f"{LABEL} T=2 stage 1 teacher" in done.stdout
    assert f"{LABEL} T=2 stage 2 student" in done.stdout
    assert "not evaluated yet: python -m keras_takd.takd.evaluate" in done.stdout
    assert not list(stand_in_run.glob("eval"))  # the summary writes nothing


def test_summary_of_an_evaluated_stand_in_run(
    stand_in_run, tmp_path, monkeypatch, cli, fake_attacks
):
    run_dir = tmp_path / "run"
    shutil.copytree(stand_in_run, run_dir)
    run = evaluation.read_run(run_dir)
    assert run.dataset == "cifar10"  # the evaluation reloads the data by name ...
    data = load_dataset(run.dataset, run.flags["data_dir"], validation_size=0, test_size=16)
    fake_attacks().install(monkeypatch)
    config = evaluation.EvaluationConfig(
        attacks=("l2", "linf"), num_images=12, attack_images={"linf": 8}
    )
    table = evaluation.evaluate_run(run_dir, data, config)
    assert set(table["dataset"]) == {LABEL}  # ... and keeps the label of the rows
    per_image = tables.read_per_image(run_dir)
    assert set(per_image["dataset"]) == {LABEL}

    done = cli("keras_takd.takd.summary", f"--results={run_dir / 'results.csv'}", timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "test accuracy (95% Wilson interval, n test images):" in out
    header = next(line for line in out.splitlines() if "mean distance [CI]" in line)
    assert header.split() == [
        "model", "attack", "attacked", "excluded", "fooled", "[CI]", "mean", "distance", "[CI]", "n"
    ]  # fmt: skip
    rows = [line for line in out.splitlines() if line.strip().startswith(LABEL)]
    attacks = [line for line in rows if "C&W" in line]
    assert len(attacks) == 2 * 3  # 2 models x (L2, L-inf, L2 on softmax(z/T))
    teacher_l2 = per_image[
        (per_image["stage"] == 1) & (per_image["attack"] == "l2") & per_image["correct"]
    ]
    fooled = teacher_l2[teacher_l2["success"]]
    line = next(r for r in attacks if "stage 1 teacher" in r and "C&W L2 " in r + " ")
    assert f" {len(teacher_l2)} " in line and line.rstrip().endswith(f" {len(fooled)}")
    mean = f"{fooled['distance'].mean():.4g}"
    # An interval needs MIN_IMAGES fooled images; how many the tiny model classifies varies
    # by CPU.
    assert (f"{mean} [" in line) if len(fooled) >= MIN_IMAGES else (f" {mean} " in line)
    config_id = table["eval_config"].iloc[0]
    assert f"evaluation {config_id} ({run_dir}/eval/{config_id}/config.json):" in out
    assert "attacks on the first 12 test images (L-inf: 8)" in out
    assert "C&W L2: 9 binary-search steps of up to 10,000 Adam iterations" in out
    assert "fixed-budget success (Papernot): L2 <= 1, L-inf <= 0.1" in out
    assert "C&W L0" not in out  # only the attacks that ran
    assert "indicators of attack failure (Pintor et al., arXiv:2106.09947;" in out


def test_indicator_lines_count_per_model_and_attack_or_say_none_flagged():
    rows = pd.DataFrame(
        {
            "dataset": ["mnist", "mnist"],
            "temperature": [1.0, 20.0],
            "stage": [1, 2],
            "role": ["teacher", "student"],
            "l0_attacked": [2, 2],
            "l0_silent_success": [2, 0],
            "l0_vanishing_gradients": [1, 0],
            "l2_attacked": [5, 5],
            "l2_silent_success": [0, 0],
            "l2_vanishing_gradients": [float("nan"), float("nan")],
        }
    )
    lines = indicator_lines(rows)
    assert lines[1].startswith("indicators of attack failure")
    assert lines[2:] == [
        "  mnist T=1 stage 1 teacher: l0 silent_success 2 of 2, l0 vanishing_gradients 1 of 2"
    ]
    none = rows.assign(l0_silent_success=0, l0_vanishing_gradients=0)
    assert indicator_lines(none)[2:] == ["  none flagged"]
    assert indicator_lines(rows[["dataset", "temperature", "stage", "role"]]) == []


def test_summary_of_a_sharded_evaluation_not_merged_yet(
    stand_in_run, tmp_path, monkeypatch, cli, fake_attacks
):
    run_dir = tmp_path / "run"
    shutil.copytree(stand_in_run, run_dir)
    data = load_dataset("cifar10", str(evaluation.read_run(run_dir).flags["data_dir"]),
                        validation_size=0, test_size=16)  # fmt: skip
    fake_attacks().install(monkeypatch)
    for shard in (0, 1):  # both finished, but no merge
        config = evaluation.EvaluationConfig(
            attacks=("l2",), num_images=12, gradient_masking=False, shard_index=shard, num_shards=2
        )
        evaluation.evaluate_run(run_dir, data, config)
    assert not (run_dir / "per_image.csv").exists()

    done = cli("keras_takd.takd.summary", f"--results={run_dir / 'results.csv'}", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "not evaluated yet" not in done.stdout
    assert "(from 2 shard tables, not merged yet: per_image_shard0of2.csv, " in done.stdout
    both = evaluation.merge_per_image(sorted(run_dir.glob("results_shard*.csv")))
    attacked = both[(both.stage == 1) & both.correct]
    line = next(r for r in done.stdout.splitlines() if "stage 1 teacher" in r and "C&W L2" in r)
    assert f" {len(attacked)} " in line  # the images of both shards
    assert "attacks on the first 12 test images" in done.stdout


def test_describe_evaluation_in_words():
    config = {
        "data": {"dataset": "mnist", "test_images": 10000},
        "num_images": 200,
        "metric_images": 10000,
        "attack_options": {
            "l0": {"max_iterations": 1000, "learning_rate": 0.01, "abort_early": False}
        },
        "budgets": {"l2": 1.0},
    }
    assert describe_evaluation(config) == [
        "accuracy, sensitivity and confidence on the first 10,000 of 10,000 mnist test images",
        "attacks on the first 200 test images; misclassified images are excluded, not attacked",
        "C&W L0 (pixels): up to 1,000 Adam iterations, learning rate 0.01, early abort off",
        "fixed-budget success (Papernot): L2 <= 1",
    ]


def test_not_a_run_is_one_line(tmp_path, cli):
    missing = tmp_path / "nope" / "results.csv"
    done = cli("keras_takd.takd.summary", f"--results={missing}", timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"keras-takd-summary: error: results file '{missing}' not found: train with "
        "keras_takd.main first"
    ]
    other = cli("keras_takd.takd.summary", f"--results={tmp_path / 'table.csv'}", timeout=120)
    assert other.returncode == 1
    assert "results must be a run's results.csv" in other.stderr


def _three_seeds(effects=(0.1, 0.2, 0.3), n=10):
    """Per-image rows of 3-model chains at T = 40, one per seed; student - teacher = effect."""
    rows = []
    for seed, effect in enumerate(effects):
        for stage, role in enumerate(("teacher", "assistant", "student"), 1):
            rows += [
                {"dataset": "mnist", "temperature": 40.0, "stage": stage, "role": role}
                | {"stages": 3, "attack": "fmn_l2", "image": i, "correct": True}
                | {"success": True, "distance": 1.0 + i / n + effect * (stage - 1) / 2}
                | {"seed": seed}
                for i in range(n)
            ]
    return pd.DataFrame(rows)


def test_seed_level_lines_put_the_declared_primary_first_and_need_two_seeds():
    lines = seed_level_lines(_three_seeds(), 0.95, "student-teacher@40")
    assert lines[0] == "" and lines[1].startswith("seed level")
    table = lines[2].splitlines()
    assert "student - teacher (primary)" in table[1] and "+0.2000" in table[1]
    assert table[1].split()[-2:] == ["3", "30"]  # seeds, images
    assert len(table) == 4  # header and the three comparisons
    started = _three_seeds().query("seed == 0 and role == 'teacher'").assign(seed=3)
    with_started = pd.concat([_three_seeds(), started])  # seed 3 has its teacher only
    interim = seed_level_lines(with_started, 0.95, "student-teacher@40", 10)[2].splitlines()
    assert "student - teacher (primary, interim: 3 of 10 declared seeds)" in interim[1]
    one_seed = _three_seeds()
    assert seed_level_lines(one_seed[one_seed["seed"] == 0], 0.95) == []


def test_a_run_of_seeds_names_each_seed_s_models_in_the_tables():
    per_image = _three_seeds()
    table = robustness_table(per_image, 0.95)
    assert len(table) == 9  # 3 seeds x 3 models, one attack
    assert list(table["model"][:3]) == [
        "mnist seed 0 T=40 stage 1 teacher",
        "mnist seed 0 T=40 stage 2 assistant",
        "mnist seed 0 T=40 stage 3 student",
    ]
    assert (table["n"] == 10).all()
    results = per_image.drop_duplicates(["seed", "stage"]).assign(test_accuracy=0.99)
    names = accuracy_table(results, 100, 0.95)["model"]
    assert names.is_unique and names.iloc[-1] == "mnist seed 2 T=40 stage 3 student"


def test_jsma_counts_its_images_as_images_and_its_pairs_apart():
    rows = []
    for image in range(4):
        model = {"dataset": "mnist", "temperature": 1.0, "stage": 1, "role": "teacher"}
        if image == 3:  # misclassified: one row, not attacked
            rows.append(model | {"attack": "jsma", "image": 3, "target": -1, "correct": False})
            continue
        for target in range(9):
            rows.append(
                model
                | {"attack": "jsma", "image": image, "target": target, "correct": True}
                | {"success": target < 3, "distance": 0.05 if target < 3 else float("nan")}
            )
    per_image = pd.DataFrame(rows).assign(success=lambda d: d["success"].fillna(False))
    row = robustness_table(per_image, 0.95).iloc[0]
    assert row["attacked"] == "3 (27 pairs)" and row["excluded"] == 1
    assert row["n"] == 9  # fooled pairs


def test_seed_level_lines_end_with_each_comparison_against_the_lowest_t():
    at_40 = _three_seeds(effects=(0.1, 0.2, 0.3))
    at_1 = _three_seeds(effects=(0.05, 0.05, 0.2)).assign(temperature=1.0)
    lines = seed_level_lines(pd.concat([at_1, at_40]), 0.95)
    assert lines[3] == "" and lines[4].startswith("against the control")
    table = lines[5].splitlines()
    assert len(table) == 4  # header and the three comparisons
    student_teacher = next(line for line in table if line.strip().startswith("student - teacher"))
    assert "40 - 1" in student_teacher and "+0.1000" in student_teacher  # mean of .05, .15, .1
    assert student_teacher.split()[-1] == "3"  # seeds
    assert seed_level_lines(at_40, 0.95)[3:] == []  # one T: no control


def test_step_lines_show_a_long_chains_steps_and_slope_over_seeds():
    rows = []
    for seed, slope in enumerate((0.01, 0.02, 0.03)):
        for stage in range(1, 5):
            rows += [
                {"dataset": "mnist", "temperature": 40.0, "stage": stage, "stages": 4}
                | {"role": "teacher" if stage == 1 else f"step {stage}", "attack": "fmn_l2"}
                | {"image": i, "correct": True, "success": True, "seed": seed}
                | {"distance": 1.0 + i / 10 + slope * (stage - 1)}
                for i in range(10)
            ]
    lines = step_lines(pd.DataFrame(rows), 0.95)
    assert lines[0] == "" and lines[1].startswith("multi-step chains, seed level")
    table = [line.strip() for line in lines[2].splitlines()]
    assert len(table) == 1 + 3 + 1  # header, steps 2 to 4, the slope
    assert "step 4 - teacher" in table[3] and "+0.0600" in table[3]
    assert "slope per step" in table[4] and "+0.0200" in table[4]
    assert step_lines(pd.DataFrame(rows).query("seed == 0"), 0.95) == []


def test_a_multi_step_run_of_several_seeds_has_step_lines_and_no_three_model_table():
    rows = []
    for seed in (0, 1):
        for stage in range(1, 5):
            rows += [
                {"dataset": "mnist", "temperature": 40.0, "stage": stage, "stages": 4}
                | {"role": "teacher" if stage == 1 else f"step-{stage}", "attack": "fmn_l2"}
                | {"image": i, "correct": True, "success": True, "seed": seed}
                | {"distance": 1.0 + i / 10 + 0.01 * (seed + 1) * (stage - 1)}
                for i in range(10)
            ]
    per_image = pd.DataFrame(rows)
    assert seed_level_lines(per_image, 0.95, "student-teacher@40", 2) == []
    assert step_lines(per_image, 0.95)[1].startswith("multi-step chains, seed level")
    unfinished = per_image[(per_image["seed"] == 0) | (per_image["stage"] <= 2)]
    table = [line.strip() for line in step_lines(unfinished, 0.95)[2].splitlines()]
    assert "[no interval: fewer than 2 seeds]" in table[2]  # step 3: seed 0 alone
    assert "nan" not in "".join(table[2:])


def test_step_lines_put_a_declared_multistep_test_first_and_say_when_it_is_interim():
    """--primary_comparison=last-teacher@40: the last step's row at T = 40 is marked and comes
    first; with a seed whose chain has not reached its last step (the role "student"), it is
    an interim look; a 3-model declaration marks nothing here."""
    rows = []
    for seed, slope in enumerate((0.01, 0.02, 0.03)):
        for stage in range(1, 5):
            role = {1: "teacher", 4: "student"}.get(stage, f"step-{stage}")
            rows += [
                {"dataset": "mnist", "temperature": 40.0, "stage": stage, "stages": 4}
                | {"role": role, "attack": "fmn_l2", "seed": seed}
                | {"image": i, "correct": True, "success": True}
                | {"distance": 1.0 + i / 10 + slope * (stage - 1)}
                for i in range(10)
            ]
    per_image = pd.DataFrame(rows)
    lines = step_lines(per_image, 0.95, "last-teacher@40", 3)
    assert lines[1].endswith("; primary declared before the run):")
    table = [line.strip() for line in lines[2].splitlines()]
    assert "step 4 - teacher (primary)" in table[1] and "+0.0600" in table[1]
    assert "step 2 - teacher" in table[2] and "slope per step" in table[4]
    started = per_image.query("seed == 0 and stage <= 2").assign(seed=3)  # seed 3 at step 2
    early = step_lines(pd.concat([per_image, started]), 0.95, "last-teacher@40", 5)[2]
    assert "step 4 - teacher (primary, interim: 3 of 5 declared seeds)" in early
    plain = step_lines(per_image, 0.95, "student-teacher@40", 3)
    assert "primary" not in "\n".join(plain)
    assert "step 2 - teacher" in plain[2].splitlines()[1]  # steps in order, step 2 first


def test_a_long_chain_s_student_is_not_counted_as_a_three_model_chain_s_seed():
    """The 3-model primary's interim count is over 3-model chains: a seed whose 4-model chain
    is done (its last step is named "student") but whose 3-model chain is not, is not in."""
    three = _three_seeds()
    long_chain = (
        three[three["seed"] == 0]
        .assign(seed=3, stages=4)
        .replace({"role": {"student": "step-3", "assistant": "step-2"}})
    )
    last = long_chain[long_chain["stage"] == 3].assign(stage=4, role="student")
    teacher_only = three.query("seed == 0 and role == 'teacher'").assign(seed=3)
    rows = pd.concat([three, long_chain, last, teacher_only], ignore_index=True)
    table = seed_level_lines(rows, 0.95, "student-teacher@40", 4)[2]
    assert "student - teacher (primary, interim: 3 of 4 declared seeds)" in table


def test_step_lines_mark_only_the_longest_chain_s_last_step():
    rows = []
    for seed, stages in ((0, 4), (1, 4), (2, 5), (3, 5)):
        for stage in range(1, stages + 1):
            role = {1: "teacher", stages: "student"}.get(stage, f"step-{stage}")
            rows += [
                {"dataset": "mnist", "temperature": 40.0, "stage": stage, "stages": stages}
                | {"role": role, "attack": "fmn_l2", "seed": seed}
                | {"image": i, "correct": True, "success": True}
                | {"distance": 1.0 + i / 10 + 0.01 * (seed + 1) * (stage - 1)}
                for i in range(10)
            ]
    table = step_lines(pd.DataFrame(rows), 0.95, "last-teacher@40", 2)[2]
    marked = [line for line in table.splitlines() if "primary" in line]
    assert len(marked) == 1 and "5 models" in marked[0] and "step 5 - teacher" in marked[0]
